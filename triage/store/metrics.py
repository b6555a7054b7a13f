"""The figures behind the node's metrics (:mod:`triage.web.metrics`), read from the job store's
tables at each call. Times are POSIX seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.store.jobs import JobStore

# Per analysis generation started by the images: when its last image arrived, when its
# result was ready (its first result alert written, if before its analysis job was done: the
# alert goes out before the DICOM export ends the job; else the job's end), when its first
# result alert was delivered (NULL if not yet).
_ANALYSIS_TIMES_SQL = """
SELECT (SELECT max(i.received_at) FROM instances i WHERE i.series_uid = j.series_uid
        AND i.received_at <= j.created_at) AS received,
       coalesce((SELECT min(o.created_at) FROM outbox o WHERE o.series_uid = j.series_uid
           AND o.generation = j.generation AND o.kind = 'result' AND o.created_at < j.updated_at),
           j.updated_at) AS result,
       (SELECT min(o.delivered_at) FROM outbox o WHERE o.series_uid = j.series_uid
        AND o.generation = j.generation AND o.kind = 'result' AND o.state = 'delivered') AS alerted
FROM jobs j WHERE j.kind = 'analyse' AND j.state = 'done' AND j.options IS NULL
"""


@dataclass(frozen=True)
class AnalysisTimes:
    """When (POSIX s) one analysis the images started had its last image (``received``; None
    when its instances are gone), its result ready (``result``) and its first result alert
    delivered (``alerted``; None: not yet)."""

    received: float | None
    result: float
    alerted: float | None


class MetricsQueries:
    """Counts and times of a :class:`~triage.store.jobs.JobStore`'s tables (its connection)."""

    def __init__(self, store: JobStore):
        self._database = store._database

    def instance_count(self) -> int:
        return self._database.rows("SELECT count(*) FROM instances")[0][0]

    def series_by_state(self) -> list[tuple[str, int]]:
        """(state, number of series), one per state there is."""
        return [(r[0], r[1]) for r in self._database.rows("SELECT state, count(*) FROM series GROUP BY state")]

    def jobs_by_kind_and_state(self) -> list[tuple[str, str, int]]:
        """(kind, state, number of jobs), one per pair there is."""
        return [(r[0], r[1], r[2])
                for r in self._database.rows("SELECT kind, state, count(*) FROM jobs GROUP BY kind, state")]

    def outbox_by_state(self) -> list[tuple[str, int]]:
        """(state, number of alert messages), one per state there is."""
        return [(r[0], r[1]) for r in self._database.rows("SELECT state, count(*) FROM outbox GROUP BY state")]

    def analysis_times(self) -> list[AnalysisTimes]:
        """The times of each finished analysis the images started (a re-run a user requested is
        left out: its time is the request's, not the scanner's)."""
        return [AnalysisTimes(r["received"], r["result"], r["alerted"])
                for r in self._database.rows(_ANALYSIS_TIMES_SQL)]
