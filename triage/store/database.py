"""The SQLite connection the store's modules share (``DATA/triage.db``).

One connection is shared by all threads behind a lock and every transaction is short. The
database runs in WAL mode and waits up to 10 s for a lock held by another process (the
``triage user`` command, a second reader). Only the modules of :mod:`triage.store` run
statements on it.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 10000


class Database:
    """The database file at ``path`` (created, with its folder, when missing); rows are
    :class:`sqlite3.Row`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, schema: str) -> None:
        """Run ``schema`` (``CREATE ... IF NOT EXISTS`` statements)."""
        with self._lock:
            self._db.executescript(schema)

    def add_missing_columns(self, migrations: tuple[tuple[str, str, str], ...]) -> None:
        """Run each (table, column, statement adding it) whose column the table lacks."""
        with self._lock:
            for table, column, statement in migrations:
                if column not in {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                    self._db.execute(statement)

    def rows(self, sql: str, parameters=()) -> list[sqlite3.Row]:
        """The rows of one statement (outside a transaction: a read)."""
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    @contextmanager
    def transaction(self, durable: bool = False):
        """An immediate transaction (yields the connection); ``durable`` commits with
        ``synchronous=FULL``, else ``NORMAL`` (durable across a crash of the process, not
        across a power cut)."""
        with self._lock:
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
