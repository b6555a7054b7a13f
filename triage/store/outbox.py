"""The ``outbox`` table (see :mod:`triage.store.schema`): the alerts to the stroke team's endpoints.

:class:`~triage.store.jobs.JobStore` writes messages (:func:`insert_alerts`, in the transaction
that records what they announce); :class:`OutboxStore` is what :mod:`triage.node.delivery`
reads and updates while it delivers them. Times are POSIX seconds.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from triage.store.jobs import JobStore


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


def insert_alerts(db: sqlite3.Connection, alerts: list[OutboxMessage], now: float) -> None:
    """Pending outbox rows, due now, in the caller's transaction; a key already there is kept
    as it is."""
    db.executemany("INSERT OR IGNORE INTO outbox (key, series_uid, generation, kind, format, url, body, "
                   "state, next_attempt_at, expires_at, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                   [(a.key, a.series_uid, a.generation, a.kind, a.format, a.url, a.body, now,
                     a.expires_at, now) for a in alerts])


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
        """The pending message (to ``url``, or to any) due first, if it is due at ``now``."""
        rows = self._database.rows("SELECT * FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? "
                                   "AND (? IS NULL OR url = ?) ORDER BY next_attempt_at, id LIMIT 1",
                                   (now, url, url))
        return OutboxRow(**rows[0]) if rows else None

    def next_due(self, url: str | None = None) -> float | None:
        """When the next pending message (to ``url``, or to any) is due (None: none pending)."""
        return self._database.rows("SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending' "
                                   "AND (? IS NULL OR url = ?)", (url, url))[0][0]

    def delivered(self, row_id: int, now: float) -> None:
        self._update("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ?, "
                     "last_error = NULL WHERE id = ? AND state = 'pending'", (now, row_id))

    def retry(self, row_id: int, error: str, at: float) -> None:
        """One more failed attempt; the next one ``at`` (POSIX s)."""
        self._update("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                     "WHERE id = ? AND state = 'pending'", (error, at, row_id))

    def expire(self, row_id: int, error: str, *, attempted: bool) -> None:
        self._update("UPDATE outbox SET state = 'expired', attempts = attempts + ?, last_error = ? "
                     "WHERE id = ? AND state = 'pending'", (int(attempted), error, row_id))

    def expire_pending(self, error: str, keep_urls: tuple[str, ...] = ()) -> int:
        """Expire the pending messages to URLs not in ``keep_urls`` (webhooks no longer
        configured; every pending message when none is); how many."""
        marks = ", ".join("?" * len(keep_urls))
        with self._database.transaction(durable=True) as db:
            return db.execute(f"UPDATE outbox SET state = 'expired', last_error = ? WHERE state = 'pending' "
                              f"AND url NOT IN ({marks})", (error, *keep_urls)).rowcount

    def _update(self, sql: str, parameters: tuple) -> None:
        with self._database.transaction(durable=True) as db:
            db.execute(sql, parameters)
