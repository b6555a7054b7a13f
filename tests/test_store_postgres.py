"""The job store shared by several processes (a hub on PostgreSQL): claims and leases of jobs and
alerts, the PostgreSQL backend (its translation of the statements and the schema, its rows,
reconnection and errors), and the store's other queries on both backends.

Two :class:`JobStore` objects on one database have a connection each: they stand for two
processes. The claim tests run on SQLite too: its file can be shared by processes as well.
"""

import hashlib
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from dicom_node.instance import CT_IMAGE_STORAGE, InstanceInfo
from tests.support.postgres import free_port, postgres_server, postgres_url, store_target  # noqa: F401 (fixtures)
from triage.node.delivery import POST_TIMEOUT_S
from triage.store.accounts import AccountStore
from triage.store.database import DatabaseError, DatabaseUnreachable, open_database
from triage.store.jobs import JobStore
from triage.store.metrics import MetricsQueries
from triage.store.outbox import OUTBOX_LEASE_S, OutboxMessage, OutboxStore
from triage.store.postgres import placeholders, postgres_ddl
from triage.store.shares import ShareStore
from triage.store.schema import SCHEMA
from triage.store.studies import StudyQueries
from triage.web.shares import ShareRefused, Shares


@pytest.fixture
def stores(store_target):
    """Two job stores on one database, as two processes have."""
    first, second = JobStore(store_target), JobStore(store_target)
    yield first, second
    first.close()
    second.close()


@pytest.fixture
def store(store_target):
    store = JobStore(store_target)
    yield store
    store.close()


def message(key="k1", body=b'{"a": 1}', url="http://127.0.0.1:9/hook", expires_in=3600.0) -> OutboxMessage:
    return OutboxMessage(key=key, series_uid="1.2.3.4", generation=1, kind="result", format="json", url=url,
                         body=body, expires_at=time.time() + expires_in)


# Job claims and leases


def test_a_job_claimed_by_one_process_is_not_claimed_by_another(stores):
    first, second = stores
    first.add_job("1.2.3.4", 1, "analyse")
    before = time.time()
    job = first.claim_job("analyse", lease_s=30.0)
    assert (job.state, job.attempts, len(job.claim)) == ("running", 1, 32)
    assert before + 30.0 <= job.lease_until <= time.time() + 30.0
    assert second.claim_job("analyse") is None
    assert second.claim_job_id(job.id, 30.0) is None  # its lease is live


def test_an_expired_lease_is_taken_over_and_the_stale_claim_changes_nothing(stores):
    first, second = stores
    first.add_job("1.2.3.4", 1, "analyse")
    start = time.time()
    lost = first.claim_job("analyse", now=start, lease_s=10.0)
    assert second.claim_job_id(lost.id, 10.0, now=start + 9.0) is None
    taken = second.claim_job_id(lost.id, 10.0, now=start + 11.0)
    assert (taken.state, taken.attempts, taken.lease_until) == ("running", 2, start + 21.0)
    assert taken.claim not in (None, lost.claim)
    assert not first.renew_lease(lost.id, lost.claim, 10.0)
    assert not first.finish_job(lost.id, claim=lost.claim, then=("1.2.3.4", 1, "send"))
    assert not first.retry_job(lost.id, "x", 0.0, claim=lost.claim)
    assert not first.fail_job(lost.id, "x", claim=lost.claim)
    assert not first.supersede_job(lost.id, 2, claim=lost.claim)
    assert not first.release_job(lost.id, claim=lost.claim)
    assert (first.job(lost.id).state, first.job(lost.id).claim) == ("running", taken.claim)
    assert second.renew_lease(taken.id, taken.claim, 10.0)
    assert second.finish_job(taken.id, claim=taken.claim, then=("1.2.3.4", 1, "send"))
    done = first.job(lost.id)
    assert (done.state, done.claim, done.lease_until) == ("done", None, None)
    assert [j.kind for j in first.jobs()] == ["analyse", "send"]


def test_claim_job_id_claims_only_a_due_pending_job_or_an_expired_lease(store):
    for series in ("9.1", "9.2", "9.3", "9.4", "9.5"):
        store.add_job(series, 1, "analyse")
    ids = {j.series_uid: j.id for j in store.jobs()}
    store.finish_job(store.claim_job_id(ids["9.1"], 30.0).id)
    store.fail_job(store.claim_job_id(ids["9.2"], 30.0).id, "refused")
    store.supersede_job(store.claim_job_id(ids["9.3"], 30.0).id, 2)
    store.retry_job(store.claim_job_id(ids["9.4"], 30.0).id, "PACS down", delay_s=60.0)
    unleased = store.claim_job("analyse", now=time.time() + 10**6)  # 9.5, claimed with no lease
    assert unleased.series_uid == "9.5" and unleased.lease_until is None
    later = time.time() + 10**6
    assert [store.claim_job_id(ids[s], 30.0, now=later) for s in ("9.1", "9.2", "9.3", "9.5")] == [None] * 4
    assert store.claim_job_id(ids["9.4"], 30.0) is None  # not due for a minute
    again = store.claim_job_id(ids["9.4"], 30.0, now=time.time() + 61.0)
    assert (again.state, again.attempts, again.error) == ("running", 2, "PACS down")


def test_renewing_a_lease_keeps_the_job(stores):
    first, second = stores
    first.add_job("1.2.3.4", 1, "send")
    job = first.claim_job("send", lease_s=1.0)
    assert first.renew_lease(job.id, job.claim, 100.0)
    assert first.job(job.id).lease_until >= time.time() + 99.0
    assert second.claim_job_id(job.id, 30.0, now=time.time() + 50.0) is None
    assert not first.renew_lease(job.id, uuid.uuid4().hex, 100.0)  # not its claim


def test_expired_leases_puts_back_exactly_the_expired_jobs(store):
    for series in ("9.1", "9.2", "9.3", "9.4"):
        store.add_job(series, 1, "analyse")
    start = time.time()
    short = store.claim_job("analyse", now=start, lease_s=10.0)
    store.claim_job("analyse", now=start, lease_s=100.0)
    store.claim_job("analyse", now=start)  # no lease: never expires
    (expired,) = store.expired_leases(now=start + 50.0)
    assert (expired.id, expired.state, expired.claim) == (short.id, "running", short.claim)
    states = [(j.series_uid, j.state, j.attempts, j.claim is None) for j in store.jobs()]
    assert states == [("9.1", "pending", 1, True), ("9.2", "running", 1, False), ("9.3", "running", 1, False),
                      ("9.4", "pending", 0, True)]
    assert store.job(short.id).next_attempt_at == start + 50.0
    assert store.expired_leases(now=start + 50.0) == []
    assert [j.series_uid for j in store.expired_leases(now=start + 101.0)] == ["9.2"]


def test_due_jobs_are_the_pending_ones_due_the_longest_first(store):
    for series in ("9.1", "9.2", "9.3"):
        store.add_job(series, 1, "analyse")
    store.add_job("9.1", 1, "send")
    first, second = store.claim_job("analyse"), store.claim_job("analyse")
    store.retry_job(first.id, "x", delay_s=100.0)
    assert [(j.series_uid, j.kind) for j in store.due_jobs()] == [("9.3", "analyse"), ("9.1", "send")]
    assert [j.series_uid for j in store.due_jobs(limit=1)] == ["9.3"]
    assert [j.id for j in store.due_jobs(now=time.time() + 101.0)][-1] == first.id
    assert second.id not in [j.id for j in store.due_jobs(now=time.time() + 10**6)]


def test_recover_in_a_hub_leaves_the_running_jobs_and_the_leases(store, tmp_path):
    store.add_job("1.2.3.4", 1, "analyse")
    job = store.claim_job("analyse", lease_s=30.0)
    store.add_alerts([message()])
    OutboxStore(store).due(time.time())
    assert store.recover(tmp_path / "spool", reset_running=False).jobs_reset == 0
    assert store.job(job.id).claim == job.claim and OutboxStore(store).rows()[0].lease_until is not None
    assert store.recover(tmp_path / "spool").jobs_reset == 1
    reset = store.job(job.id)
    assert (reset.state, reset.attempts, reset.claim, reset.lease_until) == ("pending", 0, None, None)
    assert OutboxStore(store).rows()[0].lease_until is None


def test_four_workers_claim_every_job_once(store_target, store):
    for n in range(200):
        store.add_job(f"9.{n}", 1, "analyse")
    claimed, lock = [], threading.Lock()

    def work():
        worker = JobStore(store_target)
        while (job := worker.claim_job("analyse", lease_s=60.0)) is not None:
            with lock:
                claimed.append(job.id)
        worker.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(j.id for j in store.jobs()) and len(claimed) == 200
    assert {j.attempts for j in store.jobs()} == {1}


# Alert claims


def test_a_due_alert_goes_to_one_deliverer_until_its_lease_ends(stores):
    assert OUTBOX_LEASE_S > POST_TIMEOUT_S  # an attempt ends before its lease
    first, second = (OutboxStore(s) for s in stores)
    stores[0].add_alerts([message()])
    now = time.time()
    row = first.due(now)
    assert row.lease_until == now + OUTBOX_LEASE_S == first.rows()[0].lease_until
    assert second.due(now) is None and second.due(now + OUTBOX_LEASE_S - 1.0) is None
    assert second.next_due() == pytest.approx(now + OUTBOX_LEASE_S)
    taken = second.due(now + OUTBOX_LEASE_S + 1.0)  # the first deliverer died
    assert taken.id == row.id and first.due(now + OUTBOX_LEASE_S + 1.0) is None
    second.retry(taken.id, "HTTP 503", at=now)
    assert first.rows()[0].lease_until is None and first.next_due() == now
    assert first.due(now).id == row.id


def test_messages_to_two_urls_go_to_two_deliverers(stores):
    first, second = (OutboxStore(s) for s in stores)
    stores[0].add_alerts([message("k1", url="http://a/"), message("k2", url="http://b/")])
    now = time.time()
    assert first.due(now).url == "http://a/"
    assert second.due(now).url == "http://b/"
    assert first.due(now) is None and second.due(now, "http://a/") is None
    first.expire(first.rows()[0].id, "gone", attempted=True)
    assert first.expire_pending("no webhook") == 1 and {r.state for r in first.rows()} == {"expired"}
    assert {r.lease_until for r in first.rows()} == {None}


# The backends alike


def test_bodies_are_bytes_and_times_doubles(store):
    body = bytes(range(256)) * 4
    store.add_alerts([message(body=body)])
    (row,) = OutboxStore(store).rows()
    assert type(row.body) is bytes and row.body == body
    store.add_job("1.2.3.4", 1, "analyse")
    now = time.time() + 1000.123456  # to the microsecond: float4 would keep 7 digits
    job = store.claim_job("analyse", now=now, lease_s=0.000123)
    assert (job.updated_at, job.lease_until) == (now, now + 0.000123) == (store.job(job.id).updated_at,
                                                                        store.job(job.id).lease_until)


def test_rows_answer_by_name_and_position(store_target):
    database = open_database(store_target)
    (row,) = database.rows("SELECT 1 AS one, ? AS name, '?' AS mark, '10%' AS share", ("x",))
    assert (row["one"], row[1], row["mark"], row["share"]) == (1, "x", "?", "10%")
    assert dict(row) == {"one": 1, "name": "x", "mark": "?", "share": "10%"} and tuple(row) == (1, "x", "?", "10%")
    assert list(dict(**row)) == ["one", "name", "mark", "share"] and len(row) == 4
    with database.transaction() as db:
        db.execute("CREATE TABLE t (n INTEGER)")
        db.executemany("INSERT INTO t (n) VALUES (?)", [(1,), (2,)])
        assert [r["n"] for r in db.execute("SELECT n FROM t ORDER BY n")] == [1, 2]
    with pytest.raises(ZeroDivisionError), database.transaction() as db:
        db.execute("INSERT INTO t (n) VALUES (3)")
        raise ZeroDivisionError  # rolled back
    assert database.rows("SELECT count(*) FROM t")[0][0] == 2
    database.close()


def test_accounts_metrics_and_studies_on_both_backends(store):
    accounts = AccountStore(store)
    assert accounts.add_user("ana", "admin", "scrypt$x", 1.0) and not accounts.add_user("ana", "viewer", "y", 2.0)
    assert accounts.add_token("t" * 64, "ana", 3.0)
    for client in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        accounts.add_audit(10.0, "ana", "login_failed", None, client, None)
    assert accounts.users() == [{"username": "ana", "role": "admin", "created_at": 1.0, "tokens": 1}]
    assert accounts.failed_logins("ana", "10.0.0.2", since=5.0) == (3, 1)
    assert accounts.failed_logins("bob", "10.0.0.9", since=5.0) == (0, 0)
    assert [r["client"] for r in accounts.audit_rows(2, "login_failed")] == ["10.0.0.2", "10.0.0.1"]
    store.record_instance(InstanceInfo(sop_instance_uid="1.2.3.4.1", sop_class_uid=CT_IMAGE_STORAGE,
                                       study_uid="1.2.3", series_uid="1.2.3.4", path=Path("/spool/1.dcm"),
                                       calling_aet="CT1", modality="CT", image_type=("ORIGINAL",)))
    store.add_job("1.2.3.4", 1, "analyse")
    job = store.claim_job("analyse")
    early = message()
    store.add_alerts([early], now=job.updated_at - 5.0)    # the result alert before the job's end
    store.finish_job(job.id, now=job.updated_at + 20.0)
    store.add_job("9.9", 1, "analyse")
    late = store.claim_job("analyse")
    store.add_alerts([replace(early, key="k2", series_uid="9.9")], now=late.updated_at + 9.0)
    store.finish_job(late.id, now=late.updated_at + 3.0)  # its alert after the job's end
    times = sorted(t.result for t in MetricsQueries(store).analysis_times())
    assert times == sorted([job.updated_at - 5.0, late.updated_at + 3.0])
    (study,) = StudyQueries(store).series_rows()
    assert (study["series_uid"], study["job_state"], study["result_generation"], study["result_at"]) == (
        "1.2.3.4", "done", 1, job.updated_at + 20.0)


def test_share_links_and_their_uses_on_both_backends(stores):
    """A link made through one process is checked, revoked and audited through another; an
    expired one is refused; only the token's hash is stored."""
    first, second = Shares(stores[0]), Shares(stores[1])
    token, link = first.create("study-1", "ana", hours=2.0, note="Dr B")
    grant = second.check(token, "10.0.0.7", "page")
    assert (grant.link_id, grant.study_id, grant.expires_at) == (link["id"], "study-1", link["expires_at"])
    second.record(grant, "10.0.0.7", "page")
    second.record(grant, "10.0.0.7", "study/maps/cbf/1.png")
    (listed,) = first.links("study-1")
    assert (listed["state"], listed["note"], listed["uses"], "token_hash" in listed) == ("active", "Dr B", 2, False)
    assert first.links("study-2") == [] and first.link(link["id"], "study-2") is None
    with pytest.raises(ShareRefused) as unknown:
        second.check(token[:-1] + ("A" if token[-1] != "A" else "B"), "10.0.0.8", "study")
    assert (unknown.value.outcome, unknown.value.status) == ("unknown", 404)

    revoked = first.revoke(first.link(link["id"], "study-1"), "ana")
    assert (revoked["state"], revoked["revoked_by"]) == ("revoked", "ana")
    assert first.revoke(revoked, "bob")["revoked_by"] == "ana"  # revoked once
    with pytest.raises(ShareRefused) as refused:
        second.check(token, "10.0.0.7", "study")
    assert (refused.value.outcome, refused.value.status) == ("revoked", 410)

    old = "old-token-" + "x" * 30
    tables = ShareStore(stores[0])
    expired = tables.add_link(hashlib.sha256(old.encode()).hexdigest(), "study-1", "ana", 1.0, time.time() - 1, None)
    with pytest.raises(ShareRefused) as late:
        second.check(old, "10.0.0.9", "page")
    assert (late.value.outcome, late.value.status, first.link(expired["id"], "study-1")["state"]) == (
        "expired", 410, "expired")
    uses = first.uses(10)
    assert [(u["link_id"], u["client"], u["what"], u["outcome"]) for u in uses] == [
        (expired["id"], "10.0.0.9", "page", "expired"), (link["id"], "10.0.0.7", "study", "revoked"),
        (None, "10.0.0.8", "study", "unknown"), (link["id"], "10.0.0.7", "study/maps/cbf/1.png", "read"),
        (link["id"], "10.0.0.7", "page", "read")]
    assert [u["outcome"] for u in first.uses(10, link_id=link["id"])] == ["revoked", "read", "read"]
    assert len(first.uses(10, study_id="study-1")) == 4 and len(first.uses(2)) == 2
    stored = tables.link_by_hash(hashlib.sha256(token.encode()).hexdigest())
    assert stored[0] != token and stored[1]["id"] == link["id"]


# PostgreSQL's translation, schema, connection and errors


def test_placeholders_are_psycopg_s_outside_literals():
    sql = "SELECT '?', \"a?\", ? FROM t WHERE a LIKE '10%' AND b = 'it''s ?' AND c = ? -- why?\nAND d = ?"
    assert placeholders(sql) == ("SELECT '?', \"a?\", %s FROM t WHERE a LIKE '10%%' AND b = 'it''s ?' "
                                 "AND c = %s -- why?\nAND d = %s")


def test_the_schema_translation():
    sqlite = ("CREATE TABLE x (\n    id INTEGER PRIMARY KEY AUTOINCREMENT,\n    n INTEGER NOT NULL,\n"
              "    at REAL,  -- POSIX s\n    body BLOB NOT NULL,\n    realm TEXT\n);")
    assert postgres_ddl(sqlite) == (
        "CREATE TABLE x (\n    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n    n BIGINT NOT NULL,\n"
        "    at DOUBLE PRECISION,  -- POSIX s\n    body BYTEA NOT NULL,\n    realm TEXT\n);")
    translated = postgres_ddl(SCHEMA)
    assert "AUTOINCREMENT" not in translated and " REAL" not in translated and "BLOB" not in translated


def test_the_postgres_tables_have_64_bit_times_and_byte_bodies(postgres_url):
    JobStore(postgres_url).close()
    with psycopg.connect(postgres_url) as connection:
        types = dict(connection.execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public'").fetchall())
    assert (types["jobs.next_attempt_at"], types["jobs.lease_until"], types["outbox.body"], types["jobs.id"]) == (
        "double precision", "double precision", "bytea", "bigint")


def test_processes_creating_the_schema_at_once_do_not_collide(postgres_url):
    errors = []

    def open_store():
        try:
            store = JobStore(postgres_url)
            AccountStore(store)
            store.close()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_a_connection_the_server_closed_is_opened_again(postgres_url):
    store = JobStore(postgres_url)
    assert store.is_postgres and store.path is None
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        for change in (store.ping, lambda: store.add_job("1.2", 1, "send")):
            pid = store._database.rows("SELECT pg_backend_pid()")[0][0]
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            change()
            assert store._database.rows("SELECT pg_backend_pid()")[0][0] != pid
    assert [j.kind for j in store.jobs()] == ["send"]
    store.close()
    with pytest.raises(psycopg.OperationalError):  # closed by the store: not opened again
        store.ping()


def test_an_unreachable_database_is_one_clear_error(postgres_server):
    port = free_port()
    with pytest.raises(DatabaseError) as raised:
        JobStore(f"postgresql://triage:s3cret@127.0.0.1:{port}/hub")
    assert isinstance(raised.value, DatabaseUnreachable)
    text = str(raised.value)
    assert text.startswith(f"cannot open the PostgreSQL database 127.0.0.1:{port}/hub: ")
    assert "\n" not in text and "s3cret" not in text and "refused" in text
    with pytest.raises(DatabaseUnreachable, match=r'127\.0\.0\.1:\d+/nodb: .*database "nodb" does not exist'):
        JobStore(postgres_server.url("nodb"))
