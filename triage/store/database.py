"""The database connection the store's modules share: a SQLite file (``DATA/triage.db``, the
node's default) or a PostgreSQL database several processes share (a hub's).

:func:`open_database` chooses the backend by what it is given: a path opens
:class:`SqliteDatabase`, a ``postgresql://`` (or ``postgres://``) URL
:class:`~triage.store.postgres.PostgresDatabase`. Both have one interface: ``create(schema)``,
``add_missing_columns(migrations)``, ``rows(sql, parameters)`` (a read), ``transaction(durable)``
(a write transaction, yielding what runs its statements: ``execute`` and ``executemany``, whose
cursors have ``fetchone``, ``fetchall``, ``rowcount`` and iterate), ``close()``; rows answer to
``row["name"]``, ``row[0]``, ``dict(row)`` and ``Cls(**row)``. The statements are written once,
with ``?`` placeholders, in the dialect both share. ``skip_locked`` is the clause that ends a
``SELECT`` picking a row to claim (empty for SQLite, whose write transactions exclude each
other already).

One connection is shared by all threads behind a lock and every transaction is short. The
SQLite database runs in WAL mode and waits up to 10 s for a lock held by another process (the
``triage user`` command, a second reader). Only the modules of :mod:`triage.store` run
statements on it.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

import psycopg

from triage.store.postgres import DatabaseUnreachable, PostgresConnection, PostgresDatabase  # noqa: F401 (API)

BUSY_TIMEOUT_MS = 10000
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

DatabaseError = (sqlite3.Error, psycopg.Error)
"""What a failing database raises, for ``except DatabaseError``: one of SQLite's or psycopg's
errors (a PostgreSQL database that cannot be opened: :class:`DatabaseUnreachable`, one line)."""


def is_postgres_url(target: Path | str) -> bool:
    """Whether ``target`` names a PostgreSQL database (a URL) rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def open_database(target: Path | str) -> SqliteDatabase | PostgresDatabase:
    """The database at ``target``: a PostgreSQL URL, else the path of a SQLite file."""
    return PostgresDatabase(target) if is_postgres_url(target) else SqliteDatabase(Path(target))


class SqliteDatabase:
    """The database file at ``path`` (created, with its folder, when missing); rows are
    :class:`sqlite3.Row`."""

    is_postgres = False
    skip_locked = ""

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


Connection = sqlite3.Connection | PostgresConnection
"""What a transaction yields, by backend."""
