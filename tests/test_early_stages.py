"""The early stages, run while a series arrives, leave the analysis as a batch run gives it.

``SeriesPrefetch.work_ahead`` (:mod:`triage.imaging.early`) is run every few files, as the
node's read-ahead child runs it, on a phantom whose head moves in some frames; the analysis
must then match ``triage analyze`` of the final directory to the bit, with the images sent in
order, out of order, and with instances received again with new content after their time
point was estimated.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from models.profiles import load_profile
from sample_data.phantom import CASES, make_phantom, write_dicom
from triage.imaging.assembly import assemble, scan, select
from triage.imaging.pipeline import analyse
from triage.imaging.prefetch import SeriesPrefetch
from triage.settings import AnalysisSettings

N_SLICES, N_FRAMES = 8, 25
SETTINGS = AnalysisSettings(max_matrix=128)


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("early")
    phantom = make_phantom(replace(CASES["moved_noisy"], matrix=256, n_slices=N_SLICES, n_frames=N_FRAMES))
    write_dicom(phantom, root / "dicom")
    return root / "dicom"


@pytest.fixture(scope="module")
def batch(series_dir):
    return _analyse(series_dir)


def _analyse(directory: Path, prefetch: SeriesPrefetch | None = None):
    found = prefetch.scan() if prefetch is not None else scan(directory)
    series = assemble(select(found)[0], max_matrix=SETTINGS.max_matrix,
                      decoded=prefetch.decoded if prefetch is not None else None)
    return analyse(series, SETTINGS, load_profile(SETTINGS.profile),
                   early=prefetch.early if prefetch is not None else None)


def _arrive(directory: Path, order: list[Path]) -> SeriesPrefetch:
    prefetch = SeriesPrefetch(directory, SETTINGS.max_matrix)
    for n, path in enumerate(order, start=1):
        prefetch.add(path)
        if n % 5 == 0:
            prefetch.work_ahead()
    return prefetch


def _assert_same_analysis(a, b):
    for name in a.maps:
        assert np.array_equal(a.maps[name], b.maps[name], equal_nan=True), name
    assert a.lesion.volumes == b.lesion.volumes
    assert np.array_equal(a.motion.displacement_mm, b.motion.displacement_mm, equal_nan=True)
    assert (a.motion.excluded_frames, a.motion.corrected_frames) == (b.motion.excluded_frames,
                                                                      b.motion.corrected_frames)
    assert a.bolus == b.bolus and np.array_equal(a.tissue.parenchyma, b.tissue.parenchyma)


def _resend_with_new_content(path: Path) -> None:
    """The instance received again: same file name, pixels changed, renamed into place."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.copy()
    pixels[100:140, 100:140] += 40
    ds.PixelData = pixels.tobytes()
    ds.save_as(path.with_suffix(".new"))
    os.replace(path.with_suffix(".new"), path)


def _frame_files(directory: Path, frame: int) -> list[Path]:
    """The files of time point ``frame`` (0-based, by acquisition time)."""
    times = {p: float(pydicom.dcmread(p, stop_before_pixels=True).AcquisitionTime)
             for p in sorted(directory.rglob("*.dcm"))}
    wanted = sorted(set(times.values()))[frame]
    return [p for p, time in times.items() if time == wanted]


def test_the_moving_head_phantom_moves(batch):
    # otherwise registration, the costly early work, would not be exercised
    assert batch.motion.corrected_frames and batch.motion.max_displacement_mm > 1.0


def test_in_order_arrival_is_estimated_ahead_and_gives_the_batch_result(series_dir, batch):
    prefetch = _arrive(series_dir, sorted(series_dir.rglob("*.dcm")))
    assert prefetch.early.n_estimated >= N_FRAMES - 1  # all but perhaps the last time point
    _assert_same_analysis(_analyse(series_dir, prefetch), batch)


def test_out_of_order_arrival_gives_the_batch_result(series_dir, batch):
    order = sorted(series_dir.rglob("*.dcm"))
    random.Random(7).shuffle(order)
    _assert_same_analysis(_analyse(series_dir, _arrive(series_dir, order)), batch)


@pytest.mark.parametrize("frame", [0, 6])
def test_an_instance_received_again_after_its_frame_was_estimated(series_dir, tmp_path, frame):
    directory = tmp_path / "series"
    shutil.copytree(series_dir, directory)
    prefetch = _arrive(directory, sorted(directory.rglob("*.dcm")))
    before = prefetch.early.n_estimated
    changed = _frame_files(directory, frame)[N_SLICES // 2]
    _resend_with_new_content(changed)
    prefetch.add(changed)  # told of the new file, as the node tells the child; no work ahead since
    streamed = _analyse(directory, prefetch)
    _assert_same_analysis(streamed, _analyse(directory))
    assert prefetch.early.n_estimated == before
    series = assemble(select(scan(directory))[0], max_matrix=SETTINGS.max_matrix)
    ahead, brain = prefetch.early.matching(series.data, series.geometry)
    if frame == 0:  # a new reference: nothing made ahead applies
        assert ahead is None and brain is None
    else:
        assert frame not in ahead.frames and len(ahead.frames) >= N_FRAMES - 3
