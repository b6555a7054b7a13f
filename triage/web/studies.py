"""What the API shows of each received series: its state in the job store and its newest result.

A *study* of the API is one series, ``id = safe_name(series_uid)`` (URL-safe). The result shown
is that of the newest generation whose analysis is done, or of the one running when its result
is already in place (its DICOM objects still being made), read from
``DATA/results/<id>/<generation>/result.json`` (:class:`~triage.report.folder.ResultsRoot`; a
result.json that is not a complete result is not shown). ``status`` is one of ``receiving``,
``incomplete``, ``ignored`` (the series' state), or, for a complete perfusion series, that of
its newest analysis: ``queued``, ``analysing``, ``done``, ``failed``. Patient name and ID are
never part of it (the series description is).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triage.base.names import safe_name
from triage.report.folder import ResultFolder, ResultsRoot
from triage.report.render import MAP_STYLES, axis_letters
from triage.store.jobs import JobStore
from triage.store.studies import StudyQueries

MAP_NAMES = ("cbf", "cbv", "mtt", "tmax")
OVERLAY_NAMES = ("core", "hypoperfusion")
_HASHED_NAME = re.compile(r"h[0-9a-f]{40}")  # see dicom_node.spool.safe_name
JOB_STATUS = {"pending": "queued", "running": "analysing", "done": "done", "failed": "failed",
              "superseded": "queued"}

@dataclass(frozen=True)
class Study:
    """One series as the API shows it: ``row`` is its row of
    :class:`~triage.store.studies.StudyQueries`, ``folder`` the shown generation's result folder
    and ``result`` its result.json (None: no result shown)."""

    id: str
    row: dict
    status: str
    error: str | None
    generation: int | None
    folder: ResultFolder | None
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
        """``GET /api/studies/{id}``: the state, the grid of the maps and the whole result.

        The grid: ``slices``, ``matrix`` (rows, columns) and ``spacing_mm`` (between columns,
        between rows, between slices: x, y, z, mm; DICOM's PixelSpacing is (y, x)), of the
        acquisition; None without a result."""
        acquisition = (self.result or {}).get("acquisition", {})
        return {
            "id": self.id, "series_uid": self.row["series_uid"], "status": self.status,
            "generation": self.generation, "error": self.error,
            "slices": acquisition.get("slices"), "matrix": acquisition.get("matrix"),
            "spacing_mm": acquisition.get("spacing_mm"),
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
    """The series of the job store ``store`` with their results under ``results_root``."""

    def __init__(self, store: JobStore, results_root: Path):
        self._queries = StudyQueries(store)
        self.results = ResultsRoot(Path(results_root))

    def all(self) -> list[Study]:
        """Every series, the newest (last image received) first."""
        return [self._study(row) for row in self._queries.series_rows()]

    def get(self, study_id: str) -> Study | None:
        """The series whose ``safe_name`` is ``study_id``."""
        uid = study_id
        if _HASHED_NAME.fullmatch(study_id):  # the name of a UID that is not URL-safe
            uid = next((u for u in self._queries.series_uids() if safe_name(u) == study_id), None)
        row = self._queries.series_row(uid) if uid else None
        study = self._study(row) if row is not None else None
        return study if study is not None and study.id == study_id else None

    def instance_path(self, study: Study) -> str | None:
        """The spool path of one of the study's images (None: none is recorded)."""
        return self._queries.instance_path(study.row["series_uid"])

    def _study(self, row: dict) -> Study:
        study_id = safe_name(row["series_uid"])
        status, error = row["state"], None
        if status == "ready":
            status = JOB_STATUS.get(row["job_state"], "queued")
            error = row["job_error"] if status == "failed" else None
        elif status == "incomplete":
            error = row["reason"]
        generation, folder, result = row["result_generation"], None, None
        if row["job_state"] == "running":
            # Its result is in place (announced to the stroke team) while its DICOM objects are
            # still being made: shown already.
            running = self.results.folder(row["series_uid"], row["newest_generation"])
            try:
                if running.read_cached() is not None:
                    generation = row["newest_generation"]
                    row = {**row, "result_at": running.result_json.stat().st_mtime}
            except OSError:  # removed meanwhile (retention)
                pass
        if generation is not None:
            folder = self.results.folder(row["series_uid"], generation)
            shown = folder.read_cached()
            if shown is None:  # removed meanwhile (retention)
                generation, folder = None, None
            else:
                result = shown.document
        return Study(study_id, row, status, error, generation, folder, result)
