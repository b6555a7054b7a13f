"""The web API's connection to the node's SQLite database (``DATA/triage.db``).

The job store (:class:`triage.jobstore.JobStore`) owns the node's tables; the web API reads
them over a connection of its own (WAL mode lets readers and the node's writer work at once)
and owns the tables of :mod:`triage.web.accounts`. ``OUTBOX_SCHEMA`` is the alerts' outbox as
the shared contract defines it, created when missing so that the metrics can read it before
the alerts feature has written anything.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    series_uid TEXT NOT NULL,
    generation INTEGER NOT NULL,
    kind TEXT NOT NULL,
    format TEXT NOT NULL,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    created_at REAL NOT NULL,
    delivered_at REAL,
    last_error TEXT
);
"""


class Database:
    """One SQLite connection to ``path`` shared by the API's threads behind a lock; ``schema``
    (SQL statements) is run at opening."""

    def __init__(self, path: Path, schema: str = ""):
        self._lock = threading.RLock()
        self._db = sqlite3.connect(Path(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute("PRAGMA journal_mode=WAL")
        self.create(schema)

    def create(self, schema: str) -> None:
        """Run ``schema`` (``CREATE ... IF NOT EXISTS`` statements)."""
        with self._lock:
            self._db.executescript(schema)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def query(self, sql: str, parameters=()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    @contextmanager
    def transaction(self):
        """An immediate transaction, committed durably (``synchronous=FULL``)."""
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
