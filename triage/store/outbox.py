"""The ``outbox`` table (see :mod:`triage.store.schema`): the alerts to the stroke team's endpoints.

:class:`~triage.store.jobs.JobStore` writes messages (:func:`insert_alerts`, in the transaction
that records what they announce); :class:`OutboxStore` is what :mod:`triage.node.delivery`
reads and updates while it delivers them. Several processes may deliver from one outbox (a
hub's PostgreSQL database): :meth:`OutboxStore.due` leases the message it returns to its caller
for ``OUTBOX_LEASE_S``, longer than one delivery attempt, and the attempt's outcome ends the
lease. Times are POSIX seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from triage.store.database import Connection
    from triage.store.jobs import JobStore

OUTBOX_LEASE_S = 60.0  # a message's lease to one deliverer: more than the 10 s an HTTP POST may take


@dataclass(frozen=True)
class OutboxMessage:
    """A new row of the ``outbox`` table: an alert for (series, generation) to ``url``, tried
    until ``expires_at`` (POSIX s)."""

    key: str
    series_uid: str
    generation: int
    kind: str
    format: str
    url: str
    body: bytes
    expires_at: float


@dataclass(frozen=True)
class OutboxRow(OutboxMessage):
    """One row of the ``outbox`` table: the message and its delivery state (times POSIX s)."""

    id: int
    state: str
    attempts: int
    next_attempt_at: float
    created_at: float
    delivered_at: float | None
    last_error: str | None
    lease_until: float | None = None


def insert_alerts(db: Connection, alerts: list[OutboxMessage], now: float) -> None:
    """Pending outbox rows, due now, in the caller's transaction; a key already there is kept
    as it is."""
    db.executemany("INSERT INTO outbox (key, series_uid, generation, kind, format, url, body, "
                   "state, next_attempt_at, expires_at, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT DO NOTHING",
                   [(a.key, a.series_uid, a.generation, a.kind, a.format, a.url, a.body, now,
                     a.expires_at, now) for a in alerts])


def release_outbox_leases(db: Connection) -> None:
    """End every message's lease, in the caller's transaction (no other process delivers)."""
    db.execute("UPDATE outbox SET lease_until = NULL WHERE lease_until IS NOT NULL")


class OutboxStore:
    """The ``outbox`` table of a :class:`~triage.store.jobs.JobStore` (its connection and lock)."""

    def __init__(self, store: JobStore):
        self._database = store._database

    def rows(self, series_uid: str | None = None) -> list[OutboxRow]:
        sql, parameters = "SELECT * FROM outbox", ()
        if series_uid is not None:
            sql, parameters = sql + " WHERE series_uid = ?", (series_uid,)
        return [OutboxRow(**row) for row in self._database.rows(sql + " ORDER BY id", parameters)]

    def due(self, now: float, url: str | None = None) -> OutboxRow | None:
        """The pending message (to ``url``, or to any) due first, if it is due at ``now`` and
        not leased to another deliverer; it is leased to the caller until ``now +
        OUTBOX_LEASE_S`` (the row returned has that lease)."""
        with self._database.transaction() as db:
            row = db.execute("SELECT * FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? "
                             "AND (lease_until IS NULL OR lease_until < ?) AND (CAST(? AS TEXT) IS NULL OR url = ?) "
                             "ORDER BY next_attempt_at, id LIMIT 1" + self._database.skip_locked,
                             (now, now, url, url)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE outbox SET lease_until = ? WHERE id = ?", (now + OUTBOX_LEASE_S, row["id"]))
            return OutboxRow(**{**dict(row), "lease_until": now + OUTBOX_LEASE_S})

    def next_due(self, url: str | None = None) -> float | None:
        """When the next pending message (to ``url``, or to any) is due, or its lease ends if
        that is later (None: none pending)."""
        return self._database.rows("SELECT min(CASE WHEN lease_until > next_attempt_at THEN lease_until "
                                   "ELSE next_attempt_at END) FROM outbox WHERE state = 'pending' "
                                   "AND (CAST(? AS TEXT) IS NULL OR url = ?)", (url, url))[0][0]

    # The outcomes of an attempt: each ends the message's lease.

    def delivered(self, row_id: int, now: float) -> None:
        self._update("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ?, "
                     "last_error = NULL, lease_until = NULL WHERE id = ? AND state = 'pending'", (now, row_id))

    def retry(self, row_id: int, error: str, at: float) -> None:
        """One more failed attempt; the next one ``at`` (POSIX s)."""
        self._update("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, "
                     "lease_until = NULL WHERE id = ? AND state = 'pending'", (error, at, row_id))

    def expire(self, row_id: int, error: str, *, attempted: bool) -> None:
        self._update("UPDATE outbox SET state = 'expired', attempts = attempts + ?, last_error = ?, "
                     "lease_until = NULL WHERE id = ? AND state = 'pending'", (int(attempted), error, row_id))

    def expire_pending(self, error: str, keep_urls: tuple[str, ...] = ()) -> int:
        """Expire the pending messages to URLs not in ``keep_urls`` (webhooks no longer
        configured; every pending message when none is); how many."""
        keep = f" AND url NOT IN ({', '.join('?' * len(keep_urls))})" if keep_urls else ""
        with self._database.transaction(durable=True) as db:
            return db.execute("UPDATE outbox SET state = 'expired', last_error = ?, lease_until = NULL "
                              "WHERE state = 'pending'" + keep, (error, *keep_urls)).rowcount

    def _update(self, sql: str, parameters: tuple) -> None:
        with self._database.transaction(durable=True) as db:
            db.execute(sql, parameters)
