"""Delivery of the alerts in the ``outbox`` table: one HTTP POST per message until it succeeds.

A message (written by :mod:`triage.node.alerts` with the result it announces) is POSTed to its URL
with its idempotency key in the ``Idempotency-Key`` header and a fresh signature
(``X-Triage-Signature``, :func:`triage.node.alerts.sign`) at each attempt. Any 2xx answer delivers
it. Anything else (no connection, a timeout of ``POST_TIMEOUT_S``, a 3xx — redirects are not
followed —, 4xx or 5xx) is retried after 1, 2, 4, ... s capped at ``BACKOFF_CAP_S``, each delay
plus up to ``JITTER`` of itself at random, until the message's ``expires_at``: it is then
``expired`` with an error line in the log. A 4xx other than 408 and 429 is retried as well,
since the usual causes (a wrong secret or URL at the receiver, an endpoint being deployed) are
fixed at the receiver's end while the alert is still worth having; its log line says so at
error level.

The state is in the job store: after a restart the pending messages are picked up again, and a
message that was being sent when the node died is sent again with the same key (the receiver
keeps one copy). Several processes may deliver from one store: each message is leased to the
one that took it (:meth:`~triage.store.outbox.OutboxStore.due`) until its attempt ends. Log
lines name the endpoint by scheme, host and port only: a webhook's path or query may hold a
token. Each endpoint has a delivery thread of its own (:class:`Deliverer` with its
``url``), which sends its messages in the order they are due: an endpoint that does not answer
delays none of the others.

The chat and e-mail channels (:mod:`triage.node.channels`) are delivered the same way: Slack's
and Teams' payloads are POSTed to their webhooks and Telegram's to the Bot API's
``sendPhoto`` and ``sendMessage`` (without the webhooks' signature, which those services do not check; a 2xx
answer delivers), and an e-mail is sent over SMTP (:mod:`triage.node.smtp`): accepted by the
server delivers it; a 4xx reply or no connection is retried; a 5xx reply (refused) is retried
too, until it expires, logged at error level like a refused webhook.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from smtplib import SMTPRecipientsRefused, SMTPResponseException

from triage.base.errors import one_line
from triage.base.http import USER_AGENT
from triage.base.http import post as http_post
from triage.node.alerts import SIGNATURE_HEADER, sign, where
from triage.node.channels import Channels, photo_form
from triage.node.smtp import send_email
from triage.store.jobs import JobStore
from triage.store.outbox import OutboxRow, OutboxStore

log = logging.getLogger("triage.node.alerts")

POST_TIMEOUT_S = 10.0
BACKOFF_START_S = 1.0
BACKOFF_CAP_S = 300.0
JITTER = 0.25                # each delay is lengthened by up to this fraction, at random
IDLE_WAIT_S = 0.5            # the longest the thread sleeps between looks at the outbox
CONTENT_TYPES = {"json": "application/json", "fhir": "application/fhir+json"}
RETRIED_4XX = (408, 429)     # the 4xx answers that mean "later", not "refused"
TELEGRAM_METHODS = {"telegram": "sendMessage", "telegram_photo": "sendPhoto"}
REFUSED_HINTS = {            # what to check when a message is refused, by format
    "json": "check the URL and the webhook secret at the receiver",
    "fhir": "check the URL and the webhook secret at the receiver",
    "slack": "check the Slack webhook URL (slack_webhook)",
    "teams": "check the Teams webhook URL (teams_webhook)",
    "telegram": "check the bot token and the chat id (telegram_bot_token_file, telegram_chat_id)",
    "telegram_photo": "check the bot token and the chat id (telegram_bot_token_file, telegram_chat_id)",
    "email": "check the addresses and the SMTP account (email_to, email_from, smtp_user)",
}


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: the ``answer`` (e.g. ``HTTP 200``, ``SMTP 451``; None when none
    came), the ``error`` (None: delivered) and whether it was ``refused`` (an answer that will
    not change by itself: HTTP 4xx but 408 and 429, SMTP 5xx)."""

    answer: str | None
    error: str | None = None
    refused: bool = False


def backoff(attempts: int, rng=random.random) -> float:
    """Seconds before attempt ``attempts + 1``: 1, 2, 4, ... capped at BACKOFF_CAP_S, plus up
    to JITTER of it at random (``rng()`` in [0, 1))."""
    delay = min(BACKOFF_CAP_S, BACKOFF_START_S * 2.0 ** min(max(0, attempts - 1), 30))
    return delay * (1.0 + JITTER * rng())


class Deliverer:
    """The thread body that drains the outbox of ``store`` (the messages to ``url``, or all),
    signing the webhooks' with ``secret`` and sending the chat and e-mail messages with the
    credentials of ``channels``, until ``stopping`` is set. :meth:`notify` after writing
    messages delivers them at once."""

    def __init__(self, store: JobStore, secret: bytes, stopping: threading.Event, url: str | None = None,
                 channels: Channels = Channels()):
        self.outbox = OutboxStore(store)
        self.secret = secret
        self.url = url
        self.channels = channels
        self._stopping = stopping
        self._wake = threading.Event()

    def notify(self) -> None:
        self._wake.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # a notify from here on ends the wait below
            try:
                row = self.outbox.due(time.time(), self.url)
                if row is not None:
                    self.deliver(row)
                    continue
                due = self.outbox.next_due(self.url)
            except Exception as exc:  # the database busy or closing: one failed look, not the thread
                log.error("alert delivery: %s; retrying", one_line(exc, 300, with_type=True))
                due = None
            wait = IDLE_WAIT_S if due is None else min(IDLE_WAIT_S, max(0.0, due - time.time()))
            self._wake.wait(wait)

    def deliver(self, row: OutboxRow) -> None:
        """One attempt at ``row``, its outcome recorded and logged."""
        what = (f"{row.kind} alert ({row.format}) of series {row.series_uid} generation "
                f"{row.generation} to {where(row.url)}")
        if time.time() >= row.expires_at:
            self._expire(row, what, row.last_error or "not attempted", attempted=False)
            return
        outcome = self._email(row) if row.format == "email" else self._post(row)
        now, error = time.time(), outcome.error
        attempt = row.attempts + 1
        if error is None:
            self.outbox.delivered(row.id, now)
            log.info("%s delivered (attempt %d, %s, %.1f s after it was written)", what, attempt,
                     outcome.answer, now - row.created_at)
        elif now >= row.expires_at:
            self._expire(row, what, error, attempted=True)
        else:
            delay = backoff(attempt)
            self.outbox.retry(row.id, error, min(now + delay, row.expires_at))
            if outcome.refused:
                log.error("%s refused: %s (attempt %d); %s; retry in %.0f s until it expires", what, error,
                          attempt, REFUSED_HINTS[row.format], delay)
            else:
                log.warning("%s not delivered: %s (attempt %d); retry in %.0f s", what, error, attempt, delay)

    def _post(self, row: OutboxRow) -> Outcome:
        """One POST of ``row``: to its webhook, or to the Telegram Bot API's sendMessage (or
        sendPhoto, the form made now with the picture)."""
        url, body, headers = row.url, row.body, self._headers(row)
        if row.format in TELEGRAM_METHODS:
            if self.channels.telegram is None:
                return Outcome(None, "Telegram is not configured (telegram_bot_token_file)")
            url = self.channels.telegram.method_url(TELEGRAM_METHODS[row.format])
            if row.format == "telegram_photo":
                body, headers["Content-Type"] = photo_form(json.loads(row.body))
        try:
            status, reason = post(url, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(None, one_line(exc, 200, with_type=isinstance(exc, http.client.HTTPException)))
        if 200 <= status < 300:
            return Outcome(f"HTTP {status}")
        return Outcome(f"HTTP {status}", f"HTTP {status} {reason}".strip(),
                       refused=400 <= status < 500 and status not in RETRIED_4XX)

    def _email(self, row: OutboxRow) -> Outcome:
        """One SMTP transaction of ``row``; recipients refused while others accepted it are
        logged, not tried again (those who have it would get it twice)."""
        if self.channels.email is None:
            return Outcome(None, "e-mail is not configured (email_to)")
        try:
            refused = send_email(json.loads(row.body), self.channels.email)
        except SMTPRecipientsRefused as exc:  # every recipient: the codes are per recipient
            codes = sorted({code for code, _ in exc.recipients.values()})
            return Outcome(f"SMTP {codes[0]}", f"SMTP {codes[0]}: every recipient refused",
                           refused=codes[0] >= 500)
        except SMTPResponseException as exc:
            message = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            return Outcome(f"SMTP {exc.smtp_code}", " ".join(f"SMTP {exc.smtp_code} {message}".split())[:200],
                           refused=exc.smtp_code >= 500)
        except OSError as exc:  # no connection, no STARTTLS, a bad certificate, a timeout
            return Outcome(None, one_line(exc, 200, with_type=True))
        if refused:
            log.error("%s alert of series %s: the SMTP server refused %d recipient(s): %s", row.kind,
                      row.series_uid, len(refused), ", ".join(refused))
        return Outcome("accepted by the SMTP server")

    def _expire(self, row: OutboxRow, what: str, error: str, *, attempted: bool) -> None:
        self.outbox.expire(row.id, error, attempted=attempted)
        log.error("%s expired undelivered after %d attempt(s) over %.1f h: %s", what,
                  row.attempts + int(attempted), (time.time() - row.created_at) / 3600, error)

    def _headers(self, row: OutboxRow) -> dict[str, str]:
        headers = {"Content-Type": CONTENT_TYPES.get(row.format, "application/json; charset=utf-8"),
                   "Idempotency-Key": row.key, "User-Agent": USER_AGENT}
        if row.format in CONTENT_TYPES:  # the webhooks' messages: signed
            headers[SIGNATURE_HEADER] = sign(self.secret, row.body)
        return headers


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = POST_TIMEOUT_S) -> tuple[int, str]:
    """POST ``body`` to ``url``; the answer's status and reason (see :func:`triage.base.http.post`:
    no redirects, Basic authentication from ``user:password@``, https verified against the
    system's CAs). Raises OSError or HTTPException when no answer came."""
    answer = http_post(url, body, headers, timeout=timeout)
    return answer.status, answer.reason
