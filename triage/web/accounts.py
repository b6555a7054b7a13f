"""Users, API tokens, browser sessions and the audit log, in the node's SQLite database.

Here are the rules (roles, password hashing, session length, login throttling); the rows are in
the tables ``users``, ``api_tokens``, ``sessions`` and ``audit``, described in
:mod:`triage.store.accounts`.

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
from triage.store.accounts import AccountStore
from triage.store.jobs import JobStore

ROLES = ("viewer", "admin")
SESSION_HOURS = 12.0
LOGIN_WINDOW_S = 300.0
MAX_FAILED_LOGINS = 5      # per user name within LOGIN_WINDOW_S
MAX_FAILED_PER_CLIENT = 20  # per client address (many users may share a proxy's address)
MIN_PASSWORD_LENGTH = 8
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


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
    """The users, tokens, sessions and audit log in the node's database (``DATA/triage.db``),
    through its job store."""

    def __init__(self, store: JobStore):
        self.store = store
        self._tables = AccountStore(store)

    @classmethod
    def open(cls, path: Path) -> "Accounts":
        """The accounts of the database at ``path`` (a SQLite file, or a hub's PostgreSQL URL; for
        the ``triage user`` command)."""
        return cls(JobStore(path))

    def close(self) -> None:
        self.store.close()

    # Users (the ``triage user`` command)

    def add_user(self, username: str, role: str, password: str) -> None:
        """Add a user; InputError for a bad name, role or short password, or a taken name."""
        if not USERNAME.fullmatch(username):
            raise InputError(f"user name {username!r}: use 1 to 64 letters, digits and . _ @ -")
        if role not in ROLES:
            raise InputError(f"role {role!r}: must be one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise InputError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
        if not self._tables.add_user(username, role, hash_password(password), time.time()):
            raise InputError(f"user {username} exists already (remove it first)")

    def remove_user(self, username: str) -> None:
        """Remove a user with their tokens and sessions; InputError if there is none."""
        if not self._tables.remove_user(username):
            raise InputError(f"no user {username}")

    def users(self) -> list[dict]:
        """Each user with role, creation time and number of API tokens, by name."""
        return self._tables.users()

    def new_token(self, username: str) -> str:
        """A new API token of ``username`` (only its hash is kept: this is the one chance to
        read it)."""
        token = secrets.token_urlsafe(32)
        if not self._tables.add_token(_digest(token), username, time.time()):
            raise InputError(f"no user {username}")
        return token

    # Credentials

    def check_login(self, username: str, password: str) -> User | None:
        """The user whose password this is, else None (an unknown name costs the same time)."""
        found = self._tables.password(username)
        stored = found[1] if found else _unknown_user_hash()
        if check_password(password, stored) and found:
            return User(username, found[0])
        return None

    def throttled(self, username: str, client: str) -> bool:
        """Whether ``MAX_FAILED_LOGINS`` failed logins for this name, or
        ``MAX_FAILED_PER_CLIENT`` from this client address, happened in the last
        ``LOGIN_WINDOW_S`` (the audit log counts them, so the limit holds across restarts)."""
        by_name, by_client = self._tables.failed_logins(username, client, time.time() - LOGIN_WINDOW_S)
        return by_name >= MAX_FAILED_LOGINS or by_client >= MAX_FAILED_PER_CLIENT

    def new_session(self, user: User) -> tuple[str, float]:
        """A new session id for ``user`` and when it expires; expired sessions are dropped."""
        session_id, now = secrets.token_urlsafe(32), time.time()
        expires = now + SESSION_HOURS * 3600.0
        self._tables.add_session(_digest(session_id), user.username, now, expires)
        return session_id, expires

    def end_session(self, session_id: str) -> None:
        self._tables.remove_session(_digest(session_id))

    def session_user(self, session_id: str) -> User | None:
        """The user of an unexpired session."""
        found = self._tables.session_user(_digest(session_id), time.time())
        return User(*found) if found else None

    def token_user(self, token: str) -> User | None:
        """The user of an API token (its last use is recorded, to the minute)."""
        digest, now = _digest(token), time.time()
        found = self._tables.token_user(digest)
        if found is None:
            return None
        username, role, last_used_at = found
        if last_used_at is None or now - last_used_at > 60.0:
            self._tables.token_used(digest, now)
        return User(username, role)

    # Audit log

    def audit(self, username: str, action: str, *, target: str | None = None, client: str | None = None,
              detail: str | None = None) -> None:
        self._tables.add_audit(time.time(), username, action, target, client, detail)

    def audit_log(self, limit: int = 500, action: str | None = None) -> list[dict]:
        """The newest ``limit`` audit rows (of ``action``), newest first."""
        return self._tables.audit_rows(limit, action)
