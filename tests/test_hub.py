"""A hub: one listener, two workers, a Redis queue and a PostgreSQL job store, all real processes.

Three phantom studies are sent at once by three DCMTK ``storescu`` to one ``triage serve --queue
--database``; two ``triage worker`` processes share the analyses, the DICOM export, the sending to a
real Orthanc and the alerts to a real HTTP endpoint; one worker is killed -9 while it analyses a
study. Every study must still get exactly one SR (and one SEG) in Orthanc and exactly one result
alert, whose volumes are its result.json's and near the phantom's truth; the killed worker's job is
run again by the other worker under a new claim.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import replace

import pydicom
import pytest

from sample_data.phantom import CASES, make_phantom, write_dicom
from tests.support import peers
from tests.support.endpoint import Endpoint
from tests.support.node import NodeProcess
from tests.support.orthanc import orthanc
from tests.support.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)
from tests.support.redis import RedisServer
from tests.support.worker import WorkerProcess
from triage.store.jobs import JobStore
from triage.store.studies import StudyQueries

N_SLICES, N_FRAMES = 8, 30
STUDY_CASES = ("mismatch", "large_core", "no_lesion")
SENDERS = ("CT1", "CT2", "CT3")
SECRET = "hub-test-secret-0123456789"


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Three phantom CTP series (256², 8 slices × 30 time points): folder, truth, series UID."""
    made = []
    for k, case in enumerate(STUDY_CASES):
        root = tmp_path_factory.mktemp(case)
        phantom = make_phantom(replace(CASES[case], matrix=256, n_slices=N_SLICES, n_frames=N_FRAMES, seed=100 + k))
        files = write_dicom(phantom, root)
        uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
        made.append({"dir": root, "truth": phantom.truth.volumes, "series_uid": uid, "case": case})
    assert len({s["series_uid"] for s in made}) == 3
    return made


def _config(path, *, data_dir, queue, database, pacs, webhook, secret_file):
    path.write_text("\n".join([
        f'data_dir = "{data_dir}"', f'queue = "{queue}"', f'database = "{database}"', f'pacs = "{pacs}"',
        f'webhook = ["{webhook}"]', f'webhook_secret_file = "{secret_file}"', "max_jobs = 1", ""]))
    return path


def _send_all(port, studies):
    """The three studies sent at once, one storescu each; their completed processes."""
    done = [None] * len(studies)

    def send(k):
        done[k] = peers.storescu(port, studies[k]["dir"], calling=SENDERS[k])

    threads = [threading.Thread(target=send, args=(k,)) for k in range(len(studies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return done


def _result_alerts(endpoint):
    bodies = [json.loads(r.body) for r in endpoint.requests if r.status == 200]
    return [b for b in bodies if b["kind"] == "result"]


def _analyses_when_settled(store, series_uid, timeout=120.0):
    """The series' analysis jobs once none is pending or running (the result alert goes out
    before the child has written its maps and DICOM objects), and 2 s more for a duplicate."""
    deadline = time.monotonic() + timeout
    while any(j.state in ("pending", "running") for j in store.jobs(series_uid, kind="analyse")):
        assert time.monotonic() < deadline, [(j.generation, j.state) for j in store.jobs(series_uid, kind="analyse")]
        time.sleep(0.2)
    time.sleep(2.0)  # room for a second analysis or alert
    return store.jobs(series_uid, kind="analyse")


def _sr_series(pacs):
    """(StudyInstanceUID, SeriesInstanceUID) of every SR series in Orthanc, with its instance count."""
    found = Counter()
    for study_id in pacs.get("/studies"):
        study_uid = pacs.get(f"/studies/{study_id}")["MainDicomTags"]["StudyInstanceUID"]
        for series in pacs.series(study_id):
            if series["MainDicomTags"].get("Modality") == "SR":
                found[study_uid, series["MainDicomTags"]["SeriesInstanceUID"]] += len(series["Instances"])
    return found


def test_three_studies_two_workers_one_killed_each_gets_one_sr_and_one_alert(studies, tmp_path, postgres_url):
    data = tmp_path / "data"
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    database = postgres_url
    with RedisServer(tmp_path / "redis") as redis, Endpoint() as endpoint, orthanc(tmp_path / "orthanc") as pacs:
        config = _config(tmp_path / "hub.toml", data_dir=data, queue=redis.url, database=database,
                         pacs=f"{pacs.aet}@127.0.0.1:{pacs.dicom_port}", webhook=endpoint.url(), secret_file=secret_file)
        node = NodeProcess(data, allow=SENDERS, quiet_seconds=1.0, extra=("--config", str(config)))
        metrics_port = peers.free_port()
        first = WorkerProcess("worker-a", data, queue=redis.url, database=database, extra=("--config", str(config)))
        second = WorkerProcess("worker-b", data, queue=redis.url, database=database,
                               extra=("--config", str(config), "--metrics-port", str(metrics_port)))
        node.start()
        workers = [first.start(), second.start()]
        try:
            sent = _send_all(node.port, studies)
            assert all(p.returncode == 0 for p in sent), [p.stderr[-500:] for p in sent]
            # Kill the first worker while it runs an analysis (both take one: one task at a time each).
            (line,) = first.wait_for_log(r"analysis of \S+ generation 1 started", timeout=120)
            killed_uid = re.search(r"analysis of (\S+) generation", line).group(1)
            first.kill9()
            log = lambda: node.log()[-2000:] + "\n" + second.log()[-3000:]  # noqa: E731
            endpoint.wait_for(3, timeout=240, log=log)
            deadline = time.monotonic() + 120
            while sum(1 for _ in _sr_series(pacs)) < 3 and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(3.0)  # room for a duplicate analysis, send or alert to arrive
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        finally:
            statuses = [worker.stop() for worker in workers]
            node.stop()
        assert statuses[1] == 0, second.log()[-3000:]  # SIGTERM: a graceful stop

        # Exactly one result alert per study, with its result.json's volumes, near the truth.
        alerts = _result_alerts(endpoint)
        assert sorted(a["study"]["series_uid"] for a in alerts) == sorted(s["series_uid"] for s in studies), alerts
        assert len(endpoint.requests) == 3, [r.status for r in endpoint.requests]
        for study in studies:
            (alert,) = [a for a in alerts if a["study"]["series_uid"] == study["series_uid"]]
            result = json.loads((node.result_dir(study["series_uid"], 1) / "result.json").read_text())
            truth = study["truth"]
            assert alert["volumes"]["core_ml"] == pytest.approx(result["core_ml"])
            assert alert["volumes"]["tmax6_ml"] == pytest.approx(result["tmax6_ml"])
            # The acceptance tolerances of tests/test_accuracy.py.
            assert abs(result["core_ml"] - truth["core_ml"]) <= max(5.0, 0.15 * truth["core_ml"]), (study["case"], result, truth)
            assert abs(result["tmax6_ml"] - truth["tmax6_ml"]) <= max(10.0, 0.1 * truth["tmax6_ml"]), (study["case"], result, truth)

        # Exactly one SR series, of one instance, per study in the PACS.
        srs = _sr_series(pacs)
        assert len(srs) == 3 and set(srs.values()) == {1}, srs
        stored, already = pacs.stores()
        assert already == 0, "an object reached the PACS twice"

        # The killed worker's analysis ran again under a new claim, by the other worker; one analysis
        # and one send job done per study, none left running.
        store = JobStore(database)
        try:
            jobs = store.jobs()
            listed = StudyQueries(store).series_rows()  # what the hub's web API lists
        finally:
            store.close()
        assert Counter((j.kind, j.state) for j in jobs) == {("analyse", "done"): 3, ("send", "done"): 3}, jobs
        assert sorted((r["series_uid"], r["job_state"], r["result_generation"]) for r in listed) == sorted(
            (s["series_uid"], "done", 1) for s in studies)
        (retried,) = [j for j in jobs if j.kind == "analyse" and j.series_uid == killed_uid]
        assert retried.attempts == 2
        assert re.search(rf"analysis of {re.escape(killed_uid)} generation 1 started .*attempt 2", second.log())
        done_here = re.search(r'triage_worker_tasks_total\{kind="analyse",outcome="done"\} (\d+)', metrics)
        assert done_here and int(done_here.group(1)) >= 2, metrics
        assert re.search(r"^triage_queue_depth 0$", metrics, re.M), metrics


@pytest.mark.parametrize("argv, message", [
    (["serve", "--accept-any-aet", "--queue", "redis://127.0.0.1:6379/0"],
     "--queue needs --database: the listener and the workers share a PostgreSQL job store"),
    (["serve", "--accept-any-aet", "--queue", "amqp://127.0.0.1/", "--database", "postgresql://u@127.0.0.1/x"],
     "--queue: expected a redis:// URL"),
    (["serve", "--accept-any-aet", "--database", "mysql://127.0.0.1/x"], "--database: expected a postgresql:// URL"),
    (["worker", "--database", "postgresql://u@127.0.0.1/x"], "a worker needs the hub's queue and job store"),
    (["worker", "--queue", "redis://127.0.0.1:6379/0", "--database", "postgresql://u:secret@127.0.0.1:1/hub"],
     "cannot open the PostgreSQL database 127.0.0.1:1/hub"),
])
def test_hub_settings_are_checked_with_one_line_errors(tmp_path, argv, message):
    import subprocess
    import sys

    # In a process of its own: `triage serve` configures the logging of the process it runs in.
    run = subprocess.run([sys.executable, "-m", "triage.cli", *argv, "--data-dir", str(tmp_path / "data")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    err = run.stderr
    (last,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert message in last and "Traceback" not in err, err
    assert "secret" not in err  # a password in the URL is never shown


def test_queue_and_database_come_from_file_environment_and_flags(tmp_path):
    from triage.settings import load_settings

    config = tmp_path / "hub.toml"
    config.write_text('[node]\nqueue = "redis://file:6379/0"\ndatabase = "postgresql://file/db"\n')
    s = load_settings(config, environ={}).node
    assert (s.queue, s.database) == ("redis://file:6379/0", "postgresql://file/db")
    s = load_settings(config, environ={"TRIAGE_QUEUE": "redis://env:6379/1", "TRIAGE_DATABASE": "postgresql://env/db"}).node
    assert (s.queue, s.database) == ("redis://env:6379/1", "postgresql://env/db")
    s = load_settings(config, environ={"TRIAGE_QUEUE": "redis://env:6379/1"}, queue="redis://flag:6379/2").node
    assert (s.queue, s.database) == ("redis://flag:6379/2", "postgresql://file/db")


def test_dispatcher_publishes_each_due_job_once_and_requeues_a_dead_workers_job(tmp_path, postgres_url):
    """Real Redis and PostgreSQL: a due job is published once per state; a claim whose lease ran
    out is put back (attempt counted) and published again; the dead claim can no longer end it."""
    import threading as th

    from triage.hub.dispatcher import Dispatcher
    from triage.hub.queue import make_app, queue_depth
    from triage.node.context import NodeContext
    from triage.report.folder import ResultsRoot
    from triage.settings import NodeSettings

    store = JobStore(postgres_url)
    with RedisServer(tmp_path / "redis") as redis:
        app = make_app(redis.url)
        context = NodeContext(NodeSettings(), store, ResultsRoot(tmp_path / "results"), None, th.Event(), th.Condition())
        dispatcher = Dispatcher(context, app)
        store.add_job("1.2.3.4", 1, "analyse")
        store.add_job("1.2.3.5", 1, "analyse")
        now = time.time()
        assert dispatcher.dispatch(now) == 2 and queue_depth(app) == 2
        assert dispatcher.dispatch(now + 1) == 0 and queue_depth(app) == 2  # same state: not again
        first = store.jobs(series_uid="1.2.3.4")[0]
        claimed = store.claim_job_id(first.id, lease_s=0.3)
        assert claimed is not None and store.claim_job_id(first.id, lease_s=0.3) is None  # a live claim
        assert dispatcher.dispatch(time.time()) == 0
        time.sleep(0.5)  # the worker died: its lease runs out
        assert dispatcher.dispatch(time.time()) == 1 and queue_depth(app) == 3
        back = store.job(first.id)
        assert (back.state, back.attempts) == ("pending", 1)
        assert not store.finish_job(first.id, claim=claimed.claim)
        retaken = store.claim_job_id(first.id, lease_s=30)
        assert retaken.attempts == 2 and retaken.claim != claimed.claim
        assert store.finish_job(first.id, claim=retaken.claim)
    store.close()


def test_a_job_whose_workers_keep_dying_is_given_up_with_a_failure_alert(tmp_path, postgres_url):
    """Three claims that ran out (workers killed each time): the fourth claim fails the analysis
    for good, with its failure alert in the outbox, instead of killing workers for ever."""
    from pathlib import Path

    from dicom_node.instance import CT_IMAGE_STORAGE, InstanceInfo
    from triage.hub.worker import Worker
    from triage.settings import Settings
    from triage.store.outbox import OutboxStore

    settings = Settings().replace(queue="redis://127.0.0.1:1/0", database=postgres_url, data_dir=tmp_path / "data",
                                  webhook=("http://127.0.0.1:9/alerts",), webhook_secret="s" * 20)
    worker = Worker(settings)
    store = worker.store
    try:
        store.record_instance(InstanceInfo(
            sop_instance_uid="1.2.3.1", sop_class_uid=CT_IMAGE_STORAGE, study_uid="1.2.3", series_uid="1.2.3.4",
            path=Path(tmp_path / "a.dcm"), calling_aet="CT1", modality="CT", image_type=("ORIGINAL",),
            position=(0.0, 0.0, 0.0), orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), time_s=0.0, number_of_frames=1))
        store.add_job("1.2.3.4", 1, "analyse")
        (job,) = store.jobs()
        for _ in range(3):
            assert store.claim_job_id(job.id, lease_s=0.05) is not None
            time.sleep(0.1)  # its worker died: the lease runs out
            assert [j.id for j in store.expired_leases()] == [job.id]
        assert worker.run_job(job.id, "analyse") == "failed"
        failed = store.job(job.id)
        assert failed.attempts == 4 and "stopped 3 times" in failed.error
        assert [row.kind for row in OutboxStore(store).rows()] == ["failure"]
    finally:
        store.close()


def test_a_hub_listener_killed_mid_transfer_keeps_every_acknowledged_image(studies, tmp_path, postgres_url):
    """The listener is killed -9 while a study arrives; after its restart every instance it had
    recorded (acknowledged) is still in the job store and the spool, the sender's resend completes
    the series, and the worker analyses it once: one result alert."""
    study = studies[0]
    data = tmp_path / "data"
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    with RedisServer(tmp_path / "redis") as redis, Endpoint() as endpoint:
        config = tmp_path / "hub.toml"
        config.write_text("\n".join([f'data_dir = "{data}"', f'queue = "{redis.url}"', f'database = "{postgres_url}"',
                                     f'webhook = ["{endpoint.url()}"]', f'webhook_secret_file = "{secret_file}"', ""]))
        node = NodeProcess(data, allow=SENDERS, quiet_seconds=1.0, extra=("--config", str(config)))
        worker = WorkerProcess("worker", data, queue=redis.url, database=postgres_url, extra=("--config", str(config)))
        node.start()
        worker.start()
        store = JobStore(postgres_url)
        try:
            sending = threading.Thread(target=peers.storescu, args=(node.port, study["dir"]), kwargs={"calling": "CT1"})
            sending.start()
            deadline = time.monotonic() + 60
            while len(store.instances(study["series_uid"])) < 80 and time.monotonic() < deadline:
                time.sleep(0.02)
            node.kill9()
            sending.join(60)
            acknowledged = {i.sop_instance_uid: i.path for i in store.instances(study["series_uid"])}
            assert 80 <= len(acknowledged) < N_SLICES * N_FRAMES
            node.start()
            node.wait_for_log(r"stroke-triage node")
            assert all(path.is_file() for path in acknowledged.values())
            assert set(acknowledged) <= {i.sop_instance_uid for i in store.instances(study["series_uid"])}
            resent = peers.storescu(node.port, study["dir"], calling="CT1")
            assert resent.returncode == 0, resent.stderr[-500:]
            endpoint.wait_for(1, timeout=120, log=lambda: node.log()[-2000:] + worker.log()[-2000:])
            jobs = _analyses_when_settled(store, study["series_uid"])
        finally:
            store.close()
            worker.stop()
            node.stop()
        assert [(j.generation, j.state) for j in jobs] == [(1, "done")]
        assert [json.loads(r.body)["kind"] for r in endpoint.requests] == ["result"]
        result = json.loads((node.result_dir(study["series_uid"], 1) / "result.json").read_text())
        assert abs(result["core_ml"] - study["truth"]["core_ml"]) <= max(5.0, 0.15 * study["truth"]["core_ml"])


def test_a_worker_stopped_mid_analysis_puts_its_job_back_for_the_next(studies, tmp_path, postgres_url):
    """SIGTERM to a worker while it analyses: it stops its analysis and exits 0 at once, the job
    goes back to the queue with the attempt not counted, and the next worker analyses it: one
    result alert."""
    study = studies[1]
    data = tmp_path / "data"
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    with RedisServer(tmp_path / "redis") as redis, Endpoint() as endpoint:
        config = tmp_path / "hub.toml"
        config.write_text("\n".join([f'data_dir = "{data}"', f'queue = "{redis.url}"', f'database = "{postgres_url}"',
                                     f'webhook = ["{endpoint.url()}"]', f'webhook_secret_file = "{secret_file}"', ""]))
        node = NodeProcess(data, allow=SENDERS, quiet_seconds=1.0, extra=("--config", str(config)))
        first = WorkerProcess("first", data, queue=redis.url, database=postgres_url, extra=("--config", str(config)))
        second = WorkerProcess("second", data, queue=redis.url, database=postgres_url, extra=("--config", str(config)))
        node.start()
        first.start()
        store = JobStore(postgres_url)
        try:
            assert peers.storescu(node.port, study["dir"], calling="CT2").returncode == 0
            first.wait_for_log(r"analysis of \S+ generation 1 started", timeout=60)
            stopping = time.monotonic()
            assert first.stop() == 0
            stop_s = time.monotonic() - stopping
            (job,) = store.jobs(study["series_uid"], kind="analyse")
            assert (job.state, job.attempts, job.claim) == ("pending", 0, None)
            assert endpoint.requests == []
            second.start()
            endpoint.wait_for(1, timeout=120, log=lambda: node.log()[-2000:] + second.log()[-2000:])
            (job,) = _analyses_when_settled(store, study["series_uid"])
        finally:
            store.close()
            second.stop()
            first.stop()
            node.stop()
        assert stop_s < 15, stop_s
        assert (job.state, job.attempts) == ("done", 1)
        assert [json.loads(r.body)["kind"] for r in endpoint.requests] == ["result"]


def test_a_hubs_listener_serves_the_api_and_a_rerun_asked_there_runs_on_a_worker(studies, tmp_path, postgres_url):
    """`triage user add --config` writes the account into the hub's PostgreSQL; the listener's web
    API lists the study the worker analysed; a re-run requested there is generation 2, analysed by
    the worker, and the metrics count both analyses."""
    import subprocess
    import sys

    import httpx

    from tests.support.webdata import ADMIN

    study = studies[2]
    data = tmp_path / "data"
    http_port = peers.free_port()
    with RedisServer(tmp_path / "redis") as redis:
        config = tmp_path / "hub.toml"
        config.write_text("\n".join([f'data_dir = "{data}"', f'queue = "{redis.url}"', f'database = "{postgres_url}"',
                                     f"http_port = {http_port}", ""]))
        added = subprocess.run([sys.executable, "-m", "triage.cli", "user", "add", ADMIN[0], "--role", "admin",
                                "--config", str(config)], input=ADMIN[1] + "\n", capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        assert not data.exists()  # the account is in PostgreSQL, not in a SQLite file
        node = NodeProcess(data, allow=SENDERS, quiet_seconds=1.0, extra=("--config", str(config)))
        worker = WorkerProcess("worker", data, queue=redis.url, database=postgres_url, extra=("--config", str(config)))
        worker.start()  # before the listener made the data directory: said, then it waits for jobs
        try:
            worker.wait_for_log(r"has no spool/ folder: is it the listener's data directory")
            node.start()
            peers.wait_for_port(http_port, process=node.process)
            assert peers.storescu(node.port, study["dir"], calling="CT3").returncode == 0
            worker.wait_for_log(r"analysis of \S+ generation 1 finished", timeout=120)
            client = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30)
            assert client.post("/api/login", json={"username": ADMIN[0], "password": ADMIN[1]}).status_code == 200
            (listed,) = client.get("/api/studies").json()["studies"]
            assert (listed["status"], listed["generation"]) == ("done", 1)
            response = client.post(f"/api/studies/{listed['id']}/reprocess", json={"profile": "rcbf38"},
                                   headers={"X-CSRF-Token": client.cookies["triage_csrf"]})
            assert response.status_code == 202 and response.json() == {"generation": 2}
            worker.wait_for_log(r"analysis of \S+ generation 2 finished", timeout=120)
            detail = client.get(f"/api/studies/{listed['id']}").json()
            metrics = client.get("/metrics").text
        finally:
            worker.stop()
            if node.process is not None:
                node.stop()
        assert (detail["status"], detail["generation"]) == ("done", 2)
        assert detail["result"]["profile"]["name"] == "rcbf38"
        assert re.search(r'^triage_jobs\{kind="analyse",state="done"\} 2$', metrics, re.M), metrics
