"""What :class:`~triage.store.jobs.JobStore` returns: rows of the ``series`` and ``jobs`` tables
(see :mod:`triage.store.schema`) and the outcomes of its changes. Times are POSIX seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Recorded:
    """What recording one instance changed: ``new`` is False for a repeated SOP Instance UID;
    ``previous_state`` is the series state before (None for a new series) and ``generation``
    the number of analyses already started for the series."""

    new: bool
    previous_state: str | None
    generation: int


@dataclass(frozen=True)
class SeriesRecord:
    """One row of the ``series`` table."""

    series_uid: str
    study_uid: str
    patient_id: str
    description: str
    calling_aet: str
    state: str
    classification: str | None
    reason: str | None
    first_received: float
    last_received: float
    n_instances: int
    n_positions: int | None
    n_times: int | None
    generation: int


@dataclass(frozen=True)
class Job:
    """One row of the ``jobs`` table: ``claim`` and ``lease_until`` (POSIX s) are set while it
    runs (see :mod:`triage.store.schema`)."""

    id: int
    series_uid: str
    generation: int
    kind: str
    state: str
    attempts: int
    next_attempt_at: float
    error: str | None
    created_at: float
    updated_at: float
    options: str | None = None
    claim: str | None = None
    lease_until: float | None = None

    def analysis_options(self) -> dict:
        """The requested re-run's options (``aif``, ``profile``); empty for an ordinary analysis."""
        return json.loads(self.options) if self.options else {}


@dataclass(frozen=True)
class Generation:
    """A newly started analysis generation: its ``number`` and the jobs of older generations it
    superseded, as they were before (``running`` analyses still have a child process to stop)."""

    number: int
    superseded: list[Job]


@dataclass(frozen=True)
class Recovery:
    """What :meth:`JobStore.recover` found: jobs put back to pending, spool files registered
    again, and spool files that could not be read (path, reason)."""

    jobs_reset: int
    instances_registered: int
    unreadable: list[tuple[Path, str]]
