"""Users, API tokens, browser sessions and the audit log, in the node's SQLite database.

Tables (created when missing)
-----------------------------
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
    ``login_failed``, ``logout``, ``open_study``, ``reprocess``), ``target`` (a study id), the
    client address and a ``detail`` text. No patient information is written.

Secrets are compared by their hashes (:func:`hmac.compare_digest` for passwords); the database
never holds a password, token or session id in clear. Times are POSIX seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from triage.base.errors import InputError
from triage.store.jobs import JobStore

ROLES = ("viewer", "admin")
SESSION_HOURS = 12.0
LOGIN_WINDOW_S = 300.0
MAX_FAILED_LOGINS = 5      # per user name within LOGIN_WINDOW_S
MAX_FAILED_PER_CLIENT = 20  # per client address (many users may share a proxy's address)
MIN_PASSWORD_LENGTH = 8
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")

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


@dataclass(frozen=True)
class User:
    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$<salt hex>$<hash hex>`` of ``password`` (a new 16-byte salt by default)."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` hashes to ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        computed = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                                  p=int(p), dklen=len(digest) // 2)
    except ValueError:
        return False
    return scheme == "scrypt" and hmac.compare_digest(computed.hex(), digest)


@cache
def _unknown_user_hash() -> str:
    """A hash to check a password against for an unknown user name (the same work as a known one)."""
    return hash_password(secrets.token_hex(16))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Accounts:
    """The account tables in the node's database (``DATA/triage.db``), through its job store."""

    def __init__(self, db: JobStore):
        self.db = db
        db.create_tables(SCHEMA)

    @classmethod
    def open(cls, path: Path) -> "Accounts":
        """The accounts of the database file at ``path`` (for the ``triage user`` command)."""
        return cls(JobStore(path))

    def close(self) -> None:
        self.db.close()

    # Users (the ``triage user`` command)

    def add_user(self, username: str, role: str, password: str) -> None:
        """Add a user; InputError for a bad name, role or short password, or a taken name."""
        if not USERNAME.fullmatch(username):
            raise InputError(f"user name {username!r}: use 1 to 64 letters, digits and . _ @ -")
        if role not in ROLES:
            raise InputError(f"role {role!r}: must be one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise InputError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
        with self.db.transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                raise InputError(f"user {username} exists already (remove it first)")
            db.execute("INSERT INTO users (username, role, password, created_at) VALUES (?, ?, ?, ?)",
                       (username, role, hash_password(password), time.time()))

    def remove_user(self, username: str) -> None:
        """Remove a user with their tokens and sessions; InputError if there is none."""
        with self.db.transaction() as db:
            if db.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount != 1:
                raise InputError(f"no user {username}")
            db.execute("DELETE FROM api_tokens WHERE username = ?", (username,))
            db.execute("DELETE FROM sessions WHERE username = ?", (username,))

    def users(self) -> list[dict]:
        """Each user with role, creation time and number of API tokens, by name."""
        rows = self.db.query("SELECT u.username, u.role, u.created_at, count(t.token_hash) AS tokens "
                             "FROM users u LEFT JOIN api_tokens t ON t.username = u.username "
                             "GROUP BY u.username ORDER BY u.username")
        return [dict(row) for row in rows]

    def new_token(self, username: str) -> str:
        """A new API token of ``username`` (only its hash is kept: this is the one chance to
        read it)."""
        token = secrets.token_urlsafe(32)
        with self.db.transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone() is None:
                raise InputError(f"no user {username}")
            db.execute("INSERT INTO api_tokens (token_hash, username, created_at) VALUES (?, ?, ?)",
                       (_digest(token), username, time.time()))
        return token

    # Credentials

    def check_login(self, username: str, password: str) -> User | None:
        """The user whose password this is, else None (an unknown name costs the same time)."""
        rows = self.db.query("SELECT username, role, password FROM users WHERE username = ?", (username,))
        stored = rows[0]["password"] if rows else _unknown_user_hash()
        if check_password(password, stored) and rows:
            return User(rows[0]["username"], rows[0]["role"])
        return None

    def throttled(self, username: str, client: str) -> bool:
        """Whether ``MAX_FAILED_LOGINS`` failed logins for this name, or
        ``MAX_FAILED_PER_CLIENT`` from this client address, happened in the last
        ``LOGIN_WINDOW_S`` (the audit log counts them, so the limit holds across restarts)."""
        rows = self.db.query("SELECT sum(username = ?), sum(client = ?) FROM audit "
                             "WHERE action = 'login_failed' AND at > ?",
                             (username, client, time.time() - LOGIN_WINDOW_S))
        by_name, by_client = (value or 0 for value in rows[0])
        return by_name >= MAX_FAILED_LOGINS or by_client >= MAX_FAILED_PER_CLIENT

    def new_session(self, user: User) -> tuple[str, float]:
        """A new session id for ``user`` and when it expires; expired sessions are dropped."""
        session_id, now = secrets.token_urlsafe(32), time.time()
        expires = now + SESSION_HOURS * 3600.0
        with self.db.transaction() as db:
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            db.execute("INSERT INTO sessions (session_hash, username, created_at, expires_at) "
                       "VALUES (?, ?, ?, ?)", (_digest(session_id), user.username, now, expires))
        return session_id, expires

    def end_session(self, session_id: str) -> None:
        with self.db.transaction() as db:
            db.execute("DELETE FROM sessions WHERE session_hash = ?", (_digest(session_id),))

    def session_user(self, session_id: str) -> User | None:
        """The user of an unexpired session."""
        rows = self.db.query("SELECT u.username, u.role FROM sessions s JOIN users u ON u.username = "
                             "s.username WHERE s.session_hash = ? AND s.expires_at > ?",
                             (_digest(session_id), time.time()))
        return User(rows[0]["username"], rows[0]["role"]) if rows else None

    def token_user(self, token: str) -> User | None:
        """The user of an API token (its last use is recorded, to the minute)."""
        digest, now = _digest(token), time.time()
        rows = self.db.query("SELECT u.username, u.role, t.last_used_at FROM api_tokens t JOIN users u "
                             "ON u.username = t.username WHERE t.token_hash = ?", (digest,))
        if not rows:
            return None
        if rows[0]["last_used_at"] is None or now - rows[0]["last_used_at"] > 60.0:
            with self.db.transaction() as db:
                db.execute("UPDATE api_tokens SET last_used_at = ? WHERE token_hash = ?", (now, digest))
        return User(rows[0]["username"], rows[0]["role"])

    # Audit log

    def audit(self, username: str, action: str, *, target: str | None = None, client: str | None = None,
              detail: str | None = None) -> None:
        with self.db.transaction() as db:
            db.execute("INSERT INTO audit (at, username, action, target, client, detail) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (time.time(), username, action, target, client, detail))

    def audit_log(self, limit: int = 500, action: str | None = None) -> list[dict]:
        """The newest ``limit`` audit rows (of ``action``), newest first."""
        sql, parameters = "SELECT * FROM audit", []
        if action:
            sql += " WHERE action = ?"
            parameters.append(action)
        return [dict(row) for row in self.db.query(sql + " ORDER BY id DESC LIMIT ?", (*parameters, limit))]
