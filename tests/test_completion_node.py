"""Series completion in a running node (`triage serve`): declared as soon as the series is known to
be whole, never while its sender is still on it.

DCMTK storescu sends the finished series; a pynetdicom sender plays a PACS that pauses mid-series
inside its association (storescu cannot pause). The node runs with a long ``--quiet-seconds``, so
a series analysed before it shows that the early paths were taken.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from sample_data.phantom import CASES, make_phantom, write_dicom
from tests.support import peers
from tests.support.node import NodeProcess

N_SLICES, N_FRAMES = 4, 20
LONG_QUIET_S = 30.0


@pytest.fixture(scope="module")
def series_files(tmp_path_factory):
    """A small CTP series (64 x 64 x 4 slices x 20 frames) in frame order, written twice: with
    NumberOfTemporalPositions (as the phantom writes it) and without any image count."""
    root = tmp_path_factory.mktemp("completion")
    phantom = make_phantom(replace(CASES["mismatch"], matrix=64, n_slices=N_SLICES, n_frames=N_FRAMES))
    announced = sorted(write_dicom(phantom, root / "announced"))
    unannounced = []
    for path in announced:
        ds = pydicom.dcmread(path)
        del ds.NumberOfTemporalPositions
        target = root / "unannounced" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target)
        unannounced.append(target)
    frames = {p: int(pydicom.dcmread(p, stop_before_pixels=True).TemporalPositionIdentifier) for p in announced}
    order = sorted(range(len(announced)), key=lambda k: frames[announced[k]])
    uid = str(pydicom.dcmread(announced[0], stop_before_pixels=True).SeriesInstanceUID)
    return {"announced": [announced[k] for k in order], "unannounced": [unannounced[k] for k in order], "uid": uid}


def queued_lines(node: NodeProcess) -> list[str]:
    return [line for line in node.log().splitlines() if re.search(r"analysis generation \d+ queued", line)]


@pytest.mark.parametrize("kind", ["announced", "unannounced"])
def test_finished_series_is_analysed_without_waiting_for_the_quiet_period(series_files, kind, tmp_path):
    """storescu sends the series and releases: with the image count in the headers, or from the
    sender's pace once it released, the series is queued long before --quiet-seconds."""
    node = NodeProcess(tmp_path / "node", quiet_seconds=LONG_QUIET_S).start()
    try:
        result = peers.storescu(node.port, series_files[kind], calling="CT1")
        assert result.returncode == 0, result.stderr[-2000:]
        (line,) = node.wait_for_log(r"analysis generation 1 queued", timeout=LONG_QUIET_S / 2)
        assert f"CTP, complete: {N_SLICES} positions x {N_FRAMES} time points" in line
    finally:
        assert node.stop() == 0


def _send_with_pause(port: int, files: list[Path], pause_after: int, pause_s: float, *, reconnect: bool) -> None:
    """Send ``files`` with pynetdicom, pausing ``pause_s`` after the first ``pause_after``: inside
    the association, or (``reconnect``) released and sent on in a new one."""
    ae = AE(ae_title="CT1")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    assert assoc.is_established
    for k, path in enumerate(files):
        if k == pause_after:
            if reconnect:
                assoc.release()
            time.sleep(pause_s)
            if reconnect:
                assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
                assert assoc.is_established
        status = assoc.send_c_store(pydicom.dcmread(path))
        assert status.Status == 0x0000
    assoc.release()


def test_sender_pausing_mid_series_is_not_cut_short(series_files, tmp_path):
    """Half the time points (a whole grid already), 2 s of silence inside the association, then
    the rest: one analysis, of every time point. Control: the same pause after a release is
    taken as the end at the sender's pace, and the late half starts generation 2."""
    files, half = series_files["unannounced"], N_SLICES * N_FRAMES // 2
    node = NodeProcess(tmp_path / "node", quiet_seconds=4.0).start()
    try:
        _send_with_pause(node.port, files, half, 2.0, reconnect=False)
        node.wait_for_log(r"analysis generation 1 queued", timeout=20)
        time.sleep(1.0)
        (line,) = queued_lines(node)
        assert f"{N_SLICES} positions x {N_FRAMES} time points" in line
    finally:
        assert node.stop() == 0

    control = NodeProcess(tmp_path / "control", quiet_seconds=4.0).start()
    try:
        _send_with_pause(control.port, files, half, 2.0, reconnect=True)
        control.wait_for_log(r"analysis generation 2 queued", timeout=20)
        first, second = queued_lines(control)
        assert f"{N_SLICES} positions x {N_FRAMES // 2} time points" in first
        assert "generation 2 queued" in second
    finally:
        assert control.stop() == 0
