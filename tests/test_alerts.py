"""Alerts to the stroke team's endpoint: payloads, signatures, backoff, the outbox, and
`triage serve` end to end with DCMTK storescu as the scanner and a real HTTP server on loopback
as the endpoint (``tests/support/endpoint.py``), the node killed and restarted with alerts pending."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from PIL import Image

from dicom_node.instance import CT_IMAGE_STORAGE, InstanceInfo
from sample_data.phantom import CASES, make_phantom, write_dicom
from tests.support import peers
from tests.support.endpoint import Endpoint
from tests.support.node import ROOT, NodeProcess
from triage.base.names import safe_name
from triage.node.alerts import (
    SIGNATURE_HEADER,
    THUMBNAIL_WIDTH_PX,
    AlertConfig,
    alert_config,
    failure_messages,
    result_messages,
    sign,
    unencrypted,
    verify_signature,
)
from triage.node.delivery import BACKOFF_CAP_S, JITTER, Deliverer, backoff, post
from triage.report.folder import Result, ResultFolder
from triage.settings import load_settings
from triage.store.jobs import JobStore
from triage.store.outbox import OutboxStore
from triage.store.records import SeriesRecord

N_SLICES, N_FRAMES = 8, 25
SECRET = "s3cret-shared-with-the-stroke-team"
VOLUMES = ("core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml", "mismatch_ratio", "hir")


# Signatures, backoff, payloads (no node)

def test_signature_verifies_and_rejects_tampering_other_secret_and_replay():
    body = b'{"kind":"result","volumes":{"core_ml":12.5}}'
    header = sign(SECRET.encode(), body)
    assert verify_signature(SECRET, header, body)
    assert not verify_signature(SECRET, header, body.replace(b"12.5", b"92.5"))
    assert not verify_signature("another-secret-of-16+", header, body)
    t = int(re.search(r"t=(\d+)", header).group(1))
    assert verify_signature(SECRET, header, body, now=t + 299)
    assert not verify_signature(SECRET, header, body, now=t + 301)      # replayed 5 min later
    assert not verify_signature(SECRET, header, body, now=t - 301)      # from the future
    assert not verify_signature(SECRET, "v1=" + header.split("v1=")[1], body)  # no time stamp
    assert not verify_signature(SECRET, "garbage", body)
    # The time stamp is signed too: moving it into the window breaks the signature.
    assert not verify_signature(SECRET, header.replace(f"t={t}", f"t={t + 100}"), body, now=t + 100)


def test_the_documented_verification_accepts_signed_bodies_only():
    """The plain-Python check in docs/alerts.md, run as written."""
    text = (ROOT / "docs" / "alerts.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict = {}
    exec(code, namespace)
    body = b'{"kind":"failure","error":"no arterial bolus found"}'
    header = sign(SECRET.encode(), body)
    assert namespace["verify"](SECRET.encode(), header, body)
    assert not namespace["verify"](SECRET.encode(), header, body.replace(b"no ", b""))
    assert not namespace["verify"](SECRET.encode(), sign(SECRET.encode(), body, time.time() - 600), body)
    assert not namespace["verify"](SECRET.encode(), "nonsense", body)


def test_plain_http_beyond_loopback_is_named():
    assert unencrypted(("http://127.0.0.1:9/a", "http://localhost/b", "http://[::1]:8/", "https://team.example/c",
                        "http://10.0.0.5/d?token=x")) == ["http://10.0.0.5"]


def test_backoff_doubles_from_one_second_capped_with_jitter():
    assert [backoff(n, rng=lambda: 0.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff(30, rng=lambda: 0.0) == BACKOFF_CAP_S
    assert backoff(10_000, rng=lambda: 0.0) == BACKOFF_CAP_S
    assert backoff(3, rng=lambda: 0.999) == pytest.approx(4.0 * (1 + 0.999 * JITTER))
    draws = {backoff(5) for _ in range(50)}
    assert len(draws) > 40 and all(16.0 <= d < 16.0 * (1 + JITTER) for d in draws)


def _record(series_uid="1.2.3.4", first_received=1000.0) -> SeriesRecord:
    return SeriesRecord(series_uid=series_uid, study_uid="1.2.3", patient_id="PAT-7", description="CTP",
                        calling_aet="CT1", state="ready", classification="CTP", reason="", first_received=first_received,
                        last_received=first_received + 60, n_instances=200, n_positions=8, n_times=25,
                        generation=1)


def _result(**changes) -> Result:
    result = {"status": "complete", "study_uid": "1.2.3", "series_uid": "1.2.3.4", "core_ml": 0.0, "tmax6_ml": 3.2, "tmax10_ml": 0.0,
              "mismatch_ml": 3.2, "mismatch_ratio": None, "hir": 0.0,
              "eligibility": {"defuse3": False, "dawn": None,
                              "reasons": {"defuse3": "not met: mismatch volume 3 mL < 15 mL",
                                          "dawn": "unknown: age and NIHSS are needed"}},
              "quality": {"level": "limited", "warnings": ["bolus truncated"]},
              "profile": {"core_rcbf_below": 0.3, "hypoperfusion_tmax_above_s": 6.0, "severe_tmax_above_s": 10.0},
              "acquisition": {"frames_left_out": 0}, "software": {"name": "stroke-triage", "version": "0"}}
    return Result.from_document({**result, **changes})


def _config(**changes) -> AlertConfig:
    config = AlertConfig(urls=("http://127.0.0.1:9/a", "https://team.example/b?token=x"), secret=SECRET.encode(),
                         public_url="https://triage.example", patient_details=False, fhir=True, expiry_s=3600.0)
    return replace(config, **changes)


def test_result_messages_carry_the_result_and_a_small_thumbnail(tmp_path):
    Image.new("RGB", (1440, 2288), (200, 30, 200)).save(tmp_path / "summary.png")
    record = _record()
    messages = result_messages(_config(), record, 2, result=_result(), folder=ResultFolder(tmp_path), at=2000.0,
                               patient={"id": "PAT-7", "name": "DOE^JANE"})
    assert [(m.url, m.format) for m in messages] == [("http://127.0.0.1:9/a", "json"), ("http://127.0.0.1:9/a", "fhir"),
                                                     ("https://team.example/b?token=x", "json"),
                                                     ("https://team.example/b?token=x", "fhir")]
    assert len({m.key for m in messages}) == 4 and {m.expires_at for m in messages} == {2000.0 + 3600.0}
    alert = json.loads(messages[0].body)
    assert alert["idempotency_key"] == messages[0].key and alert["kind"] == "result"
    assert alert["volumes"] == {name: _result().document[name] for name in VOLUMES}
    assert alert["study"] == {"id": safe_name("1.2.3.4"), "study_uid": "1.2.3", "series_uid": "1.2.3.4",
                              "series_description": "CTP", "generation": 2, "reanalysis": True}
    assert "re-analysis 2" in alert["message"] and "Research use only" in alert["message"]
    assert alert["links"]["summary_png"] == f"https://triage.example/api/studies/{safe_name('1.2.3.4')}/summary.png"
    assert alert["times"]["result_ready"] == 2000.0 and alert["times"]["last_image_received"] == 1060.0
    thumbnail = Image.open(io.BytesIO(base64.b64decode(alert["thumbnail_png_base64"])))
    assert thumbnail.format == "PNG" and thumbnail.width == THUMBNAIL_WIDTH_PX
    assert thumbnail.height == round(2288 * THUMBNAIL_WIDTH_PX / 1440)
    for message in messages:  # patient details were given but not allowed
        assert b"PAT-7" not in message.body and b"DOE" not in message.body
    # The same series, generation, kind, format and URL: the same key; a series received anew: new keys.
    again = result_messages(_config(), record, 2, result=_result(), folder=ResultFolder(tmp_path), at=3000.0)
    assert [m.key for m in again] == [m.key for m in messages]
    anew = result_messages(_config(), _record(first_received=5000.0), 2, result=_result(), folder=ResultFolder(tmp_path), at=3000.0)
    assert not {m.key for m in anew} & {m.key for m in messages}


def test_patient_details_only_when_allowed_and_fhir_documents_validate(tmp_path):
    patient = {"id": "PAT-7", "name": "DOE^JANE"}
    config = _config(patient_details=True, public_url="")
    messages = result_messages(config, _record(), 1, result=_result(acquisition={"frames_left_out": 3}),
                               folder=ResultFolder(tmp_path), at=2000.0, patient=patient)
    alert = json.loads(messages[0].body)
    assert alert["patient"] == patient and alert["thumbnail_png_base64"] is None  # no summary.png here
    assert alert["links"] == {"study": None, "summary_png": None}
    report = DiagnosticReport.model_validate_json(messages[1].body)
    assert report.status == "preliminary"  # time points left out
    assert report.subject.identifier.value == "PAT-7" and "DOE" not in messages[1].body.decode()
    observations = {o.id: o for o in report.contained}
    assert observations["core"].valueQuantity.value == 0.0 and observations["core"].valueQuantity.code == "mL"
    assert observations["hir"].valueQuantity.code == "1"
    assert observations["mismatch-ratio"].valueQuantity is None  # no core: no ratio
    assert observations["mismatch-ratio"].dataAbsentReason.coding[0].code == "not-applicable"
    assert "Research use only" in report.conclusion

    failed = failure_messages(_config(), _record(), 1, reason="no arterial bolus found", at=2000.0, patient=patient)
    alert = json.loads(failed[0].body)
    assert alert["kind"] == "failure" and alert["error"] == "no arterial bolus found"
    assert "read the images without it" in alert["message"] and "patient" not in alert
    report = DiagnosticReport.model_validate_json(failed[1].body)
    assert report.status == "cancelled" and report.subject is None
    assert "no arterial bolus found" in report.conclusion


# The outbox and its delivery (a real job store and a real HTTP endpoint, no node)

def _outbox_with_one_alert(tmp_path, url: str, expires_in: float) -> tuple[JobStore, Deliverer]:
    store = JobStore(tmp_path / "triage.db")
    store.add_job("1.2.3.4", 1, "analyse")
    job = store.claim_job("analyse")
    (message,) = [m for m in result_messages(_config(urls=(url,), fhir=False), _record(), 1, result=_result(),
                                             folder=ResultFolder(tmp_path), at=time.time()) if m.format == "json"]
    assert store.finish_job(job.id, alerts=[replace(message, expires_at=time.time() + expires_in)])
    assert not store.finish_job(job.id, alerts=[message])  # not running any more: nothing written
    return store, Deliverer(store, SECRET.encode(), stopping=None)


def test_refused_alert_is_retried_logged_then_expires(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="triage.node.alerts")
    with Endpoint(answers=[401, 503]) as endpoint:
        store, deliverer = _outbox_with_one_alert(tmp_path, endpoint.url("/hook?token=secret-token"), 3.0)
        try:
            outbox = OutboxStore(store)
            (row,) = outbox.rows()
            before = time.time()
            deliverer.deliver(row)
            after = time.time()
            (row,) = outbox.rows()
            assert (row.state, row.attempts, row.last_error) == ("pending", 1, "HTTP 401 Unauthorized")
            # 1 s after the answer, plus up to JITTER of it
            assert before + 1.0 <= row.next_attempt_at <= after + 1.0 + JITTER
            deliverer.deliver(row)
            (row,) = outbox.rows()
            assert (row.state, row.attempts, row.last_error) == ("pending", 2, "HTTP 503 Service Unavailable")
            time.sleep(max(0.0, row.expires_at - time.time()) + 0.1)
            deliverer.deliver(row)  # past its expiry: given up without another POST
            (row,) = outbox.rows()
            assert (row.state, row.attempts, len(endpoint.requests)) == ("expired", 2, 2)
            assert outbox.due(time.time() + 10**6) is None
        finally:
            store.close()
    lines = [r for r in caplog.records if r.name == "triage.node.alerts"]
    assert [r.levelname for r in lines] == ["ERROR", "WARNING", "ERROR"]
    assert "refused: HTTP 401" in lines[0].getMessage() and "webhook secret" in lines[0].getMessage()
    assert "expired undelivered after 2 attempt(s)" in lines[2].getMessage()
    assert all("secret-token" not in r.getMessage() and f"127.0.0.1:{endpoint.port}" in r.getMessage() for r in lines)
    first, second = endpoint.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == json.loads(first.body)["idempotency_key"]
    assert first.body == second.body and all(verify_signature(SECRET, r.headers[SIGNATURE_HEADER], r.body)
                                             for r in endpoint.requests)


def test_retention_keeps_a_series_while_its_alert_is_pending_and_forgets_it_after(tmp_path):
    store = JobStore(tmp_path / "triage.db")
    try:
        store.record_instance(InstanceInfo(
            sop_instance_uid="1.2.3.4.1", sop_class_uid=CT_IMAGE_STORAGE, study_uid="1.2.3", series_uid="1.2.3.4",
            path=tmp_path / "1.dcm", calling_aet="CT1", modality="CT", image_type=("ORIGINAL", "PRIMARY")),
            received_at=1000.0)
        store.add_job("1.2.3.4", 1, "analyse")
        job = store.claim_job("analyse")
        record = store.series("1.2.3.4")
        messages = failure_messages(_config(), record, 1, reason="no arterial bolus found", at=time.time())
        assert store.fail_job(job.id, "no arterial bolus found", alerts=messages)
        outbox = OutboxStore(store)
        assert [(r.kind, r.format, r.state) for r in outbox.rows()] == [("failure", "json", "pending"),
                                                                      ("failure", "fhir", "pending")] * 2
        assert store.expired_series(before=time.time()) == []  # the alerts still wait
        for row in outbox.rows()[:-1]:
            outbox.delivered(row.id, time.time())
        assert store.expired_series(before=time.time()) == []
        outbox.expire(outbox.rows()[-1].id, "HTTP 503", attempted=True)
        assert [r.series_uid for r in store.expired_series(before=time.time())] == ["1.2.3.4"]
        store.forget_series("1.2.3.4")
        assert outbox.rows() == []
    finally:
        store.close()


def test_https_endpoint_verified_and_basic_authentication_from_the_url(tmp_path, monkeypatch):
    certs = peers.make_certificates(tmp_path)
    with Endpoint(tls=(certs["server.pem"], certs["server.key"])) as endpoint:
        url = endpoint.url("/hook").replace("https://", "https://team:p%40ss@")
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(ssl.SSLCertVerificationError):  # the test CA is not among the system's
            post(url, b"{}", {"Content-Type": "application/json"})
        monkeypatch.setenv("SSL_CERT_FILE", str(certs["ca.pem"]))
        assert post(url, b"{}", {"Content-Type": "application/json"}) == (200, "OK")
    (request,) = endpoint.requests
    assert request.path == "/hook" and request.headers["Authorization"] == "Basic " + base64.b64encode(
        b"team:p@ss").decode()


# The node end to end

@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A small phantom CTP series (128 x 128 x 8 slices x 25 frames) and a series the analysis
    refuses (64 x 64: no usable arterial bolus): {"ctp", "bad": files, "uid", "bad_uid", "patient"}."""
    root = tmp_path_factory.mktemp("series")
    ctp = write_dicom(make_phantom(replace(CASES["mismatch"], matrix=128, n_slices=N_SLICES, n_frames=N_FRAMES)),
                      root / "ctp")
    bad = write_dicom(make_phantom(replace(CASES["mismatch"], matrix=64, n_slices=4, n_frames=12)), root / "bad")
    header = pydicom.dcmread(ctp[0], stop_before_pixels=True)
    return {"ctp": ctp, "bad": bad, "uid": str(header.SeriesInstanceUID),
            "bad_uid": str(pydicom.dcmread(bad[0], stop_before_pixels=True).SeriesInstanceUID),
            "patient": {"id": str(header.PatientID), "name": str(header.PatientName)}}


def alert_node(tmp_path: Path, urls: list[str], *extra: str) -> NodeProcess:
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_text(SECRET + "\n")
    flags = [flag for url in urls for flag in ("--webhook", url)]
    return NodeProcess(tmp_path / "node", extra=(*flags, "--webhook-secret-file", str(secret_file), *extra))


def send(node: NodeProcess, files: list[Path]) -> None:
    run = peers.storescu(node.port, files, calling="CT1")
    assert run.returncode == 0, run.stderr[-2000:]


def by_kind(requests, kind: str, generation: int, content_type: str = "application/json") -> list:
    """The requests of one kind (result or failure) and generation, JSON or FHIR."""
    found = []
    for request in requests:
        if request.headers["Content-Type"] != content_type:
            continue
        if content_type == "application/json":
            body = json.loads(request.body)
            found += [request] if (body["kind"], body["study"]["generation"]) == (kind, generation) else []
        else:
            report = DiagnosticReport.model_validate_json(request.body)
            found += [request] if (((report.status == "cancelled") == (kind == "failure"))
                                   and report.imagingStudy[0].display.endswith(f"generation {generation}")) else []
    return found


def test_result_failure_and_reanalysis_alerts_reach_every_endpoint_signed(series, tmp_path):
    """The CTP missing an image (reported incomplete) and the refused series, then the missing
    image (generation 1), then a late time point (generation 2): each announced once to each of
    two webhooks, as JSON and FHIR (the incomplete series in JSON only), signed, with the volumes
    of that generation's result.json, the viewer link, a PNG thumbnail, no patient information."""
    uid = series["uid"]
    node, endpoint, requests = _send_incomplete_then_missing_then_late(series, tmp_path)
    assert len(endpoint.requests) == 14 and all(r.status == 200 for r in requests)
    assert len({r.headers["Idempotency-Key"] for r in requests}) == 14
    finished, written, last_received = _outbox_record(node, uid)
    for generation in (1, 2):
        alert = _check_result_alerts(requests, node, uid, generation, finished[generation], written[generation])
    assert alert["times"]["last_image_received"] == last_received
    _check_failure_and_incomplete_alerts(requests, series)
    _check_signed_without_patient_information(requests, series, node.log())


def _send_incomplete_then_missing_then_late(series, tmp_path: Path):
    """Run a node alerting two webhooks (JSON and FHIR) and send it the CTP without one image
    plus the refused series, then the missing image, then the last time point; return the
    stopped node, the endpoint and its 14 requests."""
    first_frames, last_frame = series["ctp"][:-N_SLICES], series["ctp"][-N_SLICES:]
    missing = first_frames[10 * N_SLICES + 3]
    with Endpoint() as endpoint:
        urls = [endpoint.url("/team-a"), endpoint.url("/team-b?token=abc")]
        node = alert_node(tmp_path, urls, "--alert-fhir", "--public-url", "https://viewer.example/triage/",
                          "--incomplete-warn-seconds", "2").start()
        try:
            node.wait_for_log(r"alerts go to 2 webhook\(s\), signed .*with FHIR reports")
            send(node, [p for p in first_frames if p != missing] + series["bad"])
            endpoint.wait_for(6, log=node.log)  # failure x 2 URLs x (JSON, FHIR); incomplete x 2 URLs
            send(node, [missing])
            endpoint.wait_for(10, log=node.log)
            node.wait_for_log(r"generation 1 finished")  # announced before its outputs were all written
            send(node, last_frame)
            requests = endpoint.wait_for(14, log=node.log)
            node.wait_for_log(r"generation 2 finished")
            time.sleep(1.0)  # room for a duplicate to show up
        finally:
            assert node.stop() == 0
    return node, endpoint, requests


def _outbox_record(node: NodeProcess, uid: str):
    """From the node's store, once every alert of the outbox is delivered: when each generation's
    analysis job finished, when its result alerts were written (one transaction: one time per
    generation), and when the series' last image was received."""
    store = node.store()
    try:
        finished = {j.generation: j.updated_at for j in store.jobs(uid, "analyse") if j.state == "done"}
        written = {}  # generation -> when its result alerts were written (one transaction)
        for row in OutboxStore(store).rows():
            if row.kind == "result":
                written.setdefault(row.generation, set()).add(row.created_at)
        last_received = store.series(uid).last_received
        assert [row.state for row in OutboxStore(store).rows()] == ["delivered"] * 14
    finally:
        store.close()
    return finished, written, last_received


def _check_result_alerts(requests, node: NodeProcess, uid: str, generation: int, finished: float,
                         written: set) -> dict:
    """The JSON result alerts of ``generation`` (one per webhook) carry its result.json's numbers,
    the viewer link and a thumbnail, were sent once the result was in place (before the job
    ``finished``, at the time ``written``), and its FHIR report the same volumes; return the
    last JSON alert."""
    result = json.loads((node.result_dir(uid, generation) / "result.json").read_text())
    alerts = by_kind(requests, "result", generation)
    assert sorted(r.path for r in alerts) == ["/team-a", "/team-b?token=abc"]
    for request in alerts:
        alert = json.loads(request.body)
        assert alert["volumes"] == {name: result[name] for name in VOLUMES}
        assert alert["eligibility"] == result["eligibility"]
        assert alert["quality"] == {"level": result["quality"]["level"], "warnings": result["quality"]["warnings"]}
        assert alert["study"]["id"] == safe_name(uid) and alert["study"]["reanalysis"] == (generation == 2)
        assert alert["links"]["study"] == f"https://viewer.example/triage/studies/{safe_name(uid)}"
        # Sent from the announcement (volumes, summary picture), at the latest with the whole result.
        result_json_at = (node.result_dir(uid, generation) / "result.json").stat().st_mtime
        ready = alert["times"]["result_ready"]
        assert ready <= result_json_at + 0.2 and ready <= finished
        (created_at,) = written
        assert ready == pytest.approx(created_at, abs=0.01)
        assert alert["idempotency_key"] == request.headers["Idempotency-Key"]
        thumbnail = Image.open(io.BytesIO(base64.b64decode(alert["thumbnail_png_base64"])))
        thumbnail.load()
        assert thumbnail.format == "PNG" and thumbnail.width <= THUMBNAIL_WIDTH_PX
    assert ("re-analysis 2" in alert["message"]) == (generation == 2)
    (report, _) = [DiagnosticReport.model_validate_json(r.body)
                   for r in by_kind(requests, "result", generation, "application/fhir+json")]
    assert report.status == "final" and report.subject is None
    values = {o.id: o.valueQuantity and float(o.valueQuantity.value) for o in report.contained}
    assert values == {name.removesuffix("_ml").replace("_", "-"): result[name] for name in VOLUMES}
    return alert


def _check_failure_and_incomplete_alerts(requests, series) -> None:
    """The refused series' failure went to both webhooks as JSON and FHIR; the CTP's missing
    image was reported incomplete to both (JSON only) with the count of images expected."""
    failures = by_kind(requests, "failure", 1)
    assert len(failures) == 2 and {json.loads(r.body)["study"]["series_uid"] for r in failures} == {series["bad_uid"]}
    assert len(by_kind(requests, "failure", 1, "application/fhir+json")) == 2
    failure = json.loads(failures[0].body)
    assert "bolus" in failure["error"] and "read the images without it" in failure["message"]
    incomplete = by_kind(requests, "incomplete", 1)
    assert len(incomplete) == 2 and {json.loads(r.body)["study"]["series_uid"] for r in incomplete} == {series["uid"]}
    assert f"(1 images missing of {N_SLICES * (N_FRAMES - 1)})" in json.loads(incomplete[0].body)["missing"]


def _check_signed_without_patient_information(requests, series, log: str) -> None:
    """Every request is signed (tampering and a replay after 300 s fail verification) and
    holds no patient information; the node's ``log`` holds none either, nor the webhook's
    token, and logs the 4 JSON result alerts delivered."""
    for request in requests:
        header = request.headers[SIGNATURE_HEADER]
        assert verify_signature(SECRET, header, request.body)
        assert not verify_signature(SECRET, header, request.body.replace(b"generation", b"Generation", 1))
        t = int(re.search(r"t=(\d+)", header).group(1))
        assert not verify_signature(SECRET, header, request.body, now=t + 301)
        for private in series["patient"].values():
            assert private.encode() not in request.body
    assert not [v for v in series["patient"].values() if v in log] and "token=abc" not in log
    assert len(re.findall(r"result alert \(json\) of series .* delivered", log)) == 4


def test_an_announced_result_is_kept_when_late_images_supersede_it(series, tmp_path):
    """The result alert goes out as soon as the announcement is in place, while the rest of the
    outputs and the DICOM export are still being written; a late time point then starts
    generation 2 but does not stop generation 1: what the stroke team was told of stays on disk.
    Only generation 2 goes to the PACS; each generation is announced once."""
    uid = series["uid"]
    with Endpoint() as endpoint, peers.storescp(tmp_path / "pacs", extra=("+uf",)) as (pacs_port, _):
        node = alert_node(tmp_path, [endpoint.url()], "--pacs", f"PACS@127.0.0.1:{pacs_port}").start()
        try:
            send(node, series["ctp"][:-N_SLICES])
            (started,) = node.wait_for_log(r"analysis of .* generation 1 started .*pid \d+")
            child = int(re.search(r"pid (\d+)", started).group(1))
            announcement = ResultFolder(node.result_dir(uid, 1)).announcement().result_json
            deadline = time.monotonic() + 120
            while not announcement.exists():
                assert time.monotonic() < deadline, node.log()[-3000:]
                time.sleep(0.005)
            os.killpg(child, signal.SIGSTOP)  # writing its outputs and DICOM objects, paused: still running
            try:
                (announced,) = endpoint.wait_for(1, log=node.log)
                assert json.loads(announced.body)["study"]["generation"] == 1
                assert not (node.result_dir(uid, 1) / "dicom" / ".sent").exists()
                send(node, series["ctp"][-N_SLICES:])
                node.wait_for_log(r"generation 1 superseded by generation 2 after its result was announced")
            finally:
                os.killpg(child, signal.SIGCONT)
            node.wait_for_log(r"generation 1 superseded by generation 2: finished, not sent")
            node.wait_for_log(r"sent \d+ objects of series .* generation 2")
            requests = endpoint.wait_for(2, log=node.log)
            time.sleep(1.0)  # room for a duplicate to show up
        finally:
            assert node.stop() == 0
    assert sorted(json.loads(r.body)["study"]["generation"] for r in endpoint.requests) == [1, 2]
    kept = node.result_dir(uid, 1)
    assert json.loads((kept / "result.json").read_text())["core_ml"] == json.loads(requests[0].body)["volumes"]["core_ml"]
    assert sorted(p.name for p in (kept / "dicom").glob("*.dcm"))  # the export ran to its end
    sent = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in (tmp_path / "pacs").iterdir()}
    generation_2 = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                    for p in (node.result_dir(uid, 2) / "dicom").glob("*.dcm")}
    assert sent == generation_2


def test_endpoint_down_node_killed_then_up_the_alert_arrives_once(series, tmp_path):
    """The endpoint is down: the node retries with growing delays; killed -9 with the alert
    pending and restarted with the endpoint up (failing once more), it delivers the alert once,
    under the same idempotency key, with the patient details it was allowed to send."""
    port = peers.free_port()
    node = alert_node(tmp_path, [f"http://127.0.0.1:{port}/alerts"], "--alert-patient-details").start()
    try:
        send(node, series["ctp"])
        retries = node.wait_for_log(r"result alert .* not delivered: .*retry in \d+ s", count=2)
        delays = [int(re.search(r"retry in (\d+) s", line).group(1)) for line in retries]
        assert delays[1] > delays[0]
        node.kill9()
        with Endpoint(port, answers=[503]) as endpoint:
            node.start()
            node.wait_for_log(r"result alert \(json\) of series .* delivered \(attempt [4-9]")
            time.sleep(1.5)  # room for a duplicate to show up
            requests = list(endpoint.requests)
    finally:
        assert node.stop() == 0
    assert [r.status for r in requests] == [503, 200]
    assert len({r.headers["Idempotency-Key"] for r in requests}) == 1
    assert requests[0].body == requests[1].body
    alert = json.loads(requests[1].body)
    result = json.loads((node.result_dir(series["uid"], 1) / "result.json").read_text())
    assert alert["volumes"] == {name: result[name] for name in VOLUMES}
    assert alert["patient"] == series["patient"]
    assert alert["links"] == {"study": None, "summary_png": None}  # neither --http-port nor --public-url
    assert verify_signature(SECRET, requests[1].headers[SIGNATURE_HEADER], requests[1].body)
    assert series["patient"]["name"] not in node.log()


def _alert_config(settings):
    return alert_config(settings.alerts, http_port=settings.node.http_port)


@pytest.mark.parametrize("text", [
    'webhook = ["https://team.example/a", "https://pager.example/b"]\nalert_fhir = true\nhttp_port = 8080\n',
    '[alerts]\nwebhook = ["https://team.example/a", "https://pager.example/b"]\nalert_fhir = true\n'
    '[node]\nhttp_port = 8080\n'], ids=["top level", "sections"])
def test_alert_settings_from_the_config_file_and_environment(tmp_path, text):
    config = tmp_path / "triage.toml"
    config.write_text(text)
    alerts = _alert_config(load_settings(config, environ={"TRIAGE_WEBHOOK_SECRET": SECRET,
                                                          "TRIAGE_ALERT_EXPIRY_HOURS": "0.5"}))
    assert (alerts.urls, alerts.secret, alerts.fhir, alerts.expiry_s, alerts.public_url, alerts.patient_details) == (
        ("https://team.example/a", "https://pager.example/b"), SECRET.encode(), True, 1800.0,
        "http://127.0.0.1:8080", False)
    alerts = _alert_config(load_settings(environ={"TRIAGE_WEBHOOK": "http://127.0.0.1:9/a,http://127.0.0.1:9/b",
                                                  "TRIAGE_WEBHOOK_SECRET": SECRET,
                                                  "TRIAGE_PUBLIC_URL": "https://triage.example/"}))
    assert alerts.urls == ("http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    assert alerts.public_url == "https://triage.example" and _alert_config(load_settings(environ={})) is None


def test_webhook_settings_errors_are_one_line(tmp_path):
    def serve(*flags):
        command = [sys.executable, "-m", "triage.cli", "serve", "--data-dir", str(tmp_path / "data"),
                   "--allow-aet", "CT1", *flags]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        return result.returncode, result.stderr.strip().splitlines()

    short = tmp_path / "short.secret"
    short.write_text("tiny\n")
    assert serve("--webhook", "http://127.0.0.1:9/a") == (2, [
        "error: --webhook needs a secret to sign the alerts: --webhook-secret-file FILE (or webhook_secret in "
        "the config file, or TRIAGE_WEBHOOK_SECRET)"])
    assert serve("--webhook", "http://127.0.0.1:9/a", "--webhook-secret-file", str(short)) == (
        2, ["error: the webhook secret is too short: at least 16 characters"])
    assert serve("--webhook", "ftp://host/x?token=abc", "--webhook-secret-file", str(short)) == (
        2, ["error: --webhook ftp://host: expected an http:// or https:// URL"])
    good = tmp_path / "good.secret"
    good.write_text(SECRET)
    assert serve("--webhook", "http://127.0.0.1:9/a", "--webhook-secret-file", str(good), "--public-url", "viewer:8080") == (
        2, ["error: --public-url viewer:8080: expected an http:// or https:// URL"])
    missing = tmp_path / "missing.secret"
    assert serve("--webhook", "http://127.0.0.1:9/a", "--webhook-secret-file", str(missing)) == (
        2, [f"error: --webhook-secret-file {missing}: cannot read it (No such file or directory)"])
    help_text = subprocess.run([sys.executable, "-m", "triage.cli", "serve", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=60).stdout
    for flag in ("--webhook URL", "--webhook-secret-file", "--alert-patient-details", "--alert-fhir",
                 "--alert-expiry-hours", "--public-url"):
        assert flag in help_text


def test_an_endpoint_that_does_not_answer_delays_no_other(tmp_path):
    """Each webhook has its own delivery thread: while one endpoint holds its connection open
    without answering (up to the 10 s timeout), the other gets its alert at once; at the next
    start, messages to a webhook no longer configured are given up."""
    with socket.socket() as silent, Endpoint() as endpoint:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts (the kernel does) and never answers
        dead_url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        urls = (dead_url, endpoint.url("/hook"))
        store = JobStore(tmp_path / "triage.db")
        stopping = threading.Event()
        try:
            messages = result_messages(_config(urls=urls, fhir=False), _record(), 1, result=_result(),
                                       folder=ResultFolder(tmp_path), at=time.time())
            store.add_alerts(sorted(messages, key=lambda m: m.url != dead_url))  # the silent one first
            threads = [threading.Thread(target=Deliverer(store, SECRET.encode(), stopping, url).run, daemon=True)
                       for url in urls]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            (request,) = endpoint.wait_for(1, timeout=5)
            assert time.monotonic() - started < 5.0  # the silent one holds its thread for 10 s
            assert verify_signature(SECRET, request.headers[SIGNATURE_HEADER], request.body)
            outbox = OutboxStore(store)
            assert {r.url: r.state for r in outbox.rows()} == {dead_url: "pending", urls[1]: "delivered"}
            stopping.set()
            for thread in threads:
                thread.join(15)
            assert outbox.expire_pending("its webhook is no longer configured", keep_urls=(urls[1],)) == 1
            assert {r.url: r.state for r in outbox.rows()} == {dead_url: "expired", urls[1]: "delivered"}
        finally:
            stopping.set()
            store.close()
