"""The job store: idempotent instance records, series generations, job states, recovery.

The tests of the store's semantics run twice (``store_target``): on a SQLite file and on a
PostgreSQL database; those of SQLite's file (WAL mode, an older file's migration) on SQLite only.
"""

import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dicom_node.instance import CT_IMAGE_STORAGE, InstanceInfo
from tests.support.dicom_factory import ct_instance
from tests.support.postgres import postgres_server, postgres_url, store_target  # noqa: F401 (fixtures)
from triage.store.database import open_database
from triage.store.jobs import JobStore


def info(sop="1.2.3.1", series="1.2.3.4", *, path=None, time_s=36000.0, z=0.0):
    return InstanceInfo(sop_instance_uid=sop, sop_class_uid=CT_IMAGE_STORAGE, study_uid="1.2.3",
                        series_uid=series, path=Path(path or f"/spool/{sop}.dcm"), calling_aet="CT1",
                        modality="CT", image_type=("ORIGINAL", "PRIMARY"), position=(0.0, 0.0, z),
                        orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), time_s=time_s, number_of_frames=1)


@pytest.fixture
def store(store_target):
    store = JobStore(store_target)
    yield store
    store.close()


def test_round_trip(store):
    record = info(z=5.0)
    store.record_instance(record)
    assert store.instances(record.series_uid) == [record]
    changed = replace(record, path=Path("/spool/moved.dcm"), time_s=36001.5, acquisition_number=3)
    store.record_instance(changed)  # the same SOP Instance UID: its row updated
    assert store.instances(record.series_uid) == [changed]


def test_a_sqlite_database_runs_in_wal_mode(tmp_path):
    store = JobStore(tmp_path / "triage.db")
    assert (store.path, store.is_postgres) == (tmp_path / "triage.db", False)
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()


def test_recording_an_instance_twice_is_harmless(store):
    first = store.record_instance(info(), received_at=100.0)
    again = store.record_instance(info(), received_at=200.0)
    assert (first.new, first.previous_state) == (True, None)
    assert (again.new, again.previous_state) == (False, "receiving")
    series = store.series("1.2.3.4")
    assert (series.n_instances, series.last_received, series.calling_aet) == (1, 100.0, "CT1")
    assert len(store.instances("1.2.3.4")) == 1


def test_concurrent_records_from_many_threads(store):
    def receive(k):
        for n in range(50):
            store.record_instance(info(f"1.2.{k}.{n}"))

    threads = [threading.Thread(target=receive, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.series("1.2.3.4").n_instances == 200
    assert len(store.instances("1.2.3.4")) == 200


def test_generations_and_late_instances(store):
    store.record_instance(info("1.1"), received_at=100.0)
    assert store.start_generation("1.2.3.4", reason="r", n_positions=1, n_times=1, unchanged_since=99.0) is None
    first = store.start_generation("1.2.3.4", reason="r", n_positions=1, n_times=1, unchanged_since=100.0)
    assert (first.number, first.superseded) == (1, [])
    assert store.series("1.2.3.4").state == "ready"
    late = store.record_instance(info("1.2"), received_at=150.0)
    assert (late.new, late.previous_state, late.generation) == (True, "ready", 1)
    assert store.series("1.2.3.4").state == "receiving"
    second = store.start_generation("1.2.3.4", reason="r", n_positions=1, n_times=2, unchanged_since=150.0)
    assert second.number == 2 and [(j.generation, j.state) for j in second.superseded] == [(1, "pending")]
    jobs = store.jobs("1.2.3.4", "analyse")
    assert [(j.generation, j.state) for j in jobs] == [(1, "superseded"), (2, "pending")]
    assert jobs[0].error == "superseded by generation 2"


def test_a_newer_generation_supersedes_pending_sends_and_running_analyses(store):
    """Generation 2 supersedes generation 1's pending send; generation 3 the running analysis of
    generation 2, which then can neither finish nor queue its send."""
    store.record_instance(info("1.1"), received_at=100.0)
    store.start_generation("1.2.3.4", reason="r", n_positions=1, n_times=1, unchanged_since=100.0)
    assert store.finish_job(store.claim_job("analyse").id, then=("1.2.3.4", 1, "send"))
    store.record_instance(info("1.2"), received_at=150.0)
    store.start_generation("1.2.3.4", reason="r", n_positions=1, n_times=2, unchanged_since=150.0)
    assert store.claim_job("send") is None
    running = store.claim_job("analyse")
    store.record_instance(info("1.3"), received_at=200.0)
    third = store.start_generation("1.2.3.4", reason="r", n_positions=1, n_times=3, unchanged_since=200.0)
    assert [(j.id, j.state) for j in third.superseded] == [(running.id, "running")]
    assert not store.finish_job(running.id, then=("1.2.3.4", 2, "send"))
    assert not store.retry_job(running.id, "x", 0.0) and not store.fail_job(running.id, "x")
    assert [(j.generation, j.kind, j.state, j.error) for j in store.jobs("1.2.3.4")] == [
        (1, "analyse", "done", None), (1, "send", "superseded", "superseded by generation 2"),
        (2, "analyse", "superseded", "superseded by generation 3"), (3, "analyse", "pending", None)]


def test_a_requested_re_run_is_a_generation_with_its_options(store):
    """Only an analysed perfusion series (state ready) can be re-run; the re-run supersedes the
    running analysis and pending send of the older generation and carries its options."""
    store.record_instance(info("1.1"), received_at=100.0)
    assert store.reprocess("1.2.3.4", {}) is None  # still receiving
    store.start_generation("1.2.3.4", reason="r", n_positions=1, n_times=1, unchanged_since=100.0)
    assert store.finish_job(store.claim_job("analyse").id, then=("1.2.3.4", 1, "send"))
    rerun = store.reprocess("1.2.3.4", {"aif": [3, 4, 0], "profile": "rcbf38"})
    assert rerun.number == 2 and [(j.kind, j.state) for j in rerun.superseded] == [("send", "pending")]
    running = store.claim_job("analyse")
    assert running.analysis_options() == {"aif": [3, 4, 0], "profile": "rcbf38"}
    again = store.reprocess("1.2.3.4", {})
    assert again.number == 3 and [(j.id, j.state) for j in again.superseded] == [(running.id, "running")]
    assert [(j.generation, j.state, j.options) for j in store.jobs("1.2.3.4", "analyse")] == [
        (1, "done", None), (2, "superseded", '{"aif": [3, 4, 0], "profile": "rcbf38"}'), (3, "pending", "{}")]
    assert store.reprocess("9.9.9", {}) is None


def test_a_database_of_an_earlier_version_gains_the_new_columns(store_target, tmp_path):
    """The jobs table as it was before options, claims and leases: opening the store adds them."""
    earlier = open_database(store_target)
    earlier.create("CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, series_uid TEXT NOT NULL, "
                   "generation INTEGER NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER "
                   "NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, error TEXT, created_at REAL NOT NULL, "
                   "updated_at REAL NOT NULL, UNIQUE (series_uid, generation, kind))")
    with earlier.transaction() as db:
        db.execute("INSERT INTO jobs (series_uid, generation, kind, state, attempts, next_attempt_at, created_at, "
                   "updated_at) VALUES ('1.2', 1, 'analyse', 'running', 1, 0, 0, 0)")
    earlier.close()
    store = JobStore(store_target)
    (job,) = store.jobs("1.2")
    assert (job.state, job.options, job.analysis_options(), job.claim, job.lease_until) == (
        "running", None, {}, None, None)
    assert store.recover(tmp_path / "spool").jobs_reset == 1
    store.close()
    JobStore(store_target).close()  # opening it again changes nothing


def test_decision_is_not_recorded_when_an_instance_arrived_meanwhile(store):
    store.record_instance(info("1.1"), received_at=100.0)
    store.record_instance(info("1.2"), received_at=105.0)
    assert not store.set_series_state("1.2.3.4", "ignored", classification="other", reason="x",
                                      unchanged_since=100.0)
    assert store.set_series_state("1.2.3.4", "ignored", classification="other", reason="x",
                                  unchanged_since=105.0)
    assert [s.series_uid for s in store.series_in_state("ignored")] == ["1.2.3.4"]
    assert store.series_in_state("receiving") == []


def test_expired_series_are_those_quiet_and_without_work_left(store):
    """Retention's view: quiet before the cut-off and no pending or running job. A series whose
    send is pending (PACS down) stays; forgetting one removes its rows and nothing else."""
    store.record_instance(info("1.1", series="9.1"), received_at=100.0)   # analysed and sent
    store.start_generation("9.1", reason="r", n_positions=1, n_times=1, unchanged_since=100.0)
    assert store.finish_job(store.claim_job("analyse").id, then=("9.1", 1, "send"))
    store.record_instance(info("2.1", series="9.2"), received_at=100.0)   # ignored (NCCT)
    store.set_series_state("9.2", "ignored", classification="other", reason="x")
    store.record_instance(info("3.1", series="9.3"), received_at=500.0)   # recent
    assert [r.series_uid for r in store.expired_series(200.0)] == ["9.2"]  # 9.1's send is pending
    assert store.finish_job(store.claim_job("send").id)
    assert [r.series_uid for r in store.expired_series(200.0)] == ["9.1", "9.2"]
    assert [r.series_uid for r in store.expired_series(200.0, "9.1")] == ["9.1"]
    assert store.expired_series(200.0, "9.3") == []
    assert store.forget_series("9.1") == 1
    assert store.series("9.1") is None and store.instances("9.1") == [] and store.jobs("9.1") == []
    assert [r.series_uid for r in store.expired_series(1000.0)] == ["9.2", "9.3"]


def test_a_failed_re_analysis_falls_back_to_the_unsent_earlier_result(store):
    """Generation 1 is analysed, its send dropped when generation 2 starts; generation 2 fails:
    no newer result is possible, and generation 1's send is queued again (once)."""
    store.record_instance(info("1.1"), received_at=100.0)
    store.start_generation("1.2.3.4", reason="r", n_positions=1, n_times=1, unchanged_since=100.0)
    assert store.resend_generation("1.2.3.4", 1) is None  # nothing analysed before generation 1
    assert store.finish_job(store.claim_job("analyse").id, then=("1.2.3.4", 1, "send"))
    store.record_instance(info("1.2"), received_at=150.0)
    store.start_generation("1.2.3.4", reason="r", n_positions=1, n_times=2, unchanged_since=150.0)
    assert store.newer_result_possible("1.2.3.4", 1)      # generation 2 pending
    store.fail_job(store.claim_job("analyse").id, "mixed geometry")
    assert not store.newer_result_possible("1.2.3.4", 1)
    assert store.resend_generation("1.2.3.4", 2) == (1, False)
    send = store.claim_job("send")
    assert (send.generation, send.attempts) == (1, 1)
    assert store.resend_generation("1.2.3.4", 2) == (1, False)  # under way: not queued twice
    assert store.finish_job(send.id)
    assert store.resend_generation("1.2.3.4", 2) == (1, True)
    assert store.claim_job("send") is None


def test_job_life_cycle(store):
    store.add_job("1.2.3.4", 1, "analyse")
    store.add_job("1.2.3.4", 1, "analyse")  # the same job again: kept once
    job = store.claim_job("analyse")
    assert (job.state, job.attempts) == ("running", 1)
    assert store.claim_job("analyse") is None
    store.retry_job(job.id, "PACS down", delay_s=30.0)
    assert store.claim_job("analyse") is None
    assert store.next_due("analyse") == pytest.approx(time.time() + 30.0, abs=2.0)
    job = store.claim_job("analyse", now=time.time() + 31.0)
    assert (job.attempts, job.error) == (2, "PACS down")
    store.finish_job(job.id, then=("1.2.3.4", 1, "send"))
    assert [(j.kind, j.state) for j in store.jobs("1.2.3.4")] == [("analyse", "done"), ("send", "pending")]
    send = store.claim_job("send")
    store.fail_job(send.id, "refused")
    assert store.jobs(kind="send")[0].state == "failed"


def test_recover_resets_running_jobs_and_registers_spooled_files(tmp_path, store_target):
    spool = tmp_path / "spool"
    series = spool / "1.2.3" / "1.2.3.4"
    stored = np.zeros((4, 4), dtype=np.int16)
    known = ct_instance(series / "1.5.1.dcm", stored, position=(0, 0, 0), time_s=36000.0,
                        study_uid="1.2.3", series_uid="1.2.3.4", sop_uid="1.5.1")
    ct_instance(series / "1.5.2.dcm", stored, position=(0, 0, 5), time_s=36000.0,
                study_uid="1.2.3", series_uid="1.2.3.4", sop_uid="1.5.2")
    ct_instance(spool / ".incoming" / "tmp" / "x" / "1.5.3.dcm", stored, position=(0, 0, 10),
                time_s=36000.0, study_uid="1.2.3", series_uid="1.2.3.4", sop_uid="1.5.3")
    (series / "1.5.4.dcm").write_bytes(b"not DICOM at all")

    store = JobStore(store_target)
    store.record_instance(info("1.5.1", path=known), received_at=50.0)
    store.add_job("1.2.3.4", 1, "analyse")
    assert store.claim_job("analyse").state == "running"
    store.close()  # as if killed

    store = JobStore(store_target)
    recovery = store.recover(spool)
    assert (recovery.jobs_reset, recovery.instances_registered) == (1, 1)
    assert [p.name for p, _ in recovery.unreadable] == ["1.5.4.dcm"]
    assert sorted(i.sop_instance_uid for i in store.instances("1.2.3.4")) == ["1.5.1", "1.5.2"]
    job = store.jobs()[0]
    assert (job.state, job.attempts) == ("pending", 0)
    assert store.series("1.2.3.4").last_received >= time.time() - 5  # a fresh quiet period
    assert store.recover(spool).instances_registered == 0
    store.close()


def test_a_recorded_instance_survives_kill_9(store_target):
    """record_instance returns only once the row is committed: killing the process right after
    loses nothing."""
    code = (
        "import os, signal\n"
        "from tests.test_jobstore import info\n"
        "from triage.store.jobs import JobStore\n"
        f"store = JobStore({str(store_target)!r})\n"
        "store.record_instance(info('7.7.7'))\n"
        "store.add_job('1.2.3.4', 1, 'send')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent)
    assert result.returncode == -9
    store = JobStore(store_target)
    assert [i.sop_instance_uid for i in store.instances("1.2.3.4")] == ["7.7.7"]
    assert [j.kind for j in store.jobs()] == ["send"]
    store.close()
