"""STOW-RS (:mod:`dicom_node.stow`) against a real Orthanc with Debian's DICOMweb plugin.

The request's multipart encoding is checked by what Orthanc stored (the same bytes, read back
through its REST API and QIDO-RS); the answer's parsing by Orthanc's own answers, a refusal
(409 with a Failed SOP Sequence), a request with a part it cannot read, and a request it could
not split (200 listing nothing); then a wrong URL, a closed port, Basic authentication, and https
through stunnel (Debian's Orthanc crashes on https of its own).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest

from dicom_node.scu import SendableFile, SendError, read_sendable
from dicom_node.stow import StowEndpoint, multipart_body, parse_answer, store_files
from sample_data.phantom import CASES, make_phantom, write_dicom
from tests.support import peers
from tests.support.orthanc import DICOMWEB_ROOT, orthanc
from tests.support.tls_proxy import tls_proxy
from triage.base.http import post

PROCESSING_FAILURE = 0x0110  # Orthanc's Failure Reason for an instance outside the request's study


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    """Six small phantom CT images (64 x 64), one series."""
    phantom = make_phantom(replace(CASES["mismatch"], matrix=64, n_slices=2, n_frames=3))
    return write_dicom(phantom, tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    with orthanc(tmp_path_factory.mktemp("orthanc"), dicomweb=True) as server:
        yield server


def sendable(paths: list[Path]) -> list[SendableFile]:
    return [read_sendable(p) for p in paths]


def raw_stow(pacs, path: str, parts: list[bytes], content_type: str | None = None):
    """Orthanc's answer to a STOW-RS request made here, by hand."""
    body, multipart_type = multipart_body(parts)
    return post(pacs.dicomweb_url + path, body, {"Content-Type": content_type or multipart_type,
                                                  "Accept": "application/dicom+json"}, timeout=30)


def test_files_are_stored_as_they_are_in_requests_of_bounded_size(pacs, files, caplog):
    """With room for two files per request, six files go in three requests; Orthanc holds each
    with the bytes of its file, and QIDO-RS lists them all in their study."""
    caplog.set_level(logging.INFO, logger="dicom_node.stow")
    limit = 2 * max(p.stat().st_size for p in files) + 10
    report = store_files(files, StowEndpoint.parse(pacs.dicomweb_url), max_request_bytes=limit)
    assert report.ok and [r.status for r in report.results] == [0] * len(files)
    assert "(STOW-RS, 3 request(s))" in caplog.text
    uids = []
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        (instance,) = pacs.find("Instance", {"SOPInstanceUID": str(ds.SOPInstanceUID)})
        assert pacs.instance_file(instance) == path.read_bytes()
        uids.append(str(ds.SOPInstanceUID))
    listed = pacs.qido(f"studies/{ds.StudyInstanceUID}/instances")
    assert sorted(str(m.SOPInstanceUID) for m in listed) == sorted(uids)


def test_orthanc_refusal_is_a_failure_status_per_instance(pacs, files):
    """Orthanc refuses instances outside the study the request names (409, Failed SOP Sequence
    with Failure Reason 0x0110): each file is not stored, with that status and its UID."""
    answer = raw_stow(pacs, "/studies/1.2.3.4", [p.read_bytes() for p in files[:2]])
    assert answer.status == 409
    outcome = parse_answer(answer.status, answer.body, sendable(files[:2]), StowEndpoint.parse(pacs.dicomweb_url))
    for f in sendable(files[:2]):
        result = outcome[f.path]
        assert not result.stored and result.status == PROCESSING_FAILURE
        assert f.sop_instance_uid in result.reason and "0x0110" in result.reason and "HTTP 409" in result.reason


def test_a_part_orthanc_cannot_read_and_a_request_it_cannot_split(pacs, files):
    """Orthanc answers 400 listing the instance it stored when another part is not DICOM: that
    one is stored, the other not; a request whose boundary is not the declared one gets 200
    listing nothing: nothing is taken as stored."""
    endpoint = StowEndpoint.parse(pacs.dicomweb_url)
    first, second = sendable(files[2:4])
    answer = raw_stow(pacs, "/studies", [first.path.read_bytes(), b"not a DICOM file"])
    assert answer.status == 400
    outcome = parse_answer(answer.status, answer.body, [first, second], endpoint)
    assert outcome[first.path].stored and not outcome[second.path].stored
    assert "not in the server's answer (HTTP 400)" in outcome[second.path].reason

    answer = raw_stow(pacs, "/studies", [second.path.read_bytes()],
                      content_type='multipart/related; type="application/dicom"; boundary=other')
    assert answer.status == 200
    outcome = parse_answer(answer.status, answer.body, [second], endpoint)
    assert not outcome[second.path].stored and outcome[second.path].status is None


def test_wrong_url_and_closed_port_are_one_line_send_errors(pacs, files):
    with pytest.raises(SendError) as wrong:
        store_files(files[:1], StowEndpoint.parse(pacs.url + "/no-dicom-web"))
    port = pacs.url.rpartition(":")[2]
    assert str(wrong.value).startswith(f"DICOMweb server http://127.0.0.1:{port} answered STOW-RS with HTTP 404")
    closed = peers.free_port()
    with pytest.raises(SendError) as refused:
        store_files(files[:1], StowEndpoint.parse(f"http://127.0.0.1:{closed}/dicom-web"))
    assert str(refused.value) == f"DICOMweb server http://127.0.0.1:{closed} unreachable: Connection refused"
    assert "\n" not in str(wrong.value) + str(refused.value)


def test_basic_authentication_from_a_password_file_never_logged(tmp_path, files, caplog):
    """The password file's password is accepted; a wrong one is an HTTP 401 send error; neither
    password appears in an error or a log line."""
    caplog.set_level(logging.INFO)
    secret, wrong = "correct-horse-battery", "wrong-password-here"
    (tmp_path / "good").write_text(secret + "\n")
    (tmp_path / "bad").write_text(wrong)
    with orthanc(tmp_path / "orthanc", dicomweb=True, users={"triage": secret}) as pacs:
        url = pacs.dicomweb_url.replace("://", "://triage@")
        report = store_files(files[:1], StowEndpoint.parse(url, password_file=str(tmp_path / "good")))
        assert report.ok
        with pytest.raises(SendError) as refused:
            store_files(files[1:2], StowEndpoint.parse(url, password_file=str(tmp_path / "bad")))
        assert "HTTP 401" in str(refused.value)
        assert len(pacs.find("Instance", {})) == 1
    assert secret not in caplog.text + str(refused.value) and wrong not in caplog.text + str(refused.value)
    with pytest.raises(ValueError, match="needs the user name in the URL"):
        StowEndpoint.parse("http://127.0.0.1:1/dicom-web", password_file=str(tmp_path / "good"))
    with pytest.raises(ValueError, match="both in the URL and in a password file"):
        StowEndpoint.parse("http://u:p@127.0.0.1:1/x", password_file=str(tmp_path / "good"))


def test_https_verified_against_the_ca_file(tmp_path, files):
    """Orthanc behind a TLS proxy whose certificate a test CA signed: stored with that CA file;
    without it the system's CAs do not trust the server, a one-line send error."""
    certificates = peers.make_certificates(tmp_path)
    with orthanc(tmp_path / "orthanc", dicomweb=True) as pacs:
        http_port = int(pacs.url.rpartition(":")[2])
        with tls_proxy(tmp_path / "proxy", http_port, certificates["server.pem"], certificates["server.key"]) as port:
            url = f"https://127.0.0.1:{port}{DICOMWEB_ROOT}"
            assert store_files(files[:1], StowEndpoint.parse(url, ca_file=str(certificates["ca.pem"]))).ok
            with pytest.raises(SendError, match=r"unreachable: its certificate is not trusted \("):
                store_files(files[1:2], StowEndpoint.parse(url))
        assert len(pacs.find("Instance", {})) == 1


@pytest.mark.parametrize("url, message", [
    ("ftp://pacs/dicom-web", "invalid DICOMweb URL ftp://pacs: expected http(s)://"),
    ("https://user:pw@pacs:99999/x", "invalid DICOMweb URL https://pacs: the port is not 1-65535"),
    ("https://pacs/dicom-web?token=abc", "invalid DICOMweb URL https://pacs:443: a base URL has no ?query"),
])
def test_malformed_urls_are_refused_without_their_secrets(url, message):
    with pytest.raises(ValueError) as error:
        StowEndpoint.parse(url)
    assert str(error.value).startswith(message) and "pw" not in str(error.value) and "abc" not in str(error.value)


def test_endpoint_names_itself_by_scheme_host_and_port():
    endpoint = StowEndpoint.parse("https://triage:secret@[fd00::5]/pacs/dicom-web/")
    assert endpoint.url == "https://[fd00::5]/pacs/dicom-web" and endpoint.auth == ("triage", "secret")
    assert str(endpoint) == "https://[fd00::5]:443" and "secret" not in repr(endpoint)
