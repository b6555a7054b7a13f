"""The web API's share-link tables in the node's database, beside the account tables.

Tables (created when :class:`ShareStore` is first made on a database)
----------------------------------------------------------------------
``share_links``
    One row per link an admin made: ``id``, ``token_hash`` (SHA-256 of the link's token, hex;
    the token itself is never stored), ``study_id`` (the API's study id), ``created_by``,
    ``created_at``, ``expires_at``, ``revoked_at`` and ``revoked_by`` (NULL while not revoked)
    and ``note`` (who it is for, as the admin wrote it, or NULL).
``share_uses``
    One row per request made with a link's token, granted or refused: ``at``, ``link_id``
    (NULL for a token that matches no link), ``study_id``, ``client`` (address), ``what`` (the
    part of the URL after the token, e.g. ``study/maps/cbf/3.png?generation=1``; never the
    token) and ``outcome``: ``read`` (answered), ``expired``, ``revoked``, ``unknown`` (no
    such link) or ``gone`` (the study is no longer on the node).

The token, its hashing and the rules (expiry, refusal) are :mod:`triage.web.shares`'; here are
the rows. Times are POSIX seconds.
"""

from __future__ import annotations

from triage.store.jobs import JobStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS share_links (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL UNIQUE,
    study_id TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at REAL,
    revoked_by TEXT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS share_links_by_study ON share_links (study_id, created_at);
CREATE TABLE IF NOT EXISTS share_uses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    link_id INTEGER,
    study_id TEXT,
    client TEXT,
    what TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS share_uses_by_link ON share_uses (link_id, at);
"""

# A link with how often and when it was last used to read (refusals not counted).
_LINK_SQL = """
SELECT l.id, l.study_id, l.created_by, l.created_at, l.expires_at, l.revoked_at, l.revoked_by, l.note,
       (SELECT count(*) FROM share_uses u WHERE u.link_id = l.id AND u.outcome = 'read') AS uses,
       (SELECT max(at) FROM share_uses u WHERE u.link_id = l.id AND u.outcome = 'read') AS last_used_at
FROM share_links l
"""


class ShareStore:
    """The share-link tables of a :class:`~triage.store.jobs.JobStore`'s database (its
    connection and lock), created when missing. A link is a dict of the ``share_links``
    columns but ``token_hash``, with ``uses`` and ``last_used_at`` (None: never used)."""

    def __init__(self, store: JobStore):
        self._database = store._database
        self._database.create(SCHEMA)

    def add_link(self, token_hash: str, study_id: str, created_by: str, created_at: float, expires_at: float,
                 note: str | None) -> dict:
        """Keep a new link; the link."""
        with self._database.transaction(durable=True) as db:
            db.execute("INSERT INTO share_links (token_hash, study_id, created_by, created_at, expires_at, note) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (token_hash, study_id, created_by, created_at, expires_at, note))
            (link_id,) = db.execute("SELECT id FROM share_links WHERE token_hash = ?", (token_hash,)).fetchone()
        return self.link(link_id)

    def link(self, link_id: int) -> dict | None:
        rows = self._database.rows(_LINK_SQL + " WHERE l.id = ?", (link_id,))
        return dict(rows[0]) if rows else None

    def link_by_hash(self, token_hash: str) -> tuple[str, dict] | None:
        """The stored hash and the link whose token hashes to ``token_hash``, or None."""
        rows = self._database.rows("SELECT id, token_hash FROM share_links WHERE token_hash = ?", (token_hash,))
        return (rows[0]["token_hash"], self.link(rows[0]["id"])) if rows else None

    def links_of(self, study_id: str) -> list[dict]:
        """The study's links, the newest first."""
        rows = self._database.rows(_LINK_SQL + " WHERE l.study_id = ? ORDER BY l.id DESC", (study_id,))
        return [dict(row) for row in rows]

    def revoke(self, link_id: int, by: str, at: float) -> bool:
        """Mark the link revoked (once: a revoked link keeps its first revocation); False when it
        was revoked already."""
        with self._database.transaction(durable=True) as db:
            return db.execute("UPDATE share_links SET revoked_at = ?, revoked_by = ? "
                              "WHERE id = ? AND revoked_at IS NULL", (at, by, link_id)).rowcount == 1

    def add_use(self, at: float, link_id: int | None, study_id: str | None, client: str | None, what: str,
                outcome: str) -> None:
        with self._database.transaction(durable=True) as db:
            db.execute("INSERT INTO share_uses (at, link_id, study_id, client, what, outcome) VALUES (?, ?, ?, ?, ?, ?)",
                       (at, link_id, study_id, client, what, outcome))

    def uses(self, limit: int, link_id: int | None = None, study_id: str | None = None) -> list[dict]:
        """The newest ``limit`` uses (of one link, of one study's links), newest first."""
        conditions, parameters = [], []
        for column, value in (("link_id", link_id), ("study_id", study_id)):
            if value is not None:
                conditions.append(f"{column} = ?")
                parameters.append(value)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._database.rows(f"SELECT * FROM share_uses{where} ORDER BY id DESC LIMIT ?", (*parameters, limit))
        return [dict(row) for row in rows]
