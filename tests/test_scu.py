"""Sending results to PACS with real receivers: DCMTK storescp, and pynetdicom SCPs that refuse a
called AE title, a SOP class, one instance, or drop the association half-way."""

from __future__ import annotations

import logging
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, SecondaryCaptureImageStorage

from dicom_node.scp import TlsConfig
from dicom_node.scu import RemoteAE, SendError, send_files
from sample_data.dicom_writer import VARIANTS
from sample_data.phantom import CASES, make_phantom, write_dicom
from tests.support.peers import free_port, make_certificates, storescp
from tests.test_dicom_export import analyse_dicom, source_files
from triage.dicom_out.export import write_result_objects


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Result objects of a small phantom (7 SC in RLE Lossless, SEG, SR) and two source CT images,
    one RLE and one Implicit VR Little Endian: five SOP class/transfer syntax pairs."""
    root = tmp_path_factory.mktemp("scu")
    phantom = make_phantom(replace(CASES["mismatch"], matrix=64, n_slices=6, n_frames=24))
    write_dicom(phantom, root / "dicom")
    write_dicom(phantom, root / "rle", variant=VARIANTS["rle"])
    write_dicom(phantom, root / "implicit", variant=VARIANTS["implicit"])
    analyse_dicom(root / "dicom", root / "out")
    results = write_result_objects(root / "out", source_files(root / "dicom"), uid_seed="scu")
    return results + [source_files(root / "rle")[0], source_files(root / "implicit")[0]]


def sop_uid(path: Path) -> str:
    return pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID


# ----------------------------------------------------------------------------- addresses

@pytest.mark.parametrize("text, expected", [
    ("PACS@10.0.0.5:104", ("PACS", "10.0.0.5", 104)),
    (" ORTHANC@pacs.example.org:4242 ", ("ORTHANC", "pacs.example.org", 4242)),
    ("MY AE@[fd00::5]:11112", ("MY AE", "fd00::5", 11112)),
])
def test_parse_remote_ae(text, expected):
    remote = RemoteAE.parse(text)
    assert (remote.ae_title, remote.host, remote.port) == expected
    assert RemoteAE.parse(str(remote)) == remote


@pytest.mark.parametrize("text, reason", [
    ("PACS10.0.0.5:104", "expected AET@HOST:PORT"),
    ("PACS@10.0.0.5", "expected AET@HOST:PORT"),
    ("PACS@10.0.0.5:dicom", "port 'dicom' is not 1-65535"),
    ("PACS@10.0.0.5:70000", "port '70000' is not 1-65535"),
    ("@10.0.0.5:104", "invalid AE title ''"),
    ("SEVENTEEN_CHARS_X@10.0.0.5:104", "1 to 16 printable characters"),
    ("PA\\CS@10.0.0.5:104", "no backslash"),
])
def test_malformed_addresses_say_what_is_wrong(text, reason):
    with pytest.raises(ValueError, match="invalid PACS address") as caught:
        RemoteAE.parse(text)
    assert reason in str(caught.value) and "\n" not in str(caught.value)


# ----------------------------------------------------------------------------- DCMTK storescp

def test_every_file_arrives_at_storescp(files, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dicom_node.scu")
    with storescp(tmp_path / "received", ae_title="PACS", extra=("+xa",)) as (port, _):  # any syntax
        report = send_files(files, RemoteAE("PACS", "127.0.0.1", port), calling_aet="TRIAGE", timeout=10)
    assert report.ok, report.summary()
    assert [r.path for r in report.results] == files and all(r.status == 0 for r in report.results)
    received = {sop_uid(p): p for p in (tmp_path / "received").iterdir()}
    assert set(received) == {sop_uid(p) for p in files}
    for path in files:  # the same dataset, element for element, in its own transfer syntax
        sent, got = pydicom.dcmread(path), pydicom.dcmread(received[sop_uid(path)])
        assert got.SOPClassUID == sent.SOPClassUID
        assert got.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        if "PixelData" in sent:
            assert got.PixelData == sent.PixelData
        else:
            assert got.ContentSequence == sent.ContentSequence
    stored_lines = [r for r in caplog.records if r.name == "dicom_node.scu" and r.getMessage().startswith("stored ")]
    assert len(stored_lines) == len(files)
    assert report.summary().startswith(f"{len(files)}/{len(files)} files stored on PACS@127.0.0.1:{port}")
    assert report.decompressed == [] and sum(r.path.name.startswith("sc-") for r in report.results) == 7
    assert {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
            for p in files if p.name.startswith("sc-")} == {RLELossless}


def test_dicom_tls_to_storescp_and_an_untrusted_pacs(files, tmp_path):
    """Over DICOM TLS, with our client certificate, to a storescp that requires one: every file
    arrives. A PACS whose certificate our CA did not sign is refused, and the reason says TLS."""
    certs = make_certificates(tmp_path)
    tls = TlsConfig(cert=certs["client.pem"], key=certs["client.key"], ca=certs["ca.pem"]).client_context()
    server = ("+tls", str(certs["server.key"]), str(certs["server.pem"]), "+cf", str(certs["ca.pem"]), "+xa")
    with storescp(tmp_path / "received", ae_title="PACS", extra=server) as (port, _):
        report = send_files(files[:3], RemoteAE("PACS", "127.0.0.1", port), calling_aet="TRIAGE",
                            timeout=10, tls=tls)
    assert report.ok, report.summary()
    assert {sop_uid(p) for p in (tmp_path / "received").iterdir()} == {sop_uid(p) for p in files[:3]}
    (tmp_path / "other").mkdir()
    other = make_certificates(tmp_path / "other")
    impostor = ("+tls", str(other["server.key"]), str(other["server.pem"]), "+cf", str(certs["ca.pem"]))
    with storescp(tmp_path / "impostor", ae_title="PACS", extra=impostor) as (port, _):
        with pytest.raises(SendError, match="DICOM TLS handshake failed: CERTIFICATE_VERIFY_FAILED"):
            send_files(files[:1], RemoteAE("PACS", "127.0.0.1", port), calling_aet="TRIAGE", timeout=10, tls=tls)
    assert not list((tmp_path / "impostor").iterdir())


def test_compressed_files_arrive_decompressed_at_a_pacs_accepting_only_uncompressed(files, tmp_path, caplog):
    """storescp without +xa accepts only uncompressed syntaxes: the RLE files (7 SC, 1 CT) are
    decompressed before sending, pixel-identical, under their own SOP Instance UIDs; one log line
    says so."""
    caplog.set_level(logging.INFO, logger="dicom_node.scu")
    with storescp(tmp_path / "received", ae_title="PACS") as (port, _):
        report = send_files(files, RemoteAE("PACS", "127.0.0.1", port), calling_aet="TRIAGE", timeout=10)
    assert report.ok, report.summary()
    rle = [p for p in files
           if pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID == RLELossless]
    assert len(rle) == 8 and report.decompressed == rle
    received = {sop_uid(p): p for p in (tmp_path / "received").iterdir()}
    for path in rle:
        sent, got = pydicom.dcmread(path), pydicom.dcmread(received[sop_uid(path)])
        assert got.file_meta.TransferSyntaxUID in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
        np.testing.assert_array_equal(got.pixel_array, sent.pixel_array)
    lines = [r.getMessage() for r in caplog.records if "decompressed" in r.getMessage()]
    assert lines == [f"8 file(s) sent decompressed: PACS@127.0.0.1:{port} accepts no CT Image Storage in "
                     "RLE Lossless, Secondary Capture Image Storage in RLE Lossless"]


def test_pacs_down_is_one_line_send_error(files, caplog):
    port = free_port()  # nothing listens there
    with pytest.raises(SendError) as caught:
        send_files(files[:2], RemoteAE("PACS", "127.0.0.1", port), timeout=5)
    message = str(caught.value)
    assert message == f"PACS PACS@127.0.0.1:{port} unreachable: Connection refused"
    assert any(message in r.getMessage() for r in caplog.records if r.name == "dicom_node.scu")


def test_pacs_refusing_associations_is_one_line_send_error(files, tmp_path):
    with storescp(tmp_path / "received", extra=("--refuse",)) as (port, _):
        with pytest.raises(SendError) as caught:
            send_files(files[:1], RemoteAE("PACS", "127.0.0.1", port), timeout=5)
    assert str(caught.value) == (f"PACS PACS@127.0.0.1:{port} rejected the association from TRIAGE: "
                                 "No reason given [Rejected (Permanent) by DUL service-user]")
    assert not list((tmp_path / "received").iterdir())


# ----------------------------------------------------------------------------- pynetdicom SCPs

def start_scp(*, contexts, handler=None, ae_title="PACS"):
    """A pynetdicom storage SCP on a free loopback port that checks the called AE title."""
    ae = AE(ae_title=ae_title)
    ae.require_called_aet = True
    for sop_class, syntaxes in contexts:
        ae.add_supported_context(sop_class, syntaxes)
    handlers = [(evt.EVT_C_STORE, handler or (lambda event: 0x0000))]
    port = free_port()
    return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers), port


def test_wrong_called_ae_title_is_one_line_send_error(files):
    server, port = start_scp(contexts=[(SecondaryCaptureImageStorage, [ExplicitVRLittleEndian])])
    try:
        with pytest.raises(SendError) as caught:
            send_files(files[:1], RemoteAE("NOTPACS", "127.0.0.1", port), timeout=5)
    finally:
        server.shutdown()
    assert str(caught.value) == (f"PACS NOTPACS@127.0.0.1:{port} rejected the association from TRIAGE: "
                                 "Called AE title not recognised [Rejected (Permanent) by DUL service-user]")


def test_failures_of_single_files_are_reported_per_file(files, tmp_path, caplog):
    """SCP: Secondary Capture in Implicit VR only, CT images, no SEG/SR; one SC refused (0xA700)."""
    refused_uid = sop_uid(files[1])
    stored = []

    def handler(event):
        if event.request.AffectedSOPInstanceUID == refused_uid:
            return 0xA700
        stored.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    not_dicom = tmp_path / "result.json"
    not_dicom.write_text("{}")
    server, port = start_scp(handler=handler, contexts=[
        (SecondaryCaptureImageStorage, [ImplicitVRLittleEndian]),
        (CTImageStorage, [ExplicitVRLittleEndian, RLELossless, ImplicitVRLittleEndian])])
    try:
        report = send_files([*files, not_dicom], RemoteAE("PACS", "127.0.0.1", port), timeout=10)
    finally:
        server.shutdown()
    outcome = {r.path.name: r for r in report.results}
    assert not report.ok and len(report.results) == len(files) + 1
    assert outcome[files[1].name].status == 0xA700 and not outcome[files[1].name].stored
    assert outcome[files[1].name].reason == "failure 0xA700: Refused: Out of Resources"
    assert outcome["seg.dcm"].reason == "PACS accepts no Segmentation Storage in Explicit VR Little Endian"
    assert outcome["sr.dcm"].reason == "PACS accepts no Comprehensive SR Storage in Explicit VR Little Endian"
    assert outcome["seg.dcm"].status is None
    assert outcome["result.json"].reason.startswith("not a sendable DICOM file")
    # Every other file went through (SC decompressed and converted to Implicit VR, CT RLE and
    # Implicit as they are).
    assert set(stored) == {sop_uid(p) for p in files if p.name not in ("seg.dcm", "sr.dcm", files[1].name)}
    assert {r.path for r in report.failed} == {files[1], *[p for p in files if p.name in ("seg.dcm", "sr.dcm")],
                                               not_dicom}
    assert "\n" not in report.summary() and "failed: " in report.summary()
    warnings = [r for r in caplog.records if r.name == "dicom_node.scu" and r.levelno == logging.WARNING]
    assert len(warnings) == 5  # four files and the summary


def test_pacs_accepting_none_of_the_classes_fails_each_file(files):
    server, port = start_scp(contexts=[(CTImageStorage, [ExplicitVRLittleEndian])])
    try:
        report = send_files(files[7:9], RemoteAE("PACS", "127.0.0.1", port), timeout=5)  # SEG and SR
    finally:
        server.shutdown()
    assert [r.reason for r in report.results] == [
        "PACS accepts no Segmentation Storage in Explicit VR Little Endian",
        "PACS accepts no Comprehensive SR Storage in Explicit VR Little Endian"]


def test_pacs_that_never_answers_is_one_line_send_error(files):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # the kernel completes the TCP handshake; nobody speaks DICOM
    port = listener.getsockname()[1]
    try:
        with pytest.raises(SendError) as caught:
            send_files(files[:1], RemoteAE("PACS", "127.0.0.1", port), timeout=1.0)
    finally:
        listener.close()
    assert str(caught.value) == (f"PACS PACS@127.0.0.1:{port} unreachable: "
                                 "no answer to the association request within 1 s")


def test_association_lost_half_way_fails_the_rest(files):
    received = []

    def handler(event):
        received.append(event.request.AffectedSOPInstanceUID)
        if len(received) == 2:
            event.assoc.abort()
        return 0x0000

    server, port = start_scp(handler=handler, contexts=[
        (SecondaryCaptureImageStorage, [ExplicitVRLittleEndian]), (CTImageStorage, [ExplicitVRLittleEndian])])
    try:
        report = send_files(files[:5], RemoteAE("PACS", "127.0.0.1", port), timeout=5)
    finally:
        server.shutdown()
    assert [r.stored for r in report.results] == [True, False, False, False, False] and len(received) == 2
    assert report.results[1].reason == "no C-STORE response (timeout or association aborted)"
    # The abort reaches our side while the next request may already be under way.
    assert {r.reason for r in report.results[3:]} == {"association lost before this file was sent"}
    assert report.results[2].reason in {"association lost before this file was sent",
                                        "no C-STORE response (timeout or association aborted)"}
