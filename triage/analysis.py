"""The one analysis entry point: CT perfusion series in a directory of DICOM files in, result
folders out. ``triage analyze`` and the node's child process (:mod:`triage.node.child`) both call
:func:`analyse_directory`.

Each series found (or the one asked for) is assembled (:mod:`triage.imaging.assembly`), analysed
(:func:`triage.imaging.pipeline.analyse`) and written to its result folder
(:mod:`triage.report.folder`, written whole or not at all). Bad input raises
:class:`~triage.base.errors.InputError` with a one-line reason. Research use only.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from triage.base.errors import InputError
from triage.report.folder import ResultFolder
from triage.settings import AnalysisSettings

if TYPE_CHECKING:
    from triage.imaging.prefetch import SeriesPrefetch

Progress = Callable[[str], None]


@dataclass(frozen=True)
class AnalysisRequest:
    """What to analyse and how.

    input : directory of DICOM files (any nesting and names; other series may be mixed in)
    out : the result folder; with several perfusion series, ``out/<SeriesInstanceUID>/`` each,
        listed in ``out/series.json``
    series_uid : analyse only this series
    settings : analysis settings (profile, model, matrix, denoising, motion)
    age : patient age (years), overrides the DICOM Patient's Age; nihss : NIHSS score, for DAWN
    aif_xyz : force the AIF at this source-image column, row, slice (0-based)
    allow_incomplete_end : analyse the complete time points when the last ones lack slices
    announce : write the result's announcement first (``ResultFolder.announcement``: result.json
        and the summary picture), for the node's alert, while the rest is written
    """

    input: Path
    out: Path
    series_uid: str | None = None
    settings: AnalysisSettings = field(default_factory=AnalysisSettings)
    age: float | None = None
    nihss: int | None = None
    aif_xyz: tuple[int, int, int] | None = None
    allow_incomplete_end: bool = False
    announce: bool = False


@dataclass(frozen=True)
class AnalysedSeries:
    """One series' result: its folder and the ``result.json`` document written there."""

    folder: ResultFolder
    result: dict


def analyse_directory(request: AnalysisRequest, progress: Progress | None = None, *,
                      prefetch: SeriesPrefetch | None = None) -> list[AnalysedSeries]:
    """Analyse the perfusion series of ``request.input`` into result folders (see
    :class:`AnalysisRequest`); ``progress`` is told each stage. InputError for bad input.

    ``prefetch`` (of the directory ``request.input``) holds headers and planes read ahead as
    the files arrived, and the early stages run on them (:mod:`triage.imaging.early`); the
    result is the same as without it.
    """
    # The imaging stack is imported here: the node's own process never analyses in-process.
    from models.profiles import load_profile
    from triage.imaging.assembly import assemble, scan, select

    progress = progress or (lambda message: None)
    started = time.perf_counter()
    settings = request.settings
    profile = load_profile(settings.profile)
    ResultFolder(request.out).check_writable()
    progress(f"scanning {request.input}")
    chosen = select(prefetch.scan() if prefetch is not None else scan(request.input), request.series_uid)
    scan_seconds = time.perf_counter() - started
    done = []
    # The analysis modules (~0.5 s of imports: SciPy, SimpleITK, Pillow) load while the pixels
    # are read; only now, since scan() forks its header readers and a fork must not copy a
    # thread that holds an import lock.
    with ThreadPoolExecutor(max_workers=1) as loader:
        stack = loader.submit(_analysis_stack)
        for candidate in chosen:
            folder = ResultFolder(request.out if len(chosen) == 1 else request.out / candidate.series_uid)
            progress(f"reading series {candidate.series_uid}: {len(candidate.files)} files")
            read_start = time.perf_counter()
            series = assemble(candidate, max_matrix=settings.max_matrix,
                              drop_incomplete_end=request.allow_incomplete_end,
                              decoded=prefetch.decoded if prefetch is not None else None)
            read_seconds = time.perf_counter() - read_start
            aif_zyx = _aif_on_processing_grid(series, request.aif_xyz) if request.aif_xyz else None
            analyse, write_outputs = stack.result()
            analysis = analyse(series, settings, profile, age=request.age, nihss=request.nihss,
                               aif_zyx=aif_zyx, progress=progress,
                               early=prefetch.early if prefetch is not None else None)
            analysis.timings = {"scanning": round(scan_seconds, 3), "reading": round(read_seconds, 3),
                                **analysis.timings}
            progress("writing outputs")
            done.append(AnalysedSeries(folder, write_outputs(analysis, folder.path, started=started,
                                                             announce=request.announce)))
            started = time.perf_counter()
    if len(chosen) > 1:
        index = [{"series_uid": d.result["series_uid"], "result": f"{d.result['series_uid']}/result.json"}
                 for d in done]
        (request.out / "series.json").write_text(json.dumps(index, indent=2) + "\n")
    return done


def _analysis_stack():
    """``analyse`` and ``write_outputs`` (their modules import SciPy, SimpleITK and Pillow)."""
    from triage.imaging.pipeline import analyse
    from triage.report.outputs import write_outputs
    return analyse, write_outputs


def _aif_on_processing_grid(series, xyz) -> tuple[int, int, int]:
    """The processing-grid voxel (z, y, x) of a source-image column, row, slice."""
    source = series.acquisition_geometry or series.geometry
    shape = series.acquisition_shape or series.shape3d
    x, y, z = xyz
    if not (0 <= x < shape[2] and 0 <= y < shape[1] and 0 <= z < shape[0]):
        raise InputError(f"--aif {x},{y},{z} is outside the images ({shape[2]} x {shape[1]} x {shape[0]} slices)")
    zyx = np.rint(series.geometry.to_index(source.to_physical((z, y, x)))).astype(int)
    return tuple(int(v) for v in np.clip(zyx, 0, np.array(series.shape3d) - 1))


def voxel_argument(text: str) -> tuple[int, int, int]:
    """``--aif X,Y,Z`` as a tuple of ints (argparse type)."""
    try:
        x, y, z = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected X,Y,Z voxel indices (column,row,slice), e.g. 201,180,7") from None
    return x, y, z
