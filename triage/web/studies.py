"""What the API shows of each received series: its state in the job store and its newest result.

A *study* of the API is one series, ``id = safe_name(series_uid)`` (URL-safe). The result shown
is that of the newest generation whose analysis is done, or of the one running when its result
is already in place (its DICOM objects still being made), read from
``DATA/results/<id>/<generation>/result.json``. ``status`` is one of ``receiving``,
``incomplete``, ``ignored`` (the series' state), or, for a complete perfusion series, that of
its newest analysis: ``queued``, ``analysing``, ``done``, ``failed``. Patient name and ID are
never part of it (the series description is).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from triage.base.names import safe_name
from triage.report.render import MAP_STYLES, axis_letters
from triage.store.jobs import JobStore

MAP_NAMES = ("cbf", "cbv", "mtt", "tmax")
OVERLAY_NAMES = ("core", "hypoperfusion")
_HASHED_NAME = re.compile(r"h[0-9a-f]{40}")  # see dicom_node.spool.safe_name
JOB_STATUS = {"pending": "queued", "running": "analysing", "done": "done", "failed": "failed",
              "superseded": "queued"}

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


@dataclass(frozen=True)
class Study:
    """One series as the API shows it; ``result`` is the shown generation's result.json."""

    id: str
    row: dict
    status: str
    error: str | None
    generation: int | None
    result_dir: Path | None
    result: dict | None

    def summary(self) -> dict:
        """The study list's entry (``GET /api/studies``)."""
        result = self.result or {}
        eligibility = result.get("eligibility", {})
        return {
            "id": self.id, "series_uid": self.row["series_uid"], "study_uid": self.row["study_uid"],
            "description": self.row["description"], "status": self.status,
            "first_received": self.row["first_received"], "last_received": self.row["last_received"],
            "result_at": self.row["result_at"] if self.result else None, "generation": self.generation,
            **{key: result.get(key) for key in ("core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml",
                                                "mismatch_ratio", "hir")},
            "defuse3": eligibility.get("defuse3"), "dawn": eligibility.get("dawn"),
            "quality_level": result.get("quality", {}).get("level"), "error": self.error,
        }

    def detail(self) -> dict:
        """``GET /api/studies/{id}``: the state, the grid of the maps and the whole result."""
        acquisition = (self.result or {}).get("acquisition", {})
        return {
            "id": self.id, "series_uid": self.row["series_uid"], "status": self.status,
            "generation": self.generation, "error": self.error,
            "slices": acquisition.get("slices"), "matrix": acquisition.get("matrix"),
            "maps": {name: {"units": MAP_STYLES[name][0], "window": list(MAP_STYLES[name][1])}
                     for name in MAP_NAMES},
            "edges": edge_letters(json.loads(self.row["orientation"]) if self.row["orientation"] else None),
            "result": self.result,
        }


def edge_letters(orientation: list[float] | None) -> dict | None:
    """The patient directions (R/L, A/P, S/I) at the edges of a slice as the API serves it,
    from the DICOM Image Orientation (Patient) (row and column direction cosines, LPS):
    ``{"left", "right", "top", "bottom"}``; None when the orientation is unknown."""
    if orientation is None or len(orientation) != 6:
        return None
    row, column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    direction = np.column_stack([row, column, np.cross(row, column)]).ravel()
    (left, right), (top, bottom) = axis_letters(tuple(direction))
    return {"left": left, "right": right, "top": top, "bottom": bottom}


class Studies:
    """The series of the job store ``db`` with their results under ``results_root``."""

    def __init__(self, db: JobStore, results_root: Path):
        self.db = db
        self.results_root = Path(results_root)

    def all(self) -> list[Study]:
        """Every series, the newest (last image received) first."""
        rows = self.db.query(_SERIES_SQL + " ORDER BY s.last_received DESC")
        return [self._study(dict(row)) for row in rows]

    def get(self, study_id: str) -> Study | None:
        """The series whose ``safe_name`` is ``study_id``."""
        uid = study_id
        if _HASHED_NAME.fullmatch(study_id):  # the name of a UID that is not URL-safe
            uids = [row[0] for row in self.db.query("SELECT series_uid FROM series")]
            uid = next((u for u in uids if safe_name(u) == study_id), None)
        rows = self.db.query(_SERIES_SQL + " WHERE s.series_uid = ?", (uid,)) if uid else []
        study = self._study(dict(rows[0])) if rows else None
        return study if study is not None and study.id == study_id else None

    def _study(self, row: dict) -> Study:
        study_id = safe_name(row["series_uid"])
        status, error = row["state"], None
        if status == "ready":
            status = JOB_STATUS.get(row["job_state"], "queued")
            error = row["job_error"] if status == "failed" else None
        elif status == "incomplete":
            error = row["reason"]
        generation, result_dir, result = row["result_generation"], None, None
        if row["job_state"] == "running":
            # Its result is in place (announced to the stroke team) while its DICOM objects are
            # still being made: shown already.
            running = self.results_root / study_id / str(row["newest_generation"]) / "result.json"
            try:
                if _read_result(running) is not None:
                    generation = row["newest_generation"]
                    row = {**row, "result_at": running.stat().st_mtime}
            except OSError:  # removed meanwhile (retention)
                pass
        if generation is not None:
            result_dir = self.results_root / study_id / str(generation)
            result = _read_result(result_dir / "result.json")
            if result is None:  # removed meanwhile (retention)
                generation, result_dir = None, None
        return Study(study_id, row, status, error, generation, result_dir, result)


def _read_result(path: Path) -> dict | None:
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    return _parsed(path, stamp)


@lru_cache(maxsize=256)
def _parsed(path: Path, stamp: int) -> dict | None:
    """result.json at ``path`` as written at ``stamp`` (a generation's result never changes)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
