"""The node's jobs: received instances, series and their analysis and send jobs.

:class:`JobStore` owns the database (the SQLite file ``DATA/triage.db``, or a PostgreSQL
database several processes of a hub share) and the node's tables (:mod:`triage.store.schema`):
``instances``, ``series``, ``jobs`` and ``outbox``. Instance rows are committed with SQLite's
``synchronous=NORMAL`` or PostgreSQL's ``synchronous_commit = off`` (durable across a crash of
the process; after a power cut the spool is rescanned by :meth:`JobStore.recover`), job state
changes durably. Times are POSIX seconds (``time.time()``), so they survive a restart.

Claims: claiming a job gives it a random ``claim`` token, and, with a lease duration, a
``lease_until`` the worker renews (:meth:`JobStore.renew_lease`) while it runs the job. The
ends of a running job take the token and change nothing when it is no longer the job's (the
job was superseded, or taken over after its lease ended: :meth:`JobStore.claim_job_id`,
:meth:`JobStore.expired_leases`). The write transactions of all processes run one at a time
(see :mod:`triage.store.database`), so no job is claimed twice.

The store's other modules share its connection (:func:`~triage.store.database.open_database`):
:mod:`triage.store.outbox` (the alerts' delivery), :mod:`triage.store.accounts` (the web
API's users, tokens, sessions and audit log), :mod:`triage.store.studies` and
:mod:`triage.store.metrics` (the web API's read-only views).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pydicom

from dicom_node.instance import InstanceInfo, instance_info
from triage.base.errors import one_line
from triage.store.database import Connection, is_postgres_url, open_database
from triage.store.outbox import OutboxMessage, insert_alerts, release_outbox_leases
from triage.store.records import Generation, Job, Recorded, Recovery, SeriesRecord
from triage.store.schema import INSTANCE_COLUMNS, MIGRATIONS, SCHEMA

_UPSERT_INSTANCE = (f"INSERT INTO instances ({', '.join(INSTANCE_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(INSTANCE_COLUMNS))}) ON CONFLICT (sop_uid) DO UPDATE SET "
                    + ", ".join(f"{column} = excluded.{column}" for column in INSTANCE_COLUMNS if column != "sop_uid"))
# The condition of the ends of a running job: (job id, claim, claim); a claim of None matches any.
_RUNNING_AS_CLAIMED = "id = ? AND state = 'running' AND (CAST(? AS TEXT) IS NULL OR claim = ?)"
_UNCLAIMED = "claim = NULL, lease_until = NULL"
_ONE_ATTEMPT_LESS = "CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"


class JobStore:
    """The job store at ``target``: the path of a SQLite file, or a ``postgresql://`` URL
    (created with its tables when missing). ``path`` is the SQLite file's (None for
    PostgreSQL). Its connection (``_database``) is shared with the store's other modules, which
    take the job store."""

    def __init__(self, target: Path | str):
        self.target = target
        self.is_postgres = is_postgres_url(target)
        self.path = None if self.is_postgres else Path(target)
        self._database = open_database(target)
        self._database.create(SCHEMA)
        self._database.add_missing_columns(MIGRATIONS)

    def close(self) -> None:
        self._database.close()

    def ping(self) -> None:
        """Run a trivial statement: raises when the database cannot answer."""
        self._database.rows("SELECT 1")

    # Instances and series

    def record_instance(self, info: InstanceInfo, received_at: float | None = None) -> Recorded:
        """Record a stored instance and touch its series (a new instance sets the series back
        to ``receiving``). Recording the same SOP Instance UID again only refreshes its row."""
        now = time.time() if received_at is None else received_at
        row = _instance_row(info, now)
        with self._database.transaction() as db:
            new = db.execute("SELECT 1 FROM instances WHERE sop_uid = ?",
                             (info.sop_instance_uid,)).fetchone() is None
            db.execute(_UPSERT_INSTANCE, row)
            series = db.execute("SELECT state, generation FROM series WHERE series_uid = ?",
                                (info.series_uid,)).fetchone()
            if series is None:
                db.execute(
                    "INSERT INTO series (series_uid, study_uid, patient_id, description, "
                    "calling_aet, state, first_received, last_received, n_instances) "
                    "VALUES (?, ?, ?, ?, ?, 'receiving', ?, ?, 1)",
                    (info.series_uid, info.study_uid, info.patient_id, info.series_description,
                     info.calling_aet, now, now))
                return Recorded(new=True, previous_state=None, generation=0)
            if new:
                db.execute("UPDATE series SET state = 'receiving', last_received = CASE WHEN last_received < ? "
                           "THEN ? ELSE last_received END, n_instances = n_instances + 1 WHERE series_uid = ?",
                           (now, now, info.series_uid))
            return Recorded(new=new, previous_state=series["state"], generation=series["generation"])

    def instances(self, series_uid: str) -> list[InstanceInfo]:
        """The recorded instances of a series."""
        rows = self._database.rows(f"SELECT {', '.join(INSTANCE_COLUMNS)} FROM instances "
                           "WHERE series_uid = ? ORDER BY sop_uid", (series_uid,))
        return [_instance_from_row(row) for row in rows]

    def arrival_times(self, series_uid: str) -> list[float]:
        """When each recorded instance of a series arrived (s since the epoch), in order."""
        rows = self._database.rows("SELECT received_at FROM instances WHERE series_uid = ? "
                                   "ORDER BY received_at", (series_uid,))
        return [row["received_at"] for row in rows]

    def series(self, series_uid: str) -> SeriesRecord | None:
        rows = self._database.rows("SELECT * FROM series WHERE series_uid = ?", (series_uid,))
        return SeriesRecord(**rows[0]) if rows else None

    def series_in_state(self, state: str, quiet_since: float | None = None) -> list[SeriesRecord]:
        """Series in ``state``; with ``quiet_since``, only those whose last instance arrived at
        or before that time."""
        sql, parameters = "SELECT * FROM series WHERE state = ?", [state]
        if quiet_since is not None:
            sql += " AND last_received <= ?"
            parameters.append(quiet_since)
        return [SeriesRecord(**row) for row in self._database.rows(sql + " ORDER BY last_received", parameters)]

    def expired_series(self, before: float, series_uid: str | None = None) -> list[SeriesRecord]:
        """Series (or the one ``series_uid``) whose last instance arrived before ``before`` and
        that have no pending or running job nor pending alert: nothing more will be done with
        them unless an instance arrives (retention removes them)."""
        sql = ("SELECT * FROM series s WHERE last_received < ? AND NOT EXISTS (SELECT 1 FROM jobs j "
               "WHERE j.series_uid = s.series_uid AND j.state IN ('pending', 'running')) AND NOT EXISTS "
               "(SELECT 1 FROM outbox o WHERE o.series_uid = s.series_uid AND o.state = 'pending')")
        parameters: list = [before]
        if series_uid is not None:
            sql += " AND series_uid = ?"
            parameters.append(series_uid)
        return [SeriesRecord(**row) for row in self._database.rows(sql + " ORDER BY last_received", parameters)]

    def forget_series(self, series_uid: str) -> int:
        """Delete a series, its instances and its jobs; returns the number of instances."""
        with self._database.transaction(durable=True) as db:
            count = db.execute("DELETE FROM instances WHERE series_uid = ?", (series_uid,)).rowcount
            db.execute("DELETE FROM jobs WHERE series_uid = ?", (series_uid,))
            db.execute("DELETE FROM outbox WHERE series_uid = ?", (series_uid,))
            db.execute("DELETE FROM series WHERE series_uid = ?", (series_uid,))
            return count

    def set_series_state(self, series_uid: str, state: str, *, classification: str, reason: str,
                         n_positions: int | None = None, n_times: int | None = None,
                         unchanged_since: float | None = None) -> bool:
        """Record a decision about a series. With ``unchanged_since`` (the ``last_received`` the
        decision was based on) nothing is written if an instance arrived meanwhile; returns
        whether the row was updated."""
        with self._database.transaction() as db:
            cursor = db.execute(
                "UPDATE series SET state = ?, classification = ?, reason = ?, n_positions = ?, "
                "n_times = ? WHERE series_uid = ? AND (CAST(? AS DOUBLE PRECISION) IS NULL OR last_received <= ?)",
                (state, classification, reason, n_positions, n_times, series_uid,
                 unchanged_since, unchanged_since))
            return cursor.rowcount == 1

    def start_generation(self, series_uid: str, *, reason: str, n_positions: int, n_times: int,
                         unchanged_since: float) -> Generation | None:
        """Mark a complete perfusion series ``ready`` and queue its next analysis; None when an
        instance arrived after ``unchanged_since``. In the same transaction, the older
        generations' pending and running analyses and pending sends become ``superseded``
        (a send under way is left to finish: what the PACS acknowledged cannot be recalled)."""
        now = time.time()
        with self._database.transaction(durable=True) as db:
            cursor = db.execute(
                "UPDATE series SET state = 'ready', classification = 'CTP', reason = ?, "
                "n_positions = ?, n_times = ?, generation = generation + 1 "
                "WHERE series_uid = ? AND last_received <= ?",
                (reason, n_positions, n_times, series_uid, unchanged_since))
            if cursor.rowcount != 1:
                return None
            generation = db.execute("SELECT generation FROM series WHERE series_uid = ?",
                                    (series_uid,)).fetchone()[0]
            superseded = _supersede_older(db, series_uid, generation, now)
            _insert_job(db, series_uid, generation, "analyse", now)
            return Generation(generation, superseded)

    def reprocess(self, series_uid: str, options: dict) -> Generation | None:
        """Queue a re-run of an analysed perfusion series (state ``ready``) as its next
        generation with the analysis ``options`` (JSON-ready, see the ``jobs`` table),
        superseding the older generations' work as :meth:`start_generation` does. None when the
        series is unknown, not a perfusion series, or receiving or waiting for images."""
        now = time.time()
        with self._database.transaction(durable=True) as db:
            cursor = db.execute("UPDATE series SET generation = generation + 1 WHERE series_uid = ? "
                                "AND state = 'ready' AND classification = 'CTP'", (series_uid,))
            if cursor.rowcount != 1:
                return None
            generation = db.execute("SELECT generation FROM series WHERE series_uid = ?",
                                    (series_uid,)).fetchone()[0]
            superseded = _supersede_older(db, series_uid, generation, now)
            _insert_job(db, series_uid, generation, "analyse", now, json.dumps(options, sort_keys=True))
            return Generation(generation, superseded)

    # Jobs

    def add_job(self, series_uid: str, generation: int, kind: str) -> None:
        """Queue a job; a job of this kind for this series and generation is kept as it is."""
        with self._database.transaction(durable=True) as db:
            _insert_job(db, series_uid, generation, kind, time.time())

    def claim_job(self, kind: str, now: float | None = None, lease_s: float | None = None) -> Job | None:
        """The oldest due pending job of ``kind``, now marked running (attempts + 1) with a new
        claim token and, with ``lease_s``, a lease until ``now + lease_s`` (POSIX s)."""
        now = time.time() if now is None else now
        with self._database.transaction(durable=True) as db:
            row = db.execute("SELECT id FROM jobs WHERE kind = ? AND state = 'pending' AND next_attempt_at <= ? "
                             "ORDER BY next_attempt_at, id LIMIT 1" + self._database.skip_locked,
                             (kind, now)).fetchone()
            return None if row is None else _claim(db, row["id"], now, lease_s)

    def claim_job_id(self, job_id: int, lease_s: float, now: float | None = None) -> Job | None:
        """Claim the job ``job_id`` (attempts + 1, a new claim token, a lease of ``lease_s``
        seconds) if it is pending and due at ``now``, or running with a lease that ended before
        ``now`` (its worker died: the job is taken over). None otherwise: done, failed,
        superseded, not yet due, or running under a live lease (or none)."""
        now = time.time() if now is None else now
        with self._database.transaction(durable=True) as db:
            row = db.execute("SELECT id FROM jobs WHERE id = ? AND ((state = 'pending' AND next_attempt_at <= ?) "
                             "OR (state = 'running' AND lease_until < ?))" + self._database.skip_locked,
                             (job_id, now, now)).fetchone()
            return None if row is None else _claim(db, job_id, now, lease_s)

    def renew_lease(self, job_id: int, claim: str, lease_s: float) -> bool:
        """Extend the lease of a running job to ``lease_s`` seconds from now; False when
        ``claim`` is no longer the job's (superseded, or taken over): its worker must stop."""
        now = time.time()
        with self._database.transaction() as db:
            return db.execute(f"UPDATE jobs SET lease_until = ? WHERE {_RUNNING_AS_CLAIMED}",
                              (now + lease_s, job_id, claim, claim)).rowcount == 1

    def expired_leases(self, now: float | None = None) -> list[Job]:
        """The running jobs whose lease ended before ``now`` (their workers died), as they were;
        each is put back to pending, due at ``now``, its attempt counted (it did run)."""
        now = time.time() if now is None else now
        with self._database.transaction(durable=True) as db:
            expired = [Job(**row) for row in db.execute("SELECT * FROM jobs WHERE state = 'running' AND "
                                                        "lease_until < ? ORDER BY id" + self._database.skip_locked,
                                                        (now,)).fetchall()]
            db.executemany(f"UPDATE jobs SET state = 'pending', next_attempt_at = ?, updated_at = ?, {_UNCLAIMED} "
                           "WHERE id = ?", [(now, now, job.id) for job in expired])
            return expired

    def due_jobs(self, now: float | None = None, limit: int = 100) -> list[Job]:
        """Up to ``limit`` pending jobs (of any kind) due at ``now``, the longest due first."""
        now = time.time() if now is None else now
        return [Job(**row) for row in self._database.rows(
            "SELECT * FROM jobs WHERE state = 'pending' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, id LIMIT ?", (now, limit))]

    # The ends of a running job: each changes only a job still ``running`` (not one superseded
    # meanwhile) and, given its ``claim``, only while that claim is the job's; each returns
    # whether it did. Each drops the claim and its lease.

    def finish_job(self, job_id: int, *, then: tuple[str, int, str] | None = None,
                   alerts: list[OutboxMessage] = (), now: float | None = None, claim: str | None = None) -> bool:
        """Mark a running job done (at ``now``, POSIX s) and, in the same transaction, queue
        ``then`` = (series, generation, kind) when given and put ``alerts`` in the outbox: no
        crash can fall between them."""
        now = time.time() if now is None else now
        with self._database.transaction(durable=True) as db:
            done = db.execute(f"UPDATE jobs SET state = 'done', error = NULL, updated_at = ?, {_UNCLAIMED} "
                              f"WHERE {_RUNNING_AS_CLAIMED}", (now, job_id, claim, claim)).rowcount == 1
            if done and then is not None:
                _insert_job(db, *then, now)
            if done:
                insert_alerts(db, alerts, now)
            return done

    def retry_job(self, job_id: int, error: str, delay_s: float, *, claim: str | None = None) -> bool:
        """Put a running job back to pending, due in ``delay_s`` seconds, with the error that
        stopped it."""
        now = time.time()
        with self._database.transaction(durable=True) as db:
            return db.execute(f"UPDATE jobs SET state = 'pending', error = ?, next_attempt_at = ?, updated_at = ?, "
                              f"{_UNCLAIMED} WHERE {_RUNNING_AS_CLAIMED}",
                              (error, now + delay_s, now, job_id, claim, claim)).rowcount == 1

    def fail_job(self, job_id: int, error: str, *, alerts: list[OutboxMessage] = (),
                 now: float | None = None, claim: str | None = None) -> bool:
        """Mark a running job failed for good (at ``now``) and put ``alerts`` in the outbox."""
        now = time.time() if now is None else now
        with self._database.transaction(durable=True) as db:
            failed = db.execute(f"UPDATE jobs SET state = 'failed', error = ?, updated_at = ?, {_UNCLAIMED} "
                                f"WHERE {_RUNNING_AS_CLAIMED}", (error, now, job_id, claim, claim)).rowcount == 1
            if failed:
                insert_alerts(db, alerts, now)
            return failed

    def add_alerts(self, alerts: list[OutboxMessage], now: float | None = None) -> None:
        """Put ``alerts`` in the outbox, written at ``now`` (a key already there is kept as it is)."""
        with self._database.transaction(durable=True) as db:
            insert_alerts(db, alerts, time.time() if now is None else now)

    def supersede_job(self, job_id: int, generation: int, *, claim: str | None = None) -> bool:
        """Mark a running job ``superseded by generation <generation>``."""
        with self._database.transaction(durable=True) as db:
            return db.execute(f"UPDATE jobs SET state = 'superseded', error = ?, updated_at = ?, {_UNCLAIMED} "
                              f"WHERE {_RUNNING_AS_CLAIMED}", (f"superseded by generation {generation}",
                                                               time.time(), job_id, claim, claim)).rowcount == 1

    def release_job(self, job_id: int, *, claim: str | None = None) -> bool:
        """Put a job interrupted by shutdown back to pending, the attempt not counted."""
        with self._database.transaction(durable=True) as db:
            return db.execute(f"UPDATE jobs SET state = 'pending', attempts = {_ONE_ATTEMPT_LESS}, updated_at = ?, "
                              f"{_UNCLAIMED} WHERE {_RUNNING_AS_CLAIMED}",
                              (time.time(), job_id, claim, claim)).rowcount == 1

    def newer_result_possible(self, series_uid: str, generation: int) -> bool:
        """Whether a generation after ``generation`` is analysed, or may still be (its analysis
        pending, running or done; not failed or superseded)."""
        return bool(self._database.rows(
            "SELECT 1 FROM jobs WHERE series_uid = ? AND kind = 'analyse' AND generation > ? "
            "AND state IN ('pending', 'running', 'done') LIMIT 1", (series_uid, generation)))

    def resend_generation(self, series_uid: str, before: int) -> tuple[int, bool] | None:
        """The newest generation before ``before`` whose analysis is done, and whether its
        results were already sent; when they were not (their send superseded or failed), the
        send is queued again. None when no earlier generation was analysed."""
        with self._database.transaction(durable=True) as db:
            row = db.execute(
                "SELECT a.generation, s.id, s.state FROM jobs a LEFT JOIN jobs s ON "
                "s.series_uid = a.series_uid AND s.generation = a.generation AND s.kind = 'send' "
                "WHERE a.series_uid = ? AND a.kind = 'analyse' AND a.state = 'done' "
                "AND a.generation < ? ORDER BY a.generation DESC LIMIT 1", (series_uid, before)).fetchone()
            if row is None:
                return None
            if row["state"] in ("done", "pending", "running"):
                return row["generation"], row["state"] == "done"
            now = time.time()
            if row["id"] is None:
                _insert_job(db, series_uid, row["generation"], "send", now)
            else:
                db.execute("UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = ?, "
                           "error = NULL, updated_at = ? WHERE id = ?", (now, now, row["id"]))
            return row["generation"], False

    def job(self, job_id: int) -> Job:
        return Job(**self._database.rows("SELECT * FROM jobs WHERE id = ?", (job_id,))[0])

    def jobs(self, series_uid: str | None = None, kind: str | None = None) -> list[Job]:
        sql, parameters = "SELECT * FROM jobs WHERE 1 = 1", []
        if series_uid is not None:
            sql += " AND series_uid = ?"
            parameters.append(series_uid)
        if kind is not None:
            sql += " AND kind = ?"
            parameters.append(kind)
        return [Job(**row) for row in self._database.rows(sql + " ORDER BY id", parameters)]

    def next_due(self, kind: str) -> float | None:
        """When the earliest pending job of ``kind`` is due (None: nothing pending)."""
        rows = self._database.rows("SELECT min(next_attempt_at) FROM jobs WHERE kind = ? AND state = 'pending'",
                           (kind,))
        return rows[0][0]

    # Crash recovery

    def recover(self, spool_root: Path, reset_running: bool = True) -> Recovery:
        """Resume after a crash or a stop: with ``reset_running``, jobs left ``running`` go back
        to ``pending`` (their attempt not counted) and the outbox's leases end (in a hub the
        running jobs are left alone: they run on live workers); instances in the spool
        (``<study>/<series>/*.dcm``; hidden folders such as ``.incoming`` skipped) that are
        missing from the database are registered again from their headers, received at the
        file's modification time; series still receiving get a fresh quiet period from now, so
        that a sender cut off by the stop can resume before a partial series looks complete."""
        known = {os.path.realpath(row[0]) for row in self._database.rows("SELECT path FROM instances")}
        registered, unreadable = 0, []
        for path in _spool_files(Path(spool_root)):
            if os.path.realpath(path) in known:
                continue
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                info = instance_info(ds, path)
            except Exception as exc:  # a damaged file must not stop the node from starting
                unreadable.append((path, one_line(exc, with_type=True)))
                continue
            self.record_instance(info, received_at=path.stat().st_mtime)
            registered += 1
        now, reset = time.time(), 0
        with self._database.transaction(durable=True) as db:
            if reset_running:
                reset = db.execute(f"UPDATE jobs SET state = 'pending', attempts = {_ONE_ATTEMPT_LESS}, {_UNCLAIMED} "
                                   "WHERE state = 'running'").rowcount
                release_outbox_leases(db)
            db.execute("UPDATE series SET last_received = CASE WHEN last_received < ? THEN ? ELSE last_received END "
                       "WHERE state = 'receiving'", (now, now))
        return Recovery(jobs_reset=reset, instances_registered=registered, unreadable=unreadable)


def _claim(db: Connection, job_id: int, now: float, lease_s: float | None) -> Job:
    """Mark the job running (attempts + 1) under a new claim token, leased until ``now +
    lease_s`` (no lease: None); the job as it is then."""
    db.execute("UPDATE jobs SET state = 'running', attempts = attempts + 1, claim = ?, lease_until = ?, "
               "updated_at = ? WHERE id = ?",
               (uuid.uuid4().hex, None if lease_s is None else now + lease_s, now, job_id))
    return Job(**db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())


def _insert_job(db: Connection, series_uid: str, generation: int, kind: str, now: float,
                options: str | None = None) -> None:
    db.execute("INSERT INTO jobs (series_uid, generation, kind, state, next_attempt_at, created_at, updated_at, "
               "options) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?) ON CONFLICT DO NOTHING",
               (series_uid, generation, kind, now, now, now, options))


def _supersede_older(db: Connection, series_uid: str, generation: int, now: float) -> list[Job]:
    """Mark the pending jobs and running analyses of generations before ``generation``
    superseded; returns them as they were."""
    older = ("series_uid = ? AND generation < ? AND "
             "(state = 'pending' OR (kind = 'analyse' AND state = 'running'))")
    superseded = [Job(**row) for row in db.execute(f"SELECT * FROM jobs WHERE {older} ORDER BY id",
                                                   (series_uid, generation))]
    db.execute(f"UPDATE jobs SET state = 'superseded', error = ?, updated_at = ?, {_UNCLAIMED} WHERE {older}",
               (f"superseded by generation {generation}", now, series_uid, generation))
    return superseded


def _spool_files(root: Path):
    """``root/<study>/<series>/*.dcm``, hidden entries skipped, in name order."""
    if not root.is_dir():
        return
    for study in sorted(os.scandir(root), key=lambda e: e.name):
        if study.name.startswith(".") or not study.is_dir():
            continue
        for series in sorted(os.scandir(study.path), key=lambda e: e.name):
            if series.name.startswith(".") or not series.is_dir():
                continue
            for entry in sorted(os.scandir(series.path), key=lambda e: e.name):
                if entry.name.endswith(".dcm") and not entry.name.startswith(".") and entry.is_file():
                    yield Path(entry.path)


def _instance_row(info: InstanceInfo, received_at: float) -> tuple:
    return (info.sop_instance_uid, info.series_uid, info.study_uid, info.sop_class_uid,
            str(info.path), info.calling_aet, info.patient_id, info.modality,
            info.series_description, json.dumps(list(info.image_type)),
            None if info.position is None else json.dumps(list(info.position)),
            None if info.orientation is None else json.dumps(list(info.orientation)),
            info.time_s, info.acquisition_number, info.number_of_frames, received_at,
            info.temporal_positions, info.images_in_acquisition)


def _instance_from_row(row) -> InstanceInfo:
    position, orientation = row["position"], row["orientation"]
    return InstanceInfo(
        sop_instance_uid=row["sop_uid"], sop_class_uid=row["sop_class_uid"],
        study_uid=row["study_uid"], series_uid=row["series_uid"], path=Path(row["path"]),
        calling_aet=row["calling_aet"], patient_id=row["patient_id"], modality=row["modality"],
        series_description=row["series_description"],
        image_type=tuple(json.loads(row["image_type"])),
        position=None if position is None else tuple(json.loads(position)),
        orientation=None if orientation is None else tuple(json.loads(orientation)),
        time_s=row["time_s"], acquisition_number=row["acquisition_number"],
        number_of_frames=row["number_of_frames"], temporal_positions=row["temporal_positions"],
        images_in_acquisition=row["images_in_acquisition"])
