"""What the web API's study list and details (:mod:`triage.web.studies`) read of the job store's
tables: each series with its newest analysis and its newest finished one. Times are POSIX seconds.
"""

from __future__ import annotations

from triage.store.jobs import JobStore

# A series row with the orientation of one of its instances (JSON, or NULL), its newest
# analysis job (``job_*``, ``newest_generation``) and its newest done one (``result_*``).
_SERIES_SQL = """
SELECT s.series_uid, s.study_uid, s.description, s.state, s.reason, s.first_received,
       s.last_received, s.n_positions,
       (SELECT orientation FROM instances WHERE series_uid = s.series_uid LIMIT 1) AS orientation,
       newest.state AS job_state, newest.error AS job_error, newest.generation AS newest_generation,
       shown.generation AS result_generation, shown.updated_at AS result_at
FROM series s
LEFT JOIN jobs newest ON newest.id = (SELECT id FROM jobs WHERE series_uid = s.series_uid
                                      AND kind = 'analyse' ORDER BY generation DESC LIMIT 1)
LEFT JOIN jobs shown ON shown.id = (SELECT id FROM jobs WHERE series_uid = s.series_uid
                                    AND kind = 'analyse' AND state = 'done'
                                    ORDER BY generation DESC LIMIT 1)
"""


class StudyQueries:
    """The series of a :class:`~triage.store.jobs.JobStore` (its connection) as the web API lists
    them. A series row is a dict: ``series_uid``, ``study_uid``, ``description``, ``state``,
    ``reason``, ``first_received``, ``last_received``, ``n_positions``, ``orientation`` (JSON
    Image Orientation (Patient) of one instance, or None), ``job_state``, ``job_error`` and
    ``newest_generation`` of the newest analysis job, ``result_generation`` and ``result_at``
    (when it ended) of the newest one done (None when there is none)."""

    def __init__(self, store: JobStore):
        self._database = store._database

    def series_rows(self) -> list[dict]:
        """Every series, the newest (last image received) first."""
        return [dict(row) for row in self._database.rows(_SERIES_SQL + " ORDER BY s.last_received DESC")]

    def series_row(self, series_uid: str) -> dict | None:
        rows = self._database.rows(_SERIES_SQL + " WHERE s.series_uid = ?", (series_uid,))
        return dict(rows[0]) if rows else None

    def series_uids(self) -> list[str]:
        return [row[0] for row in self._database.rows("SELECT series_uid FROM series")]

    def instance_path(self, series_uid: str) -> str | None:
        """The spool path of one instance of the series (None: it has none)."""
        rows = self._database.rows("SELECT path FROM instances WHERE series_uid = ? LIMIT 1", (series_uid,))
        return rows[0]["path"] if rows else None
