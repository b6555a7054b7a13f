"""The e-mail channel's transport: an outbox ``email`` document sent over SMTP.

The document (:func:`triage.node.channels.payload`) becomes a MIME message when it is sent:
``multipart/mixed`` with the UTF-8 text (quoted-printable) and the summary picture as a PNG
attachment, the whole summary if its file exists then (in the result's announcement, else in
its folder; a folder removed by retention leaves the alert's 240 px thumbnail); headers in RFC 2047 encoding where
they are not ASCII. Its ``Message-ID`` is derived from the idempotency key, so that a copy sent
again (after a failed attempt or a restart) is the same message to a mail client.

The connection is upgraded with STARTTLS (the server's certificate and host name verified
against the system's CAs, or those named by ``SSL_CERT_FILE``) unless ``smtp_starttls`` is off;
a server that does not offer it is not sent anything. Login only over TLS.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate

from triage.node.channels import Email, summary_picture

SMTP_TIMEOUT_S = 20.0   # each connect, command and the message's transfer


def email_message(document: dict, sent_at: float | None = None) -> EmailMessage:
    """The MIME message of an outbox ``email`` document, dated ``sent_at`` (POSIX s; now when None)."""
    message = EmailMessage(policy=SMTP)
    message["From"] = document["from"]
    message["To"] = ", ".join(document["to"])
    message["Subject"] = document["subject"]
    message["Date"] = formatdate(sent_at, usegmt=True)
    message["Message-ID"] = document["message_id"]
    message.set_content(document["text"], charset="utf-8", cte="quoted-printable")
    picture = summary_picture(document)
    if picture is not None:
        message.add_attachment(picture, maintype="image", subtype="png", filename="summary.png")
    return message


def send_email(document: dict, email: Email, timeout: float = SMTP_TIMEOUT_S) -> list[str]:
    """Send the ``email`` document through the server of ``email``; the recipients the server
    refused (the others have the message). Raises an
    ``smtplib.SMTPException`` (an OSError), or another OSError, when it was not accepted: an
    ``SMTPResponseException`` has the server's code (4xx: try later; 5xx: refused)."""
    with smtplib.SMTP(email.host, email.port, timeout=timeout) as server:
        server.ehlo()
        if email.starttls:
            server.starttls(context=ssl.create_default_context())
            server.ehlo()
        if email.user:
            server.login(email.user, email.password)
        refused = server.send_message(email_message(document), from_addr=email.sender, to_addrs=document["to"])
    return sorted(refused)
