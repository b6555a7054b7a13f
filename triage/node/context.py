"""What the node's threads share, and the loop its job workers run.

The completion monitor, the analysis workers and the sender meet only in the job store: the
monitor queues analyses, a finished analysis queues its send. :class:`NodeContext` holds that
store with the rest of their common state, and its wake condition lets a thread that queued work
wake the worker that runs it (a worker otherwise looks again after ``TICK_S``).
:func:`run_jobs` is the loop of each worker thread (``analysis-N`` and ``sender``);
:func:`run_claimed` runs one claimed job (also for the hub's workers, :mod:`triage.hub`).

Research use only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dicom_node.scu import RemoteAE
from dicom_node.stow import StowEndpoint
from triage.base.errors import one_line
from triage.report.folder import ResultsRoot
from triage.settings import NodeSettings
from triage.store.jobs import JobStore
from triage.store.records import Job

log = logging.getLogger("triage.node")

TICK_S = 0.5


@dataclass(frozen=True)
class NodeContext:
    """The state the node's parts share: settings, the job store, the result folders
    (``DATA/results``), the PACS or DICOMweb server (None: results are kept, not sent), the stop, and the condition
    that wakes the workers when work was queued."""

    settings: NodeSettings
    store: JobStore
    results: ResultsRoot
    remote: RemoteAE | StowEndpoint | None
    stopping: threading.Event
    wake: threading.Condition

    def wake_workers(self) -> None:
        """Wake the waiting workers: work was queued."""
        with self.wake:
            self.wake.notify_all()


def run_jobs(context: NodeContext, kind: str, handle: Callable[[Job], None],
             on_failure: Callable[[Job, str], None]) -> None:
    """Claim and run jobs of ``kind`` until the stop; ``on_failure(job, reason)`` when
    ``handle(job)`` raises (one failing job never stops the thread)."""
    while not context.stopping.is_set():
        try:
            job = context.store.claim_job(kind)
        except Exception as exc:
            log.error("job store unavailable (%s); retrying", one_line(exc, 300, with_type=True))
            job = None
        if job is None:
            _sleep(context, kind)
            continue
        run_claimed(job, handle, on_failure)


def run_claimed(job: Job, handle: Callable[[Job], None], on_failure: Callable[[Job, str], None]) -> None:
    """Run one claimed job: ``handle(job)``, or ``on_failure(job, reason)`` when it raises."""
    try:
        handle(job)
    except Exception as exc:
        on_failure(job, f"internal failure in the node: {one_line(exc, 300, with_type=True)}")


def _sleep(context: NodeContext, kind: str) -> None:
    """Wait for new work: a notification, the next due job of ``kind``, or ``TICK_S``."""
    due = context.store.next_due(kind)
    timeout = TICK_S if due is None else min(TICK_S, max(0.0, due - time.time()))
    with context.wake:
        if not context.stopping.is_set():
            context.wake.wait(max(timeout, 0.05))
