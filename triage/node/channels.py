"""Alert channels beyond the signed webhook: Slack, Microsoft Teams, Telegram and e-mail.

Each channel is an adapter from the JSON alert body (:mod:`triage.node.alerts`) to the payload
its service expects, written to the same outbox as the webhooks' messages (format ``slack``,
``teams``, ``telegram`` or ``email``, "url" the channel's *address*) and delivered by the same
retried, expiring :class:`triage.node.delivery.Deliverer`, one thread per address:

- ``slack``: a Slack incoming-webhook message, ``text`` (the notification's fallback) and
  Block Kit ``blocks`` (header, the facts as section fields, notes, a button to the viewer, the
  research-use statement as context), POSTed as JSON to ``slack_webhook``;
- ``teams``: a message with one Adaptive Card attachment (version 1.4: title, FactSet,
  notes, the statement, an ``Action.OpenUrl`` to the viewer), POSTed to ``teams_webhook``;
- ``telegram``: the Bot API's ``sendMessage`` JSON (``chat_id``, plain ``text``), POSTed to
  ``<telegram_api_url>/bot<token>/sendMessage``; before it, for a result, ``telegram_photo``:
  ``sendPhoto`` with the summary picture (``multipart/form-data``: ``chat_id``, a short
  ``caption``, the PNG as ``photo``, made when it is sent, like an e-mail). The address kept in
  the outbox is ``telegram_api_url``: the token is read from its file at start and never stored
  or logged;
- ``email``: a document (recipients, subject, text, the summary picture's path and thumbnail)
  that :mod:`triage.node.smtp` turns into a MIME message when it is sent, over SMTP with
  STARTTLS to ``smtp://<smtp_host>:<smtp_port>``.

The text comes from :func:`triage.node.alert_text.chat_message`, the same for every channel.
Research use only.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

from triage.base.errors import InputError
from triage.node.alert_text import ChatMessage, chat_message, email_subject, plain_text
from triage.settings import AlertSettings

TELEGRAM_TEXT_LIMIT = 4096      # characters of a sendMessage text
TELEGRAM_CAPTION_LIMIT = 1024   # characters of a sendPhoto caption
SLACK_HEADER_LIMIT = 150        # characters of a header block's plain text
SLACK_TEXT_LIMIT = 3000         # characters of a section's text
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.4"


@dataclass(frozen=True)
class Telegram:
    """A Telegram bot (``token``, never shown) and the chat it writes to, via ``api_url``."""

    api_url: str
    chat_id: str
    token: str = field(repr=False)

    def method_url(self, method: str) -> str:
        return f"{self.api_url}/bot{self.token}/{method}"


@dataclass(frozen=True)
class Email:
    """Recipients ``to`` and sender, and the SMTP server that takes the messages (port,
    STARTTLS, account; the ``password`` is never shown)."""

    to: tuple[str, ...]
    sender: str
    host: str
    port: int
    starttls: bool
    user: str
    password: str = field(repr=False)

    @property
    def address(self) -> str:
        return f"smtp://{self.host}:{self.port}"


@dataclass(frozen=True)
class Channels:
    """The configured channels (an empty string or None: not configured)."""

    slack: str = ""
    teams: str = ""
    telegram: Telegram | None = None
    email: Email | None = None

    def addresses(self) -> tuple[str, ...]:
        """Each configured channel's outbox address (its delivery thread's), once."""
        return tuple(dict.fromkeys(address for _, address, _ in self.targets()))

    def targets(self) -> list[tuple[str, str, str]]:
        """(format, address, identity) of each configured channel; the identity (the address
        with the chat or the recipients) goes into the messages' idempotency keys."""
        targets = [("slack", self.slack, self.slack), ("teams", self.teams, self.teams)]
        if self.telegram:
            chat = f"{self.telegram.api_url} {self.telegram.chat_id}"
            targets += [("telegram_photo", self.telegram.api_url, chat), ("telegram", self.telegram.api_url, chat)]
        if self.email:
            targets.append(("email", self.email.address, f"{self.email.address} {','.join(self.email.to)}"))
        return [target for target in targets if target[1]]


def channels_config(s: AlertSettings) -> Channels:
    """The channels of ``s``, checked: InputError (one line) for a URL that is not http(s), a
    Telegram token without a chat (or the other way round), an unreadable secret file, an
    address that is not one, and a password that would go over SMTP without TLS."""
    for name in ("slack_webhook", "teams_webhook", "telegram_api_url"):
        _check_url(name, getattr(s, name))
    telegram = None
    if bool(s.telegram_bot_token_file) != bool(s.telegram_chat_id):
        raise InputError("telegram_bot_token_file and telegram_chat_id go together: give both or neither")
    if s.telegram_bot_token_file:
        telegram = Telegram(s.telegram_api_url.rstrip("/"), s.telegram_chat_id.strip(),
                            read_secret("telegram_bot_token_file", s.telegram_bot_token_file))
    return Channels(s.slack_webhook, s.teams_webhook, telegram, _email_config(s) if s.email_to else None)


def read_secret(name: str, path: str) -> str:
    """The text of the secret file ``path`` (setting ``name``), stripped; InputError if it
    cannot be read or is empty."""
    try:
        secret = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{name} {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if not secret:
        raise InputError(f"{name} {path}: the file is empty")
    return secret


def payload(fmt: str, alert: dict, *, key: str, channels: Channels,
            summary_png: tuple[Path, ...] = ()) -> bytes | None:
    """The body of the ``fmt`` message of the JSON ``alert`` (with idempotency ``key``), None
    when the alert has none in that format (a ``telegram_photo`` without a picture);
    ``summary_png`` are the paths where an e-mail or a photo looks for the full summary picture
    when it is sent (the first that exists is taken, else the alert's thumbnail)."""
    message = chat_message(alert)
    pictures = {"summary_png": [str(path) for path in summary_png],
                "thumbnail_png_base64": alert.get("thumbnail_png_base64")}
    if fmt == "slack":
        document = slack_message(message)
    elif fmt == "teams":
        document = teams_message(message)
    elif fmt == "telegram":
        document = {"chat_id": _chat_id(channels.telegram), "text": _shortened(plain_text(message), TELEGRAM_TEXT_LIMIT),
                    "link_preview_options": {"is_disabled": True}}
    elif fmt == "telegram_photo":
        if not pictures["thumbnail_png_base64"]:
            return None
        caption = "\n".join(line for line in (message.title, message.link, message.statement) if line)
        document = {"chat_id": _chat_id(channels.telegram), "caption": _shortened(caption, TELEGRAM_CAPTION_LIMIT),
                    **pictures}
    else:
        email = channels.email
        domain = parseaddr(email.sender)[1].rpartition("@")[2]
        document = {"to": list(email.to), "from": email.sender, "subject": email_subject(message),
                    "text": plain_text(message), "message_id": f"<{key}@{domain}>", **pictures}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def summary_picture(document: dict) -> bytes | None:
    """The picture of a ``telegram_photo`` or ``email`` document: the first of its summary
    PNGs whose file can be read, else its thumbnail (None: neither)."""
    for path in document.get("summary_png", []):
        try:
            return Path(path).read_bytes()
        except OSError:
            continue
    thumbnail = document.get("thumbnail_png_base64")
    return base64.b64decode(thumbnail) if thumbnail else None


def photo_form(document: dict) -> tuple[bytes, str]:
    """The ``multipart/form-data`` body of a ``telegram_photo`` document for ``sendPhoto``,
    and its Content-Type (with a fresh boundary)."""
    boundary = f"triage-{secrets.token_hex(16)}"
    parts = []
    for name, value in (("chat_id", str(document["chat_id"])), ("caption", document["caption"])):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                     + value.encode() + b"\r\n")
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="summary.png"\r\n'
                 "Content-Type: image/png\r\n\r\n".encode() + summary_picture(document) + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def slack_message(message: ChatMessage) -> dict:
    """A Slack incoming-webhook payload: ``text`` and Block Kit ``blocks``."""
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": _shortened(message.title, SLACK_HEADER_LIMIT)}},
              {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{_mrkdwn(label)}*\n{_mrkdwn(value)}"}
                                             for label, value in message.facts[:10]]}]
    if message.notes:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _shortened(
            "\n".join(_mrkdwn(note) for note in message.notes), SLACK_TEXT_LIMIT)}})
    if message.link:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": message.link_label}, "url": message.link}]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(message.statement)}]})
    return {"text": plain_text(message), "blocks": blocks}


def teams_message(message: ChatMessage) -> dict:
    """A Teams incoming-webhook payload: a message with one Adaptive Card attachment."""
    body = [{"type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in message.facts]},
            *({"type": "TextBlock", "text": note, "wrap": True, "color": "Warning"} for note in message.notes),
            {"type": "TextBlock", "text": message.statement, "wrap": True, "isSubtle": True, "size": "Small"}]
    card = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": CARD_VERSION, "body": body}
    if message.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": message.link_label, "url": message.link}]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


def _email_config(s: AlertSettings) -> Email:
    for address in (*s.email_to, s.email_from):
        if "@" not in parseaddr(address)[1]:
            raise InputError(f"email_to/email_from: {address!r} is not an e-mail address"
                             if address else "email_to needs email_from, the sender's address")
    if not s.smtp_host:
        raise InputError("email_to needs smtp_host, the mail server")
    if not 0 < s.smtp_port < 65536:
        raise InputError(f"smtp_port {s.smtp_port}: expected a port number (1-65535)")
    if s.smtp_user and not s.smtp_starttls:
        raise InputError("smtp_user needs smtp_starttls: the SMTP password is never sent without TLS")
    if bool(s.smtp_user) != bool(s.smtp_password_file):
        raise InputError("smtp_user and smtp_password_file go together: give both or neither")
    password = read_secret("smtp_password_file", s.smtp_password_file) if s.smtp_user else ""
    return Email(tuple(s.email_to), s.email_from, s.smtp_host, s.smtp_port, s.smtp_starttls, s.smtp_user, password)


def _chat_id(telegram: Telegram) -> int | str:
    """The chat id as the Bot API takes it: a number, or an ``@channelname``."""
    chat = telegram.chat_id
    return int(chat) if chat.lstrip("-").isdigit() else chat


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if url and (parts.scheme not in ("http", "https") or not parts.hostname):
        raise InputError(f"{name} {parts.scheme}://{parts.hostname or ''}: expected an http:// or https:// URL")


def _mrkdwn(text: str) -> str:
    """``text`` escaped for Slack's mrkdwn (its three control characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
