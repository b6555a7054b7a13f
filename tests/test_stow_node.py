"""``triage serve --pacs-dicomweb``: results sent with STOW-RS to a real Orthanc with Debian's
DICOMweb plugin, read back with QIDO-RS and WADO-RS.

Orthanc forwards a phantom CT perfusion study to the node over DICOM; the node analyses it and
stores its SR, SEG and Secondary Captures on Orthanc's DICOMweb service. A node whose DICOMweb
server is down, then up without DICOMweb, retries with one clear line per attempt and sends
everything once the server is there. In a hub, the worker sends (``triage worker
--pacs-dicomweb``).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest

from dicom_node.stow import StowEndpoint
from sample_data.phantom import CASES, make_phantom, write_dicom
from tests.support import peers
from tests.support.node import ROOT, NodeProcess
from tests.support.orthanc import DICOMWEB_ROOT, orthanc
from tests.support.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)
from tests.support.redis import RedisServer
from tests.support.worker import WorkerProcess
from tests.test_orthanc_loop import measured_volumes
from triage.node.sender import log_destination
from triage.settings import load_settings

N_SLICES, N_FRAMES = 8, 25
RESULT_MODALITIES = {"OT", "SC", "SEG", "SR"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A phantom CTP series, 128 x 128, 8 slices x 25 time points: its files and source header."""
    phantom = make_phantom(replace(CASES["mismatch"], matrix=128, n_slices=N_SLICES, n_frames=N_FRAMES))
    files = write_dicom(phantom, tmp_path_factory.mktemp("study"))
    return {"files": files, "source": pydicom.dcmread(files[0], stop_before_pixels=True)}


def result_files(node: NodeProcess, series_uid: str) -> dict[str, pydicom.Dataset]:
    """The node's result objects of generation 1 by SOP Instance UID."""
    paths = sorted((node.result_dir(series_uid, 1) / "dicom").glob("*.dcm"))
    return {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, paths)}


def read_back(pacs, study_uid: str) -> dict[str, pydicom.Dataset]:
    """Every result instance of the study, found with QIDO-RS and retrieved with WADO-RS."""
    found = {}
    for series in pacs.qido(f"studies/{study_uid}/series"):
        if series.Modality not in RESULT_MODALITIES:
            continue
        for match in pacs.qido(f"studies/{study_uid}/series/{series.SeriesInstanceUID}/instances"):
            path = f"studies/{study_uid}/series/{series.SeriesInstanceUID}/instances/{match.SOPInstanceUID}"
            (instance,) = pacs.wado(path)
            found[str(instance.SOPInstanceUID)] = instance
    return found


def test_results_stored_with_stow_rs_and_read_back_with_qido_and_wado(study, tmp_path):
    """Each result object is in Orthanc's copy of the source study (QIDO-RS), retrieved whole
    (WADO-RS), with the node's SOP Instance UIDs; the SR's volumes are result.json's."""
    source = study["source"]
    node = NodeProcess(tmp_path / "node", allow=("ORTHANC",))
    with orthanc(tmp_path / "orthanc", dicomweb=True,
                 modalities={"triage": ("TRIAGE", "127.0.0.1", node.port)}) as pacs:
        (study_id,) = pacs.upload(study["files"])
        node.extra = ("--pacs-dicomweb", pacs.dicomweb_url)
        node.start()
        try:
            forwarded = pacs.send_to("triage", [study_id])
            assert forwarded["FailedInstancesCount"] == 0
            port = pacs.url.rpartition(":")[2]
            node.wait_for_log(rf"results go to http://127.0.0.1:{port} by DICOMweb STOW-RS", timeout=5)
            node.wait_for_log(rf"sent \d+ objects of series .* generation 1 to http://127.0.0.1:{port} ", timeout=120)
        finally:
            assert node.stop() == 0
        written = result_files(node, str(source.SeriesInstanceUID))
        received = read_back(pacs, str(source.StudyInstanceUID))
    assert set(received) == set(written) and len(written) >= 4
    assert {ds.Modality for ds in received.values()} >= {"SR", "SEG", "OT"}
    for uid, ds in received.items():
        assert ds.SeriesInstanceUID == written[uid].SeriesInstanceUID
        assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == source.PatientID
    result = json.loads((node.result_dir(str(source.SeriesInstanceUID), 1) / "result.json").read_text())
    (sr,) = [ds for ds in received.values() if ds.Modality == "SR"]
    volumes = measured_volumes(sr)
    assert volumes["Ischemic core"] == pytest.approx(result["core_ml"], abs=0.051)
    assert volumes["Hypoperfusion"] == pytest.approx(result["tmax6_ml"], abs=0.051)
    assert pacs.dicomweb_url.endswith(DICOMWEB_ROOT)


def test_server_down_then_without_dicomweb_then_up_loses_nothing(study, tmp_path):
    """Nothing listens at the URL: one line per attempt, "unreachable: Connection refused",
    with growing delays. An Orthanc without the DICOMweb plugin there: one line per attempt,
    "answered STOW-RS with HTTP 404". With the plugin: every result object is stored once and
    the send job is done."""
    port = peers.free_port()
    url = f"http://127.0.0.1:{port}{DICOMWEB_ROOT}"
    node = NodeProcess(tmp_path / "node", extra=("--pacs-dicomweb", url)).start()
    series_uid = str(study["source"].SeriesInstanceUID)
    try:
        result = peers.storescu(node.port, study["files"], calling="CT1")
        assert result.returncode == 0, result.stderr[-2000:]
        refused = node.wait_for_log(rf"DICOMweb server http://127.0.0.1:{port} unreachable: Connection refused; "
                                    rf"series {re.escape(series_uid)} generation 1 not sent, retry in \d+ s$",
                                    count=2, timeout=120)
        delays = [int(re.search(r"retry in (\d+) s", line).group(1)) for line in refused]
        assert delays[1] > delays[0]
        with orthanc(tmp_path / "plain", http_port=port):
            node.wait_for_log(rf"DICOMweb server http://127.0.0.1:{port} answered STOW-RS with HTTP 404.*; "
                              rf"series {re.escape(series_uid)} generation 1 not sent, retry in \d+ s$", timeout=60)
        with orthanc(tmp_path / "pacs", http_port=port, dicomweb=True) as pacs:
            node.wait_for_log(r"sent \d+ objects of series .* generation 1", timeout=120)
            received = read_back(pacs, str(study["source"].StudyInstanceUID))
            stored, already = pacs.stores()
    finally:
        assert node.stop() == 0
    assert set(received) == set(result_files(node, series_uid))
    assert (stored, already) == (len(received), 0)
    store = node.store()
    try:
        assert [j.state for j in store.jobs(kind="send")] == ["done"]
    finally:
        store.close()


def test_a_hub_worker_sends_with_stow_rs(study, tmp_path, postgres_url):
    """A hub's listener receives the study; its worker, given ``--pacs-dicomweb``, analyses it
    and stores every result object on Orthanc's DICOMweb service."""
    data = tmp_path / "data"
    with RedisServer(tmp_path / "redis") as redis, orthanc(tmp_path / "orthanc", dicomweb=True) as pacs:
        hub = ("--queue", redis.url, "--database", postgres_url)
        node = NodeProcess(data, extra=hub)
        worker = WorkerProcess("worker", data, queue=redis.url, database=postgres_url,
                               extra=("--pacs-dicomweb", pacs.dicomweb_url))
        node.start()
        worker.start()
        port = pacs.url.rpartition(':')[2]
        try:
            worker.wait_for_log(rf"results go to http://127.0.0.1:{port} by DICOMweb STOW-RS", timeout=60)
            assert peers.storescu(node.port, study["files"], calling="CT1").returncode == 0
            worker.wait_for_log(rf"sent \d+ objects of series .* to http://127.0.0.1:{port} ",
                                timeout=180)
            received = read_back(pacs, str(study["source"].StudyInstanceUID))
        finally:
            assert worker.stop() == 0
            node.stop()
    assert set(received) == set(result_files(node, str(study["source"].SeriesInstanceUID)))


def test_both_pacs_settings_or_a_bad_url_end_the_node_with_one_line(tmp_path):
    def serve(*flags):
        command = [sys.executable, "-m", "triage.cli", "serve", "--data-dir", str(tmp_path), "--allow-aet", "CT1",
                   *flags]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        return result.returncode, result.stderr.strip().splitlines()

    assert serve("--pacs", "PACS@127.0.0.1:104", "--pacs-dicomweb", "http://127.0.0.1:8042/dicom-web") == (
        2, ["error: --pacs and --pacs-dicomweb are both set: results go to one PACS, by C-STORE or by STOW-RS; "
            "set one of them"])
    assert serve("--pacs-dicomweb", "https://triage:pw@pacs.example:8443/dicom-web?x=1") == (
        2, ["error: invalid DICOMweb URL https://pacs.example:8443: a base URL has no ?query or #fragment"])
    assert serve("--pacs-dicomweb-ca", "ca.pem") == (
        2, ["error: --pacs-dicomweb-password-file and --pacs-dicomweb-ca need --pacs-dicomweb"])


def test_the_settings_come_from_file_environment_and_flags(tmp_path):
    config = tmp_path / "triage.toml"
    config.write_text('[node]\npacs_dicomweb = "https://file/dicom-web"\npacs_dicomweb_ca = "/etc/ca.pem"\n')
    s = load_settings(config, environ={"TRIAGE_PACS_DICOMWEB_PASSWORD_FILE": "/run/pw"}).node
    assert (s.pacs_dicomweb, s.pacs_dicomweb_password_file, s.pacs_dicomweb_ca) == (
        "https://file/dicom-web", "/run/pw", "/etc/ca.pem")
    s = load_settings(config, environ={"TRIAGE_PACS_DICOMWEB": "https://env/dw"}, pacs_dicomweb="http://flag/dw").node
    assert s.pacs_dicomweb == "http://flag/dw"
    assert load_settings(config, environ={"TRIAGE_PACS_DICOMWEB": "https://env/dw"}).node.pacs_dicomweb == "https://env/dw"


def test_plain_http_beyond_this_machine_is_a_warning_without_the_password(caplog):
    caplog.set_level(logging.INFO, logger="triage.node")
    log_destination(StowEndpoint.parse("http://triage:hunter2-secret@pacs.example:8042/dicom-web"), False, Path("r"))
    log_destination(StowEndpoint.parse("http://127.0.0.1:8042/dicom-web"), False, Path("r"))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "results go to http://pacs.example:8042 by DICOMweb STOW-RS"),
        ("WARNING", "results go to http://pacs.example:8042 by plain http (patient data and the password not "
                    "encrypted; use https)"),
        ("INFO", "results go to http://127.0.0.1:8042 by DICOMweb STOW-RS")]
