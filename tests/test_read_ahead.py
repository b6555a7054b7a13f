"""Reading a series while it arrives gives the batch result, to the bit.

``triage.imaging.prefetch`` on its own (files added out of order, twice, changed after they were
added, or never added), and the node's read-ahead child (``triage.node.streams``) against
``triage analyze`` of the same files, sent by DCMTK storescu in shuffled order.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from sample_data.phantom import CASES, make_phantom, write_dicom
from tests.support import peers
from tests.support.node import ROOT, NodeProcess
from triage.imaging.assembly import assemble, scan, select
from triage.imaging.prefetch import SeriesPrefetch

N_SLICES, N_FRAMES = 6, 25


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("read-ahead")
    phantom = make_phantom(replace(CASES["mismatch"], matrix=256, n_slices=N_SLICES, n_frames=N_FRAMES))
    paths = write_dicom(phantom, root / "dicom")
    assert len(paths) == N_SLICES * N_FRAMES
    return root / "dicom"


def _batch(directory: Path):
    return assemble(select(scan(directory))[0], max_matrix=128)


def _assert_same_series(a, b):
    assert a.data.dtype == b.data.dtype and np.array_equal(a.data, b.data)
    assert np.array_equal(a.times, b.times) and a.geometry == b.geometry
    assert np.array_equal(a.attributes["SOPInstanceUIDs"], b.attributes["SOPInstanceUIDs"])


def test_planes_read_ahead_in_any_order_assemble_as_the_batch_read(series_dir, tmp_path):
    directory = tmp_path / "series"
    shutil.copytree(series_dir, directory)
    files = sorted(p for p in directory.rglob("*.dcm"))
    prefetch = SeriesPrefetch(directory, max_matrix=128)
    order = files[:-3]
    random.Random(4).shuffle(order)
    for path in order + order[:5]:  # out of order, five of them twice; three never added
        prefetch.add(path)
    # An instance received again after it was read: the same file name, new content.
    changed = order[0]
    ds = pydicom.dcmread(changed)
    pixels = ds.pixel_array.copy()
    pixels[:10, :10] += 50
    ds.PixelData = pixels.tobytes()
    ds.save_as(changed.with_suffix(".new"))
    os.replace(changed.with_suffix(".new"), changed)

    streamed = assemble(select(prefetch.scan())[0], max_matrix=128, decoded=prefetch.decoded)
    _assert_same_series(streamed, _batch(directory))
    assert prefetch.decoded.factor == 2 and len(prefetch.decoded.planes) == len(files) - 4
    assert prefetch.n_files == len(files)


def test_a_file_removed_after_it_was_read_is_not_assembled(series_dir, tmp_path):
    directory = tmp_path / "series"
    shutil.copytree(series_dir, directory)
    files = sorted(directory.rglob("*.dcm"))
    prefetch = SeriesPrefetch(directory, max_matrix=128)
    for path in files:
        prefetch.add(path)
    files[-1].unlink()  # the last time point now lacks a slice: both refuse it, the same way
    with pytest.raises(Exception) as streamed:
        assemble(select(prefetch.scan())[0], max_matrix=128, decoded=prefetch.decoded)
    with pytest.raises(Exception) as batch:
        _batch(directory)
    assert str(streamed.value) == str(batch.value)


def _maps(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted((folder / "maps").glob("*.nii.gz"))}


def test_node_reading_ahead_gives_the_batch_result(series_dir, tmp_path):
    """storescu sends the series shuffled; the node reads it ahead; `triage analyze` of the same
    files gives the same numbers and maps."""
    files = sorted(series_dir.rglob("*.dcm"))
    random.Random(7).shuffle(files)
    node = NodeProcess(tmp_path / "node").start()
    try:
        result = peers.storescu(node.port, files, calling="CT1")
        assert result.returncode == 0, result.stderr[-2000:]
        (started,) = node.wait_for_log(r"analysis of .* generation 1 started", timeout=60)
        assert "read ahead" in started
        node.wait_for_log(r"analysis of .* generation 1 finished", timeout=120)
    finally:
        assert node.stop() == 0
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    streamed = node.result_dir(uid, 1)
    assert f"read {len(files)} files of the series ahead" in (streamed.parent / "1.log").read_text()
    batch = tmp_path / "batch"
    run = subprocess.run([sys.executable, "-m", "triage.cli", "analyze", str(series_dir), "--out", str(batch),
                          "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    ours, theirs = (json.loads((d / "result.json").read_text()) for d in (streamed, batch))
    for key in ("core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml", "hir", "quality"):
        assert ours[key] == theirs[key], key
    ours_maps, theirs_maps = _maps(streamed), _maps(batch)
    assert ours_maps.keys() == theirs_maps.keys() and len(ours_maps) >= 6
    for name in ours_maps:
        assert np.array_equal(ours_maps[name], theirs_maps[name]), name


def test_a_read_ahead_child_that_dies_leaves_the_analysis_to_the_spool(series_dir, tmp_path):
    """kill -9 of the reading-ahead child mid-series: the series is still analysed, from the
    spool, once."""
    files = sorted(series_dir.rglob("*.dcm"))
    half = len(files) // 2
    node = NodeProcess(tmp_path / "node").start()
    try:
        assert peers.storescu(node.port, files[:half], calling="CT1").returncode == 0
        (line,) = node.wait_for_log(r"reading it ahead \(pid \d+\)", timeout=30)
        os.kill(int(re.search(r"pid (\d+)", line).group(1)), signal.SIGKILL)
        assert peers.storescu(node.port, files[half:], calling="CT1").returncode == 0
        node.wait_for_log(r"its reading-ahead child exited .*: analysed from the spool", timeout=60)
        node.wait_for_log(r"analysis of .* generation 1 finished", timeout=120)
        assert len(re.findall(r"analysis of .* started", node.log())) == 1
    finally:
        assert node.stop() == 0
