"""The storage SCP with real senders: DCMTK echoscu/storescu, and a pynetdicom SCU where DCMTK
refuses to send what the test needs (hostile UIDs, an exact status code)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE

from dicom_node.scp import OUT_OF_RESOURCES, STORE_FAILED, StorageSCP, TlsConfig
from dicom_node.spool import INCOMING, Spool
from sample_data.dicom_writer import VARIANTS
from sample_data.phantom import CASES, make_phantom, write_dicom
from tests.support import peers
from tests.support.dicom_factory import ct_instance
from triage.base.names import safe_name

SMALL = replace(CASES["mismatch"], matrix=64, n_slices=2, n_frames=3)


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> list[Path]:
    """A 64 x 64 phantom: 2 slices x 3 time points, explicit VR little endian."""
    root = tmp_path_factory.mktemp("phantom")
    return sorted(write_dicom(make_phantom(SMALL), root))


@pytest.fixture
def node(tmp_path):
    """Start a StorageSCP on a free loopback port: ``node(**options)`` → namespace with ``scp``,
    ``spool`` (root path) and ``infos`` (what ``on_stored`` received). Stopped afterwards."""
    started = []

    def start(reserve_bytes: int = 0, on_stored=None, **options):
        infos, lock = [], threading.Lock()

        def record(info):
            with lock:
                infos.append(info)
            if on_stored is not None:
                on_stored(info)

        options.setdefault("allowed_aets", frozenset({"MODALITY"}))
        spool = Spool(tmp_path / f"spool{len(started)}", reserve_bytes=reserve_bytes)
        scp = StorageSCP(spool, host="127.0.0.1", port=0, on_stored=record, **options)
        scp.start()
        started.append(scp)
        return SimpleNamespace(scp=scp, spool=spool.root, infos=infos)

    try:
        yield start
    finally:
        for scp in started:
            scp.stop()


def _stored_files(spool: Path) -> list[Path]:
    return sorted(spool.rglob("*.dcm"))


def _wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


def test_echo(node, caplog):
    caplog.set_level(logging.INFO, "dicom_node.scp")
    n = node()
    run = peers.echoscu(n.scp.port)
    assert run.returncode == 0, run.stderr
    assert "C-ECHO from 'MODALITY'" in caplog.text


def test_series_arrives_complete_and_identical(node, series, caplog):
    caplog.set_level(logging.INFO, "dicom_node.scp")
    n = node()
    run = peers.storescu(n.scp.port, series[0].parent, nodelay=False)
    assert run.returncode == 0, run.stderr
    assert len(n.infos) == len(series) == len(_stored_files(n.spool))
    infos = {info.sop_instance_uid: info for info in n.infos}
    for source in series:
        original = pydicom.dcmread(source)
        info = infos[original.SOPInstanceUID]
        path = n.spool / original.StudyInstanceUID / original.SeriesInstanceUID / \
            f"{original.SOPInstanceUID}.dcm"
        assert info.path == path and path.exists()
        stored = pydicom.dcmread(path)
        assert stored.PixelData == original.PixelData
        assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert (info.study_uid, info.series_uid) == (original.StudyInstanceUID,
                                                     original.SeriesInstanceUID)
        assert info.sop_class_uid == original.SOPClassUID and info.calling_aet == "MODALITY"
        assert info.position == tuple(float(v) for v in original.ImagePositionPatient)
        tm = original.AcquisitionTime
        assert info.time_s == pytest.approx(int(tm[:2]) * 3600 + int(tm[2:4]) * 60 + float(tm[4:]))
        assert info.acquisition_number == int(original.AcquisitionNumber)
        assert info.modality == "CT" and info.is_ct_image
    times = sorted({info.time_s for info in n.infos})
    assert len(times) == SMALL.n_frames and times == sorted(times)
    assert f"released: {len(series)} stored, 0 ignored, 0 failed" in caplog.text
    assert not any((n.spool / INCOMING).iterdir())


def test_unknown_calling_ae_is_rejected(node, caplog):
    caplog.set_level(logging.INFO, "dicom_node.scp")
    n = node()
    run = peers.echoscu(n.scp.port, calling="INTRUDER")
    assert run.returncode != 0
    assert "association rejected from 'INTRUDER' (127.0.0.1:" in caplog.text
    assert "calling AE title not allowed" in caplog.text


def _mr_instance(path: Path) -> Path:
    ct_instance(path, np.zeros((8, 8), np.int16), position=(0, 0, 0), time_s=0.0,
                study_uid=generate_uid(), series_uid=generate_uid())
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.Modality = "MR"
    ds.save_as(path)
    return path


def test_other_classes_are_ignored_by_default(node, tmp_path, caplog):
    caplog.set_level(logging.INFO, "dicom_node.scp")
    n = node()
    run = peers.storescu(n.scp.port, _mr_instance(tmp_path / "mr.dcm"))
    assert run.returncode == 0, run.stderr
    assert not _stored_files(n.spool) and not n.infos
    assert "ignored: MR Image Storage from 'MODALITY'" in caplog.text


def test_other_classes_stored_or_refused_by_configuration(node, tmp_path):
    mr = _mr_instance(tmp_path / "mr.dcm")
    storing = node(store_other_classes=True)
    assert peers.storescu(storing.scp.port, mr).returncode == 0
    assert [info.sop_class_uid for info in storing.infos] == [MRImageStorage]
    assert len(_stored_files(storing.spool)) == 1
    refusing = node(refuse_other_classes=True)
    run = peers.storescu(refusing.scp.port, mr, extra=("-v",))
    assert run.returncode != 0
    assert "no presentation context" in (run.stdout + run.stderr).lower()
    assert not _stored_files(refusing.spool) and not refusing.infos


def _convert(tool: str, options: tuple[str, ...], source: Path, target: Path) -> Path:
    subprocess.run([peers.dcmtk(tool), *options, str(source), str(target)], check=True,
                   capture_output=True)
    return target


@pytest.fixture(scope="module")
def encoded_files(series, tmp_path_factory) -> dict[str, Path]:
    """The first phantom image in each transfer syntax under test."""
    root = tmp_path_factory.mktemp("syntaxes")
    source = series[0]
    files = {
        ExplicitVRLittleEndian: source,
        ImplicitVRLittleEndian: _convert("dcmconv", ("+ti",), source, root / "implicit.dcm"),
        DeflatedExplicitVRLittleEndian: _convert("dcmconv", ("+td",), source,
                                                 root / "deflated.dcm"),
        JPEGLosslessSV1: _convert("dcmcjpeg", ("+e1",), source, root / "jpeg_sv1.dcm"),
        JPEGLossless: _convert("dcmcjpeg", ("+el",), source, root / "jpeg_p14.dcm"),
        JPEGLSLossless: _convert("dcmcjpls", ("+el",), source, root / "jpegls.dcm"),
        RLELossless: _convert("dcmcrle", (), source, root / "rle.dcm"),
    }
    j2k = make_phantom(replace(SMALL, n_slices=1))
    files[JPEG2000Lossless] = sorted(write_dicom(j2k, root / "j2k",
                                                 variant=VARIANTS["jpeg2000"]))[0]
    for syntax, path in files.items():
        assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    return files


# storescu options proposing each syntax; None: storescu has none, a pynetdicom SCU sends it
PROPOSE = {ExplicitVRLittleEndian: ("-xe",), ImplicitVRLittleEndian: ("-xi",),
           DeflatedExplicitVRLittleEndian: ("-xd",), JPEGLosslessSV1: ("-xs",),
           JPEGLossless: None, JPEGLSLossless: ("-xt",), RLELossless: ("-xr",),
           JPEG2000Lossless: ("-xv",)}


def _send_with_pynetdicom(port: int, path: Path) -> int:
    ds = pydicom.dcmread(path)
    ae = AE("MODALITY")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    try:
        return assoc.send_c_store(ds).Status
    finally:
        assoc.release()


def test_transfer_syntaxes_are_stored_as_received(node, encoded_files, series):
    n = node()
    reference = pydicom.dcmread(series[0]).pixel_array
    for syntax, path in encoded_files.items():
        if PROPOSE[syntax] is None:
            assert _send_with_pynetdicom(n.scp.port, path) == 0x0000
        else:
            run = peers.storescu(n.scp.port, path, extra=PROPOSE[syntax])
            assert run.returncode == 0, (syntax.name, run.stderr)
        original = pydicom.dcmread(path)
        stored_path = n.spool / original.StudyInstanceUID / original.SeriesInstanceUID / \
            f"{original.SOPInstanceUID}.dcm"
        stored = pydicom.dcmread(stored_path)
        assert stored.file_meta.TransferSyntaxUID == syntax, syntax.name
        assert stored.PixelData == original.PixelData, syntax.name
        if syntax != JPEG2000Lossless:            # a different phantom image
            assert np.array_equal(stored.pixel_array, reference), syntax.name
    assert len(n.infos) == len(encoded_files)


def test_reserve_refuses_with_out_of_resources(node, series, tmp_path, caplog):
    caplog.set_level(logging.INFO, "dicom_node.scp")
    n = node(reserve_bytes=shutil.disk_usage(tmp_path).free + 10**9)     # more than there is
    run = peers.storescu(n.scp.port, series[0], extra=("-v",))
    assert "Refused: OutOfResources" in run.stderr + run.stdout
    assert run.returncode != 0
    assert not _stored_files(n.spool) and not n.infos
    assert not any((n.spool / INCOMING).iterdir())
    assert "out of resources, refused" in caplog.text
    # the exact status, as pynetdicom sees it
    ae = AE("MODALITY")
    ae.add_requested_context(pydicom.dcmread(series[0]).SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", n.scp.port, ae_title="TRIAGE")
    try:
        assert assoc.send_c_store(pydicom.dcmread(series[0])).Status == OUT_OF_RESOURCES
    finally:
        assoc.release()


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")  # hostile on purpose
def test_hostile_uids_are_stored_under_safe_names(node, tmp_path, caplog):
    """Sent by a pynetdicom SCU: DCMTK refuses to send most of these UIDs."""
    caplog.set_level(logging.INFO, "dicom_node.scp")
    n = node()
    hostile = {"StudyInstanceUID": "../../etc", "SeriesInstanceUID": "9" * 300,
               "SOPInstanceUID": "1.2.\0/../x"}
    ct_instance(tmp_path / "src" / "bad.dcm", np.ones((8, 8), np.int16), position=(0, 0, 0),
                time_s=0.0, study_uid=generate_uid(), series_uid=generate_uid())
    ds = pydicom.dcmread(tmp_path / "src" / "bad.dcm")
    for keyword, value in hostile.items():
        setattr(ds, keyword, value)
    ae = AE("MODALITY")
    ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", n.scp.port, ae_title="TRIAGE")
    try:
        assert assoc.send_c_store(ds).Status == 0x0000
        for accent in "éè":            # both would be decoded as 1.2.3.\ufffd: refused, not mixed up
            ds.SOPInstanceUID = f"1.2.3.{accent}"
            assert assoc.send_c_store(ds).Status == 0xC000
        del ds.SeriesInstanceUID
        assert 0xC000 <= assoc.send_c_store(ds).Status <= 0xCFFF
    finally:
        assoc.release()
    files = _stored_files(n.spool)
    assert len(files) == 1 and len(n.infos) == 1
    relative = files[0].relative_to(n.spool)
    assert relative.parts == (safe_name("../../etc"), safe_name("9" * 300),
                              safe_name(n.infos[0].sop_instance_uid) + ".dcm")
    assert all(part.startswith("h") for part in relative.parts)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([n.spool.name, "src"])
    assert n.infos[0].study_uid == "../../etc"
    assert "without SeriesInstanceUID" in caplog.text
    assert caplog.text.count("non-ASCII characters in SOPInstanceUID") == 2


def test_a_killed_sender_does_not_disturb_a_concurrent_one(node, series, tmp_path, caplog):
    caplog.set_level(logging.INFO, "dicom_node.scp")
    doomed_series = generate_uid()
    doomed_dir = tmp_path / "doomed"
    for k in range(60):
        ct_instance(doomed_dir / f"{k:03d}.dcm", np.full((64, 64), k, np.int16),
                    position=(0, 0, k), time_s=float(k), study_uid=generate_uid(),
                    series_uid=doomed_series)

    def slow_consumer(info):              # keeps both associations open long enough to overlap
        time.sleep(0.05)

    n = node(on_stored=slow_consumer)

    def from_doomed() -> int:
        return sum(info.series_uid == doomed_series for info in n.infos)

    doomed = subprocess.Popen([peers.dcmtk("storescu"), "-aet", "MODALITY", "-aec", "TRIAGE",
                               "+sd", "127.0.0.1", str(n.scp.port), str(doomed_dir)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until(lambda: from_doomed() >= 3)
        survivor = subprocess.Popen([peers.dcmtk("storescu"), "-aet", "MODALITY", "-aec",
                                     "TRIAGE", "+sd", "127.0.0.1", str(n.scp.port),
                                     str(series[0].parent)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        try:
            _wait_until(lambda: len(n.infos) > from_doomed())
            os.kill(doomed.pid, signal.SIGKILL)
            doomed.wait(10)
            out, err = survivor.communicate(timeout=60)
        finally:
            peers.stop_process(survivor)
    finally:
        peers.stop_process(doomed)
    assert survivor.returncode == 0, err
    acknowledged = from_doomed()
    assert 3 <= acknowledged < 60
    for source in series:
        original = pydicom.dcmread(source)
        stored = n.spool / original.StudyInstanceUID / original.SeriesInstanceUID / \
            f"{original.SOPInstanceUID}.dcm"
        assert pydicom.dcmread(stored).PixelData == original.PixelData
    _wait_until(lambda: "closed without release" in caplog.text)
    doomed_files = [p for p in _stored_files(n.spool) if p.parent.name == doomed_series]
    assert len(doomed_files) == acknowledged
    assert not any((n.spool / INCOMING).iterdir())


def test_a_stalled_peer_takes_no_slot_and_is_closed_after_the_request_timeout(node):
    n = node(max_associations=1, request_timeout=1.0)
    stalled = socket.create_connection(("127.0.0.1", n.scp.port))
    try:
        time.sleep(0.2)
        run = peers.echoscu(n.scp.port)                        # the one slot is still free
        assert run.returncode == 0, run.stderr
        stalled.settimeout(10)
        started = time.monotonic()
        assert stalled.recv(1) == b""                          # the node closed it
        assert time.monotonic() - started < 5
    finally:
        stalled.close()


def test_a_request_beyond_the_slots_is_rejected_while_waiting_callers_take_none(node, caplog):
    caplog.set_level(logging.INFO, "dicom_node.scp")
    n = node(max_associations=1, request_timeout=30.0)
    waiting = [socket.create_connection(("127.0.0.1", n.scp.port)) for _ in range(5)]
    holder = AE("MODALITY")
    holder.add_requested_context("1.2.840.10008.1.1")
    assoc = holder.associate("127.0.0.1", n.scp.port, ae_title="TRIAGE")    # takes the one slot
    try:
        assert assoc.is_established
        run = peers.echoscu(n.scp.port)
        assert run.returncode != 0 and "Local Limit Exceeded" in run.stderr
        assert "connection from 127.0.0.1 rejected: at most 1 associations at a time" in caplog.text
    finally:
        assoc.release()
        for sock in waiting:
            sock.close()
    run = peers.echoscu(n.scp.port)
    assert run.returncode == 0, run.stderr


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, Path]:
    return peers.make_certificates(tmp_path_factory.mktemp("tls"))


def test_tls_with_client_certificates(node, series, certificates, caplog):
    caplog.set_level(logging.INFO, "dicom_node.scp")
    c = certificates
    n = node(tls=TlsConfig(cert=c["server.pem"], key=c["server.key"], ca=c["ca.pem"]), request_timeout=2.0)
    tls = ("+tls", str(c["client.key"]), str(c["client.pem"]), "+cf", str(c["ca.pem"]))
    stalled = socket.create_connection(("127.0.0.1", n.scp.port))   # never says hello
    try:
        run = peers.storescu(n.scp.port, series[0], extra=tls, timeout=30)
    finally:
        stalled.close()
    assert run.returncode == 0, run.stderr
    assert len(n.infos) == 1 and len(_stored_files(n.spool)) == 1
    _wait_until(lambda: "connection from 127.0.0.1 dropped: TLS handshake failed" in caplog.text)
    assert peers.echoscu(n.scp.port).returncode != 0            # plain TCP is refused
    anonymous = peers.storescu(n.scp.port, series[1], extra=("+tla", "+cf", str(c["ca.pem"])))
    assert anonymous.returncode != 0                            # no client certificate
    assert len(n.infos) == 1


def test_a_failing_on_stored_hook_fails_the_store(node, series, caplog):
    caplog.set_level(logging.INFO, "dicom_node.scp")

    def broken_job_store(info):
        raise RuntimeError("database is locked")

    n = node(on_stored=broken_job_store)
    ds = pydicom.dcmread(series[0])
    ae = AE("MODALITY")
    ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", n.scp.port, ae_title="TRIAGE")
    try:
        assert assoc.send_c_store(ds).Status == STORE_FAILED
    finally:
        assoc.release()
    assert "could not record it: database is locked" in caplog.text
    assert len(_stored_files(n.spool)) == 1          # on disk; a resend replaces it


def test_an_empty_allow_list_is_a_configuration_error(tmp_path):
    with pytest.raises(ValueError, match="no calling AE title"):
        StorageSCP(Spool(tmp_path / "spool"), allowed_aets=frozenset())
