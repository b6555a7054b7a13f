"""A mail server for tests: aiosmtpd's SMTP server on a loopback port, with STARTTLS and login.

It requires STARTTLS before MAIL (with ``tls`` = (certificate, key) PEM files) and, with
``login`` = (user, password), authentication; it records every message it accepted (envelope
sender, recipients, raw content, whether the session was over TLS) and answers each DATA with
the next reply of ``answers`` (then ``250 OK``): ``MailServer(answers=["451 4.3.0 later"])``
defers the first message.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.support import peers


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: list[str]
    content: bytes          # the message as received (RFC 5322 bytes)
    over_tls: bool
    reply: str              # what the server answered the DATA


class MailServer:
    """``with MailServer(tls=(cert, key)) as server:`` serves SMTP on 127.0.0.1:``server.port``
    in a thread; ``server.mails`` in arrival order (accepted or not: see ``Mail.reply``)."""

    def __init__(self, tls: tuple[Path, Path], login: tuple[str, str] | None = None, answers: list[str] = ()):
        self.port = peers.free_port()
        self.answers = list(answers)
        self.mails: list[Mail] = []
        self._tls, self._login = tls, login
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def __enter__(self) -> "MailServer":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*map(str, self._tls))
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, tls_context=context,
                                      require_starttls=True, auth_required=self._login is not None,
                                      authenticator=self._authenticate if self._login else None)
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd's handler hook
        with self._lock:
            reply = self.answers.pop(0) if self.answers else "250 OK"
            self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                                   session.ssl is not None, reply))
        return reply

    def accepted(self) -> list[Mail]:
        return [mail for mail in self.mails if mail.reply.startswith("250")]

    def wait_for_accepted(self, count: int, timeout: float = 60.0) -> list[Mail]:
        deadline = time.monotonic() + timeout
        while len(self.accepted()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.accepted())} of {count} mails accepted after {timeout} s")
            time.sleep(0.05)
        return self.accepted()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        user, password = self._login
        ok = auth_data.login == user.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)
