"""The node (`triage serve`, a real child process) against the hostile corpus sent over DICOM by a
pynetdicom SCU (each file's dataset bytes as they are, not re-encoded).

Each instance gets a status: a refusal (0xC000) when its header cannot be decoded or its UIDs
are missing, else success with the instance stored as received, whatever its pixel data says (the
SCP decodes no pixels): such a series is then ignored by the completion check or refused by
the analysis with its one-line reason. The node keeps running, still takes a good study
afterwards, and every instance acknowledged with success is in the spool after a restart.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from sample_data.phantom import CASES as PHANTOMS
from sample_data.phantom import make_phantom, write_dicom
from tests.support import hostile, peers
from tests.support.node import NodeProcess
from triage.base.names import safe_name

# The cases whose files have a file meta group an SCU can send from (garbage and missing_meta
# have none: a network peer cannot deliver them as such).
SENT_CASES = ("truncated_mid_header", "truncated_mid_pixels", "huge_matrix", "rle_bomb",
              "wrong_vrs", "deep_sequence", "bad_uids", "mixed_geometry", "lying_frame_count",
              "many_series")
SUCCESS, CANNOT_UNDERSTAND = 0x0000, 0xC000


def _send(port: int, paths: list[Path]) -> dict[Path, int | None]:
    """Each of ``paths`` in one association: its status (None: no answer)."""
    ae = AE(ae_title="CT1")
    for syntax in (ExplicitVRLittleEndian, RLELossless):     # one context per syntax
        ae.add_requested_context(CTImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    assert assoc.is_established
    statuses = {}
    try:
        for path in paths:
            status = assoc.send_c_store(path)
            statuses[path] = int(status.Status) if "Status" in status else None
    finally:
        assoc.release()
    return statuses


def _uids(path: Path) -> tuple[str, str, str]:
    """Study, series and SOP Instance UIDs as the file holds them (read leniently)."""
    data = path.read_bytes()
    deep = data.find(b"\x40\x00\x30\xa7SQ")          # pydicom cannot read the deep sequence
    ds = pydicom.dcmread(io.BytesIO(data if deep < 0 else data[:deep]), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("hostile")
    return {case: hostile.CASES[case](root / case) for case in SENT_CASES}


def _spool_path(data_dir: Path, uids: tuple[str, str, str]) -> Path:
    study, series, sop = (safe_name(uid) for uid in uids)
    return data_dir / "spool" / study / series / f"{sop}.dcm"


def test_hostile_instances_get_a_status_and_nothing_acknowledged_is_lost(corpus, tmp_path):
    """Every hostile file sent gets a status; the refused ones are those whose header cannot
    be decoded; the node survives, takes a good study, and after a restart holds every
    instance it acknowledged."""
    node = NodeProcess(tmp_path / "node", quiet_seconds=0.5).start()
    good = make_phantom(replace(PHANTOMS["mismatch"], matrix=64, n_slices=4))
    good_files = write_dicom(good, tmp_path / "good")
    by_dcmtk = {*corpus["deep_sequence"], corpus["bad_uids"][1]}
    try:
        statuses = {}
        for case in SENT_CASES:
            statuses.update(_send(node.port, [p for p in corpus[case] if p not in by_dcmtk]))
        assert None not in statuses.values()
        refused = {p for p, status in statuses.items() if status != SUCCESS}
        assert {statuses[p] for p in refused} == {CANNOT_UNDERSTAND}
        # no Study/Series UID left; a SOP Instance UID with non-ASCII characters
        assert refused == {*corpus["truncated_mid_header"], corpus["bad_uids"][0]}
        node.wait_for_log(r"refused a CT Image Storage from 'CT1' .*: non-ASCII characters in "
                          r"SOPInstanceUID$")
        # DCMTK sends what pynetdicom will not (500 nested sequences, a SOP Instance UID over
        # 64 characters); the SCP reads no further than the attributes it needs: both stored
        for path in by_dcmtk:
            sent = peers.storescu(node.port, [path], calling="CT1")
            assert sent.returncode == 0 and "status" not in (sent.stdout + sent.stderr).lower()
            statuses[path] = SUCCESS
        assert node.process.poll() is None

        sent = peers.storescu(node.port, tmp_path / "good", calling="CT1")
        assert sent.returncode == 0, sent.stderr[-2000:]
        good_uid = str(pydicom.dcmread(good_files[0], stop_before_pixels=True).SeriesInstanceUID)
        node.wait_for_log(rf"analysis of {good_uid} generation 1 finished", timeout=180)
        for case in ("huge_matrix", "rle_bomb"):                 # analysed and refused, one line
            uid = _uids(corpus[case][0])[1]
            (line,) = node.wait_for_log(rf"analysis of {uid} generation 1 failed", timeout=120)
            assert "refused" in line, line
    finally:
        assert node.stop() == 0
    node.start()
    assert node.stop() == 0
    acknowledged = [p for p, status in statuses.items() if status == SUCCESS]
    assert len(acknowledged) > 3000
    lost = [p for p in acknowledged if not _spool_path(node.data_dir, _uids(p)).is_file()]
    assert not lost
    assert all(_spool_path(node.data_dir, _uids(p)).is_file() for p in good_files)
