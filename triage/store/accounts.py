"""The web API's account tables in the node's database, beside the job store's tables.

Tables (created when :class:`AccountStore` is first made on a database)
------------------------------------------------------------------------
``users``
    ``username``, ``role`` (``viewer`` | ``admin``), ``password`` (``scrypt$n$r$p$salt$hash``,
    hex; a per-user random salt), ``created_at``.
``api_tokens``
    SHA-256 of each token (a token is 32 random bytes, shown once when made), its user,
    ``created_at`` and ``last_used_at``.
``sessions``
    SHA-256 of each session id (32 random bytes, the cookie's value), its user, ``created_at``
    and ``expires_at``.
``audit``
    ``at``, ``username`` (the name given, for a failed login), ``action`` (``login``,
    ``login_failed``, ``logout``, ``open_study``, ``reprocess``, ``share_create``,
    ``share_revoke``), ``target`` (a study id), the
    client address and a ``detail`` text. No patient information is written.

The hashing, the checks and the rules (roles, throttling, session length) are
:mod:`triage.web.accounts`'; here are the rows. Times are POSIX seconds.
"""

from __future__ import annotations

from triage.store.jobs import JobStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'admin')),
    password TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    client TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_action ON audit (action, at);
"""


class AccountStore:
    """The account tables of a :class:`~triage.store.jobs.JobStore`'s database (its connection
    and lock), created when missing."""

    def __init__(self, store: JobStore):
        self._database = store._database
        self._database.create(SCHEMA)

    # Users

    def add_user(self, username: str, role: str, password: str, created_at: float) -> bool:
        """Add a user with the hashed ``password``; False (nothing written) when the name is taken."""
        with self._database.transaction(durable=True) as db:
            if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                return False
            db.execute("INSERT INTO users (username, role, password, created_at) VALUES (?, ?, ?, ?)",
                       (username, role, password, created_at))
            return True

    def remove_user(self, username: str) -> bool:
        """Remove a user with their tokens and sessions; False when there is none."""
        with self._database.transaction(durable=True) as db:
            if db.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount != 1:
                return False
            db.execute("DELETE FROM api_tokens WHERE username = ?", (username,))
            db.execute("DELETE FROM sessions WHERE username = ?", (username,))
            return True

    def users(self) -> list[dict]:
        """``{"username", "role", "created_at", "tokens"}`` of each user (tokens: how many), by name."""
        rows = self._database.rows("SELECT u.username, u.role, u.created_at, count(t.token_hash) AS tokens "
                                   "FROM users u LEFT JOIN api_tokens t ON t.username = u.username "
                                   "GROUP BY u.username ORDER BY u.username")
        return [dict(row) for row in rows]

    def password(self, username: str) -> tuple[str, str] | None:
        """The user's role and stored password hash; None for an unknown name."""
        rows = self._database.rows("SELECT role, password FROM users WHERE username = ?", (username,))
        return (rows[0]["role"], rows[0]["password"]) if rows else None

    # API tokens

    def add_token(self, token_hash: str, username: str, created_at: float) -> bool:
        """Keep a new token's hash for ``username``; False (nothing written) when there is no such user."""
        with self._database.transaction(durable=True) as db:
            if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone() is None:
                return False
            db.execute("INSERT INTO api_tokens (token_hash, username, created_at) VALUES (?, ?, ?)",
                       (token_hash, username, created_at))
            return True

    def token_user(self, token_hash: str) -> tuple[str, str, float | None] | None:
        """The (username, role) of a token's user and when the token was last used (None: never)."""
        rows = self._database.rows("SELECT u.username, u.role, t.last_used_at FROM api_tokens t JOIN users u "
                                   "ON u.username = t.username WHERE t.token_hash = ?", (token_hash,))
        return (rows[0]["username"], rows[0]["role"], rows[0]["last_used_at"]) if rows else None

    def token_used(self, token_hash: str, at: float) -> None:
        with self._database.transaction(durable=True) as db:
            db.execute("UPDATE api_tokens SET last_used_at = ? WHERE token_hash = ?", (at, token_hash))

    # Sessions

    def add_session(self, session_hash: str, username: str, created_at: float, expires_at: float) -> None:
        """Keep a new session's hash; the sessions expired at ``created_at`` are dropped."""
        with self._database.transaction(durable=True) as db:
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (created_at,))
            db.execute("INSERT INTO sessions (session_hash, username, created_at, expires_at) "
                       "VALUES (?, ?, ?, ?)", (session_hash, username, created_at, expires_at))

    def remove_session(self, session_hash: str) -> None:
        with self._database.transaction(durable=True) as db:
            db.execute("DELETE FROM sessions WHERE session_hash = ?", (session_hash,))

    def session_user(self, session_hash: str, now: float) -> tuple[str, str] | None:
        """The (username, role) of a session's user, if the session has not expired at ``now``."""
        rows = self._database.rows("SELECT u.username, u.role FROM sessions s JOIN users u ON u.username = "
                                   "s.username WHERE s.session_hash = ? AND s.expires_at > ?",
                                   (session_hash, now))
        return (rows[0]["username"], rows[0]["role"]) if rows else None

    # Audit log

    def add_audit(self, at: float, username: str, action: str, target: str | None, client: str | None,
                  detail: str | None) -> None:
        with self._database.transaction(durable=True) as db:
            db.execute("INSERT INTO audit (at, username, action, target, client, detail) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (at, username, action, target, client, detail))

    def failed_logins(self, username: str, client: str, since: float) -> tuple[int, int]:
        """How many failed logins for ``username`` and how many from ``client`` were audited after ``since``."""
        rows = self._database.rows("SELECT sum(CASE WHEN username = ? THEN 1 ELSE 0 END), "
                                   "sum(CASE WHEN client = ? THEN 1 ELSE 0 END) FROM audit "
                                   "WHERE action = 'login_failed' AND at > ?", (username, client, since))
        by_name, by_client = (value or 0 for value in rows[0])
        return by_name, by_client

    def audit_rows(self, limit: int, action: str | None = None) -> list[dict]:
        """The newest ``limit`` audit rows (of ``action``, when given and not empty), newest first."""
        sql, parameters = "SELECT * FROM audit", []
        if action:
            sql += " WHERE action = ?"
            parameters.append(action)
        return [dict(row) for row in self._database.rows(sql + " ORDER BY id DESC LIMIT ?", (*parameters, limit))]
