"""The result folder of one analysis: the contract between the analysis, the DICOM export, the
node and the web API. Every path into a result folder is named here.

Layout of a result folder ``OUT``::

    result.json               the result (schema: triage.report.result), renamed into place whole
    summary.png               core (magenta) and Tmax > 6 s (green) over the slices, with the numbers
    images/<map>.png          each map colour-mapped with a colour bar
    images/aif.png            where the AIF and VOF were measured, and their curves
    maps/<map>.nii.gz         cbf, cbv, mtt, tmax, ttp (float32) on the acquisition grid
    maps/core.nii.gz, maps/hypoperfusion.nii.gz   uint8 masks (Tmax > 6 s for hypoperfusion)
    dicom/<name>.dcm          the node's DICOM result objects (SC, SEG, SR; triage.dicom_out)
    dicom/.sent               names of the objects the PACS acknowledged, one a line (fsync'd)

The analysis writes everything but ``dicom/`` to a hidden sibling (:meth:`ResultFolder.staging`)
and renames it to ``OUT`` when whole, so a folder with a ``result.json`` is a whole analysis
(its ``dicom/`` may still be being written).

The node keeps one result folder per analysis generation of a series (:class:`ResultsRoot`)::

    DATA/results/<series>/<generation>/    the result folder
    DATA/results/<series>/<generation>.log          the analysis' output (``error: ...`` lines)
    DATA/results/<series>/<generation>.references   the files of the first time point, one a line

``<series>`` is :func:`triage.base.names.safe_name` of the Series Instance UID (the web API's
study id).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from triage.base.durable import fsync_directory
from triage.base.errors import InputError
from triage.base.language import Text
from triage.base.names import safe_name

RESULT_JSON = "result.json"
SUMMARY_PNG = "summary.png"
MAPS_DIR = "maps"
IMAGES_DIR = "images"
DICOM_DIR = "dicom"
SENT_LEDGER = ".sent"
MAP_SUFFIX = ".nii.gz"
ANNOUNCED_SUFFIX = ".announced"  # of an announcement's hidden folder


@dataclass(frozen=True)
class Result:
    """A complete ``result.json``: the figures other stages read, typed (volumes in mL), and the
    whole ``document`` (schema ``stroke-triage/result/1``, see :mod:`triage.report.result`)."""

    document: dict
    study_uid: str
    series_uid: str
    core_ml: float
    tmax6_ml: float
    tmax10_ml: float
    mismatch_ml: float
    mismatch_ratio: float | None
    hir: float | None
    quality_level: str
    warnings: tuple[str, ...]

    def reason(self, criterion: str) -> str:
        """Why ``criterion`` (``"defuse3"``, ``"dawn"``) is met or not: a :class:`Text` when the
        document holds its catalog data, else the document's string."""
        data = self.document.get("texts", {}).get("reasons", {}).get(criterion)
        return _text(data) or str(self.document["eligibility"]["reasons"][criterion])

    @classmethod
    def from_document(cls, document) -> Result:
        """``document`` (parsed JSON) checked; ValueError when it is not a complete result."""
        if not isinstance(document, dict) or document.get("status") != "complete" or not document.get("series_uid"):
            raise ValueError("not a complete triage result")
        try:
            quality = document["quality"]
            return cls(document, str(document.get("study_uid", "")), str(document["series_uid"]),
                       float(document["core_ml"]), float(document["tmax6_ml"]), float(document["tmax10_ml"]),
                       float(document["mismatch_ml"]), _optional(document["mismatch_ratio"]),
                       _optional(document["hir"]), str(quality["level"]),
                       _with_texts(quality["warnings"], document.get("texts", {}).get("warnings")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a complete triage result ({type(exc).__name__}: {exc})") from None


def _with_texts(strings: list, texts: list | None) -> tuple[str, ...]:
    """``strings`` with each that has its catalog data in ``texts`` as a :class:`Text` (which
    another language can render); the others as they are."""
    texts = texts if isinstance(texts, list) and len(texts) == len(strings) else [None] * len(strings)
    return tuple(_text(data) or str(s) for s, data in zip(strings, texts))


def _text(data) -> Text | None:
    try:
        return Text.from_dict(data) if isinstance(data, dict) else None
    except (InputError, KeyError, IndexError, ValueError, TypeError):  # a catalog of another version
        return None


def _optional(value) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class ResultFolder:
    """One analysis' result folder at ``path`` (see the module docstring for its layout)."""

    path: Path

    @property
    def result_json(self) -> Path:
        return self.path / RESULT_JSON

    @property
    def summary_png(self) -> Path:
        return self.path / SUMMARY_PNG

    @property
    def maps_dir(self) -> Path:
        return self.path / MAPS_DIR

    @property
    def dicom_dir(self) -> Path:
        return self.path / DICOM_DIR

    def map_file(self, name: str) -> Path:
        """``maps/<name>.nii.gz``: a map (``cbf``, ...) or a mask (``core``, ``hypoperfusion``)."""
        return self.path / MAPS_DIR / f"{name}{MAP_SUFFIX}"

    def image(self, name: str) -> Path:
        """``images/<name>.png``: a colour map (``cbf``, ...) or ``aif``."""
        return self.path / IMAGES_DIR / f"{name}.png"

    def staging(self, pid: int | None = None) -> Path:
        """The hidden sibling the analysis is written to before it is renamed to :attr:`path`."""
        return self.path.parent / f".{self.path.name}.partial-{os.getpid() if pid is None else pid}"

    def stale_staging(self) -> list[Path]:
        """Staging folders left by analyses that were killed."""
        return sorted(self.path.parent.glob(f".{self.path.name}.partial-*"))

    def announcement(self) -> ResultFolder:
        """The hidden sibling holding the result's announcement while the rest is written: its
        ``result.json`` (complete, with only the summary picture among its outputs) and that
        picture, renamed into place together before the maps, pictures and DICOM objects are
        made; removed once the whole folder is in place. Enough for the stroke team's alert."""
        return ResultFolder(self.path.parent / f".{self.path.name}{ANNOUNCED_SUFFIX}")

    def published(self) -> ResultFolder:
        """The folder in its place: this one, or the one this :meth:`announcement` is of."""
        name = self.path.name
        if name.startswith(".") and name.endswith(ANNOUNCED_SUFFIX):
            return ResultFolder(self.path.parent / name[1:-len(ANNOUNCED_SUFFIX)])
        return self

    def check_writable(self) -> None:
        """Refuse an existing folder unless it is empty or an earlier triage output."""
        path = self.path
        if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or self.result_json.exists())):
            raise InputError(f"output {path} exists and is not an earlier triage output; choose another --out")

    def has_result(self) -> bool:
        """Whether ``result.json`` is in place (the analysis is whole; it may still be unreadable)."""
        return self.result_json.exists()

    def read(self) -> Result:
        """The result; InputError (one line) when it is unreadable or not complete."""
        try:
            return Result.from_document(json.loads(self.result_json.read_text()))
        except OSError as exc:
            raise InputError(f"cannot read {self.result_json}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise InputError(f"{self.result_json} is not a complete triage result: {exc}") from None

    def read_cached(self) -> Result | None:
        """The result, parsed once per version of the file (a generation's result never changes
        once written); None when it is missing or not a complete result."""
        try:
            stamp = self.result_json.stat().st_mtime_ns
        except OSError:
            return None
        return _parsed(self.result_json, stamp)

    def dicom_objects(self) -> list[Path]:
        """The DICOM result objects written so far, by name."""
        return sorted(self.dicom_dir.glob("*.dcm"))

    def sent(self) -> set[str]:
        """Names of the DICOM objects the PACS acknowledged."""
        ledger = self.dicom_dir / SENT_LEDGER
        return set(ledger.read_text().split()) if ledger.exists() else set()

    def record_sent(self, names: list[str]) -> None:
        """Add ``names`` to the ledger of objects the PACS acknowledged (fsync'd): a retry after
        a partial failure sends only the rest. (An object acknowledged in an association cut
        short by a crash is sent again after the restart, with the same SOP Instance UID.)"""
        if not names:
            return
        ledger = self.dicom_dir / SENT_LEDGER
        new = not ledger.exists()
        with open(ledger, "a") as stream:
            stream.write("".join(f"{name}\n" for name in names))
            stream.flush()
            os.fsync(stream.fileno())
        if new:
            fsync_directory(ledger.parent)


@dataclass(frozen=True)
class ResultsRoot:
    """The node's result folders: ``<path>/<series>/<generation>/`` (see the module docstring)."""

    path: Path

    def series_dir(self, series_uid: str) -> Path:
        return self.path / safe_name(series_uid)

    def folder(self, series_uid: str, generation: int) -> ResultFolder:
        return ResultFolder(self.series_dir(series_uid) / str(generation))

    def log(self, series_uid: str, generation: int) -> Path:
        return self.series_dir(series_uid) / f"{generation}.log"

    def references(self, series_uid: str, generation: int) -> Path:
        return self.series_dir(series_uid) / f"{generation}.references"


@lru_cache(maxsize=256)
def _parsed(path: Path, stamp: int) -> Result | None:
    try:
        return Result.from_document(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
