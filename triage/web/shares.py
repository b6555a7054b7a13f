"""Share links: read-only, expiring, revocable links to one study's viewer page for a remote
consultant without an account (``/share/<token>``).

An admin makes a link for one study (:meth:`Shares.create`, ``DEFAULT_HOURS`` unless told,
at most ``MAX_HOURS``); its token, ``secrets.token_urlsafe(TOKEN_BYTES)`` (256 random bits),
is returned once and only its SHA-256 is kept, so the database does not reveal live links. A
token is looked up by its hash and the stored hash compared in constant time
(:func:`hmac.compare_digest`). :meth:`Shares.check` grants the link's study while the link is
neither expired nor revoked; every check, granted or refused, is written to ``share_uses``
(:mod:`triage.store.shares`) with the client address and what was read. The log names links by
their id only, never by token. Times are POSIX seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import re
import secrets
import time
from dataclasses import dataclass

from triage.base.errors import InputError
from triage.store.jobs import JobStore
from triage.store.shares import ShareStore

log = logging.getLogger("triage.web")

DEFAULT_HOURS = 24.0
MAX_HOURS = 7 * 24.0
TOKEN_BYTES = 32
MAX_NOTE_LENGTH = 200
MAX_WHAT_LENGTH = 300
TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")
REFUSALS = {
    "unknown": (404, "This share link is not known: check that it was copied whole, or ask for a new one."),
    "expired": (410, "This share link has expired: ask the sender for a new one."),
    "revoked": (410, "This share link was revoked: ask the sender for a new one."),
    "gone": (404, "The shared study is no longer on this node."),
}
"""Why a link is refused: (HTTP status, the one line the recipient reads)."""


class ShareRefused(Exception):
    """A token that grants nothing: ``outcome`` (a key of :data:`REFUSALS`), its HTTP
    ``status`` and the message."""

    def __init__(self, outcome: str):
        self.outcome = outcome
        self.status, message = REFUSALS[outcome]
        super().__init__(message)


@dataclass(frozen=True)
class Grant:
    """What a valid token grants: the link's ``id``, its study and when it expires."""

    link_id: int
    study_id: str
    expires_at: float


def link_state(link: dict, now: float) -> str:
    """``active``, ``expired`` or ``revoked`` (revoked wins) at ``now``."""
    if link["revoked_at"] is not None:
        return "revoked"
    return "expired" if link["expires_at"] <= now else "active"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Shares:
    """The share links and their uses in the node's database, through its job store."""

    def __init__(self, store: JobStore):
        self._tables = ShareStore(store)

    def create(self, study_id: str, created_by: str, hours: float = DEFAULT_HOURS,
               note: str | None = None) -> tuple[str, dict]:
        """A new link to ``study_id`` valid for ``hours``: (its token, shown only now; the link
        with its ``state``). InputError for hours outside (0, ``MAX_HOURS``] or a long note."""
        if not 0 < hours <= MAX_HOURS:
            raise InputError(f"a share link lasts more than 0 and at most {MAX_HOURS:g} hours, not {hours:g}")
        note = (note or "").strip() or None
        if note is not None and len(note) > MAX_NOTE_LENGTH:
            raise InputError(f"the note has {len(note)} characters; at most {MAX_NOTE_LENGTH}")
        token, now = secrets.token_urlsafe(TOKEN_BYTES), time.time()
        link = self._tables.add_link(_digest(token), study_id, created_by, now, now + hours * 3600.0, note)
        log.info("user %s made share link %d to study %s, valid for %g h", created_by, link["id"], study_id, hours)
        return token, self._with_state(link, now)

    def links(self, study_id: str) -> list[dict]:
        """The study's links with their ``state``, the newest first."""
        now = time.time()
        return [self._with_state(link, now) for link in self._tables.links_of(study_id)]

    def link(self, link_id: int, study_id: str) -> dict | None:
        """The link ``link_id`` if it is one of ``study_id``'s, with its ``state``."""
        link = self._tables.link(link_id)
        return self._with_state(link, time.time()) if link and link["study_id"] == study_id else None

    def revoke(self, link: dict, by: str) -> dict:
        """Revoke ``link`` (a revoked one stays as it was); the link as it is now."""
        if self._tables.revoke(link["id"], by, time.time()):
            log.info("user %s revoked share link %d to study %s", by, link["id"], link["study_id"])
        return self._with_state(self._tables.link(link["id"]), time.time())

    def check(self, token: str, client: str, what: str) -> Grant:
        """What ``token`` grants, its use recorded with ``client`` and ``what`` (the URL after
        the token); :class:`ShareRefused`, recorded too, when it grants nothing."""
        now, what = time.time(), what[:MAX_WHAT_LENGTH]
        found = self._tables.link_by_hash(_digest(token)) if TOKEN.fullmatch(token) else None
        if found is None or not hmac.compare_digest(found[0], _digest(token)):
            self._tables.add_use(now, None, None, client, what, "unknown")
            log.warning("unknown share link used from %s", client)
            raise ShareRefused("unknown")
        link = found[1]
        state = link_state(link, now)
        if state != "active":
            self._tables.add_use(now, link["id"], link["study_id"], client, what, state)
            log.warning("%s share link %d to study %s used from %s", state, link["id"], link["study_id"], client)
            raise ShareRefused(state)
        return Grant(link["id"], link["study_id"], link["expires_at"])

    def record(self, grant: Grant, client: str, what: str, outcome: str = "read") -> None:
        """Write a granted request's use (``read``, or ``gone`` when the study was not found)."""
        self._tables.add_use(time.time(), grant.link_id, grant.study_id, client, what[:MAX_WHAT_LENGTH], outcome)

    def uses(self, limit: int, link_id: int | None = None, study_id: str | None = None) -> list[dict]:
        """The newest ``limit`` uses, granted or refused (of one link; of one study's links)."""
        return self._tables.uses(limit, link_id, study_id)

    @staticmethod
    def _with_state(link: dict, now: float) -> dict:
        return {**link, "state": link_state(link, now)}


def refusal_page(reason: str) -> str:
    """The HTML page a browser is shown for a refused link: the ``reason`` (one line of
    :data:`REFUSALS`) and the research-use statement."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Share link refused – stroke-triage</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/viewer.css">
</head>
<body>
<p class="ruo">Research use only — not for clinical decisions</p>
<header class="bar"><span class="brand">stroke-triage</span></header>
<main class="narrow" id="share-refused">
  <h1>Shared study not available</h1>
  <p class="card error" role="alert">{html.escape(reason)}</p>
</main>
<footer>CT perfusion triage software that is not clinically validated and is not a medical device.</footer>
</body>
</html>
"""
