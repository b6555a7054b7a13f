"""The chat and e-mail channels of the alerts: Slack, Teams and Telegram payloads POSTed to a real
local HTTP endpoint (``tests/support/endpoint.py``), e-mail through a real SMTP server on loopback
with STARTTLS and login (aiosmtpd, ``tests/support/mailserver.py``), retries after a refusal and
a restart, and the settings' one-line errors."""

from __future__ import annotations

import base64
import email
import io
import json
import logging
import re
import subprocess
import sys
import threading
import time
from dataclasses import replace
from email.policy import default as default_policy
from pathlib import Path

import pydicom
import pytest
from PIL import Image

from sample_data.phantom import CASES, make_phantom, write_dicom
from tests.support import peers
from tests.support.endpoint import Endpoint
from tests.support.mailserver import MailServer
from tests.support.node import ROOT, NodeProcess
from triage.base.errors import InputError
from triage.base.names import safe_name
from triage.node.alert_text import statement
from triage.node.alerts import (
    SIGNATURE_HEADER,
    AlertConfig,
    alert_config,
    failure_messages,
    incomplete_messages,
    result_messages,
)
from triage.node.channels import Channels, Email, Telegram, channels_config, payload
from triage.node.delivery import Deliverer
from triage.node.smtp import email_message
from triage.report.folder import Result, ResultFolder
from triage.settings import AlertSettings, load_settings
from triage.store.jobs import JobStore
from triage.store.outbox import OutboxStore
from triage.store.records import SeriesRecord

STATEMENT_EN = statement("en")

TOKEN = "123456:ABC-secret-bot-token"
CHAT_ID = "-1001234567890"
PUBLIC_URL = "https://triage.hospital.example"
SUMMARY_SIZE = (600, 952)     # px of the test's summary picture


def _record() -> SeriesRecord:
    return SeriesRecord(series_uid="1.2.826.0.1.747", study_uid="1.2.826.0.1.500", patient_id="PAT-7",
                        description="CT PERFUSION", calling_aet="CT1", state="ready", classification="CTP",
                        reason="", first_received=1000.0, last_received=1060.0, n_instances=200, n_positions=8,
                        n_times=25, generation=1)


def _result() -> Result:
    return Result.from_document({
        "status": "complete", "study_uid": "1.2.826.0.1.500", "series_uid": "1.2.826.0.1.747",
        "core_ml": 22.7, "tmax6_ml": 80.1, "tmax10_ml": 32.0, "mismatch_ml": 57.4, "mismatch_ratio": 3.53,
        "hir": 0.4,
        "eligibility": {"defuse3": True, "dawn": None,
                        "reasons": {"defuse3": "met: core < 70 mL, mismatch ratio ≥ 1.8, mismatch volume ≥ 15 mL",
                                    "dawn": "unknown: age and NIHSS are needed"}},
        "quality": {"level": "limited", "warnings": ["bolus truncated: the last 2 time points"]},
        "profile": {"core_rcbf_below": 0.3, "hypoperfusion_tmax_above_s": 6.0, "severe_tmax_above_s": 10.0},
        "acquisition": {"frames_left_out": 0}, "software": {"name": "stroke-triage", "version": "0"}})


def _config(channels: Channels) -> AlertConfig:
    return AlertConfig(urls=(), secret=b"", public_url=PUBLIC_URL, patient_details=True, fhir=False,
                       expiry_s=3600.0, channels=channels)


def _expected_texts(result: Result) -> list[str]:
    """What every chat message must say of ``result``: its volumes, ratio, criteria, warning,
    the viewer link and the research-use statement."""
    d = result.document
    return [f"{d['core_ml']:.1f} mL", f"{d['tmax6_ml']:.1f} mL", f"{d['mismatch_ml']:.1f} mL",
            f"{d['mismatch_ratio']:g}", d["eligibility"]["reasons"]["defuse3"], d["eligibility"]["reasons"]["dawn"],
            d["quality"]["warnings"][0], f"{PUBLIC_URL}/studies/{safe_name(d['series_uid'])}", STATEMENT_EN]


def _summary(tmp_path: Path) -> ResultFolder:
    folder = ResultFolder(tmp_path / "result")
    folder.path.mkdir()
    Image.new("RGB", SUMMARY_SIZE, (200, 30, 200)).save(folder.summary_png)
    return folder


# Slack, Teams, Telegram: payload shapes, no signature, 5xx then 2xx delivered once

def _check_slack(payload: dict, expected: list[str]) -> None:
    assert isinstance(payload["text"], str) and all(text in payload["text"] for text in expected)
    kinds = [block["type"] for block in payload["blocks"]]
    assert kinds == ["header", "section", "section", "actions", "context"]
    header, facts, notes, actions, context = payload["blocks"]
    assert header["text"]["type"] == "plain_text" and len(header["text"]["text"]) <= 150
    assert 1 <= len(facts["fields"]) <= 10 and all(f["type"] == "mrkdwn" and f["text"] for f in facts["fields"])
    shown = "\n".join(f["text"] for f in facts["fields"]) + notes["text"]["text"]
    shown = shown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")  # mrkdwn's escapes
    assert all(text in shown for text in expected[:6]) and expected[6] in notes["text"]["text"]
    (button,) = actions["elements"]
    assert button["type"] == "button" and button["text"]["type"] == "plain_text" and button["url"] == expected[7]
    assert context["elements"][0]["type"] == "mrkdwn" and STATEMENT_EN in context["elements"][0]["text"]


def _check_teams(payload: dict, expected: list[str]) -> None:
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"], card["$schema"]) == (
        "AdaptiveCard", "1.4", "http://adaptivecards.io/schemas/adaptive-card.json")
    assert {element["type"] for element in card["body"]} == {"TextBlock", "FactSet"}
    (facts,) = [element for element in card["body"] if element["type"] == "FactSet"]
    assert all(isinstance(f["title"], str) and isinstance(f["value"], str) for f in facts["facts"])
    shown = json.dumps(card["body"], ensure_ascii=False)
    assert all(text in shown for text in expected[:7] + expected[8:])
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in the viewer", "url": expected[7]}]


def _check_telegram(payload: dict, expected: list[str]) -> None:
    assert payload["chat_id"] == int(CHAT_ID)  # a number: a group's or channel's id
    assert isinstance(payload["text"], str) and len(payload["text"]) <= 4096
    assert all(text in payload["text"] for text in expected)
    assert "parse_mode" not in payload  # plain text: nothing in it needs escaping


def _check_telegram_photo(request, expected: list[str]) -> None:
    """A sendPhoto form: chat_id, a caption with the title, link and statement, the whole summary PNG."""
    content_type = request.headers["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    form = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + request.body,
                                    policy=default_policy)
    parts = {part.get_param("name", header="content-disposition"): part for part in form.iter_parts()}
    assert set(parts) == {"chat_id", "caption", "photo"}
    assert parts["chat_id"].get_payload() == CHAT_ID
    caption = parts["caption"].get_payload(decode=True).decode()
    assert len(caption) <= 1024 and "core 22.7 mL" in caption and expected[7] in caption and STATEMENT_EN in caption
    assert parts["photo"].get_filename() == "summary.png"
    photo = Image.open(io.BytesIO(parts["photo"].get_payload(decode=True)))
    assert photo.format == "PNG" and photo.size == SUMMARY_SIZE


def test_slack_teams_and_telegram_get_their_payloads_after_a_503(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="triage.node.alerts")
    with Endpoint(answers=[503]) as slack, Endpoint(answers=[502]) as teams, Endpoint(answers=[500]) as telegram:
        channels = Channels(slack=slack.url("/services/T000/B000/XXXX"), teams=teams.url("/workflows/abc/triggers/x"),
                            telegram=Telegram(telegram.url(""), CHAT_ID, TOKEN))
        store = JobStore(tmp_path / "triage.db")
        stopping = threading.Event()
        try:
            messages = result_messages(_config(channels), _record(), 1, result=_result(), folder=_summary(tmp_path),
                                       at=time.time(), patient={"id": "PAT-7", "name": "DOE^JANE"})
            assert [m.format for m in messages] == ["slack", "teams", "telegram_photo", "telegram"]
            assert len({m.key for m in messages}) == 4
            store.add_alerts(messages)
            threads = [threading.Thread(target=Deliverer(store, b"", stopping, address, channels).run, daemon=True)
                       for address in channels.addresses()]
            for thread in threads:
                thread.start()
            received = {name: endpoint.wait_for(count, timeout=60)
                        for name, endpoint, count in (("slack", slack, 2), ("teams", teams, 2), ("telegram", telegram, 3))}
            outbox = OutboxStore(store)
            deadline = time.monotonic() + 30
            while {r.state for r in outbox.rows()} != {"delivered"} and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)  # nothing more is sent once delivered
            assert [(r.format, r.state, r.attempts) for r in outbox.rows()] == [
                ("slack", "delivered", 2), ("teams", "delivered", 2), ("telegram_photo", "delivered", 2),
                ("telegram", "delivered", 1)]
        finally:
            stopping.set()
            store.close()
    expected = _expected_texts(_result())
    photos = [r for r in received["telegram"] if r.path == f"/bot{TOKEN}/sendPhoto"]
    received["telegram"] = [r for r in received["telegram"] if r not in photos]
    # The photo, written first, got the 500; the text went next, the photo again after its backoff.
    assert [r.status for r in photos] == [500, 200] and [r.status for r in received["telegram"]] == [200]
    _check_telegram_photo(photos[1], expected)
    for name, check in (("slack", _check_slack), ("teams", _check_teams)):
        first, second = received[name]
        assert first.status >= 500 and second.status == 200
        assert first.body == second.body and len(received[name]) == 2
    for name, check in (("slack", _check_slack), ("teams", _check_teams), ("telegram", _check_telegram)):
        request = received[name][-1]
        assert request.headers["Content-Type"] == "application/json; charset=utf-8"
        assert SIGNATURE_HEADER not in request.headers  # no secret to sign with: these services do not check
        assert b"PAT-7" not in request.body and b"DOE" not in request.body  # never patient details in a chat
        check(json.loads(request.body), expected)
    assert received["slack"][1].path == "/services/T000/B000/XXXX"
    assert received["teams"][1].path == "/workflows/abc/triggers/x"
    assert received["telegram"][0].path == f"/bot{TOKEN}/sendMessage"
    lines = [r.getMessage() for r in caplog.records if r.name == "triage.node.alerts"]
    assert sum("not delivered: HTTP 5" in line for line in lines) == 3 and sum("delivered (" in line for line in lines) == 4
    assert not any(TOKEN in line or "XXXX" in line for line in lines)  # tokens are never logged


def test_a_failure_and_an_incomplete_series_reach_the_chats_too():
    channels = Channels(slack="https://hooks.slack.example/s", telegram=Telegram("https://api.telegram.org", "@team", TOKEN))
    messages = failure_messages(_config(channels), _record(), 2, reason="no arterial bolus found", at=2000.0)
    slack, telegram = (json.loads(m.body) for m in messages)
    assert telegram["chat_id"] == "@team" and "no arterial bolus found" in telegram["text"]
    assert "re-analysis 2" in telegram["text"] and STATEMENT_EN in telegram["text"]
    assert slack["blocks"][0]["text"]["text"] == "Stroke triage: analysis failed (re-analysis 2)"
    missing = "1 of 8 positions lack time points (1 images missing of 192)"
    messages = incomplete_messages(_config(channels), _record(), 1, missing=missing, quiet_s=30.0, at=2000.0)
    slack, telegram = (json.loads(m.body) for m in messages)
    assert f"Missing: {missing}" in telegram["text"] and STATEMENT_EN in telegram["text"]
    assert slack["blocks"][0]["text"]["text"] == "Stroke triage: CT perfusion series incomplete"


# E-mail over SMTP with STARTTLS

def _email(server: MailServer, **changes) -> Email:
    email_channel = Email(to=("stroke-team@hospital.example", "neuro.oncall@hospital.example"),
                          sender="Stroke triage <triage@hospital.example>", host="127.0.0.1", port=server.port,
                          starttls=True,
                          user="triage", password="mail-password")
    return replace(email_channel, **changes)


def test_email_goes_over_starttls_with_the_summary_attached_after_a_deferral_and_a_restart(tmp_path, monkeypatch,
                                                                                          caplog):
    """The server defers the first attempt (451) and refuses the second (554); the node is then
    "restarted" (a new job store and delivery thread on the same database): the pending message
    is sent, once, to both recipients."""
    caplog.set_level(logging.INFO, logger="triage.node.alerts")
    certs = peers.make_certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs["ca.pem"]))  # the client trusts the test CA
    answers = ["451 4.3.0 Mail server temporarily busy", "554 5.7.1 Message rejected"]
    with MailServer(tls=(certs["server.pem"], certs["server.key"]), login=("triage", "mail-password"),
                    answers=answers) as server:
        channels = Channels(email=_email(server))
        store = JobStore(tmp_path / "triage.db")
        (message,) = result_messages(_config(channels), _record(), 1, result=_result(), folder=_summary(tmp_path),
                                     at=time.time())
        store.add_alerts([message])
        deliverer = Deliverer(store, b"", threading.Event(), channels.addresses()[0], channels)
        deliverer.deliver(OutboxStore(store).rows()[0])
        deliverer.deliver(OutboxStore(store).rows()[0])
        (row,) = OutboxStore(store).rows()
        assert (row.state, row.attempts, row.last_error) == ("pending", 2, "SMTP 554 5.7.1 Message rejected")
        store.close()

        store = JobStore(tmp_path / "triage.db")  # the restart
        stopping = threading.Event()
        try:
            threading.Thread(target=Deliverer(store, b"", stopping, channels.addresses()[0], channels).run,
                             daemon=True).start()
            (mail,) = server.wait_for_accepted(1)
            deadline = time.monotonic() + 30
            while OutboxStore(store).rows()[0].state != "delivered" and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
            assert [(r.state, r.attempts) for r in OutboxStore(store).rows()] == [("delivered", 3)]
        finally:
            stopping.set()
            store.close()
    assert len(server.mails) == 3 and server.accepted() == [mail]
    assert mail.over_tls and mail.sender == "triage@hospital.example"
    assert mail.recipients == ["stroke-team@hospital.example", "neuro.oncall@hospital.example"]
    parsed = email.message_from_bytes(mail.content, policy=default_policy)
    assert {email.message_from_bytes(m.content)["Message-ID"] for m in server.mails} == {
        f"<{message.key}@hospital.example>"}  # every attempt the same message
    assert parsed["To"] == "stroke-team@hospital.example, neuro.oncall@hospital.example"
    assert parsed["From"] == "Stroke triage <triage@hospital.example>"
    # (the header is folded after "Subject:"; unfolded, its leading white space is not part of it)
    assert parsed["Subject"].strip() == "Stroke triage result: core 22.7 mL, mismatch 57.4 mL (research use only)"
    text = parsed.get_body(("plain",)).get_content()
    assert all(expected in text for expected in _expected_texts(_result()))  # "≥" among them
    mail.content.decode("ascii")  # 7-bit on the wire: the UTF-8 text is quoted-printable
    (attachment,) = parsed.iter_attachments()
    assert attachment.get_content_type() == "image/png" and attachment.get_filename() == "summary.png"
    picture = Image.open(io.BytesIO(attachment.get_content()))
    assert picture.format == "PNG" and picture.size == SUMMARY_SIZE  # the whole summary, not the thumbnail
    levels = [r.levelname for r in caplog.records if r.name == "triage.node.alerts"]
    assert levels == ["WARNING", "ERROR", "INFO"]  # deferred, refused ("check the addresses ..."), delivered
    refused = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"][0]
    assert "refused: SMTP 554" in refused and "check the addresses and the SMTP account" in refused
    assert not any("mail-password" in r.getMessage() for r in caplog.records)


def test_email_without_starttls_on_the_server_is_not_sent(tmp_path, monkeypatch):
    """A server that does not offer STARTTLS (aiosmtpd without a TLS context) gets nothing:
    the attempt fails and is retried."""
    from aiosmtpd.controller import Controller

    class Handler:
        mails = []

        async def handle_DATA(self, server, session, envelope):
            self.mails.append(envelope)
            return "250 OK"

    port = peers.free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    store = JobStore(tmp_path / "triage.db")
    try:
        channels = Channels(email=Email(("a@hospital.example",), "triage@hospital.example", "127.0.0.1", port,
                                        starttls=True, user="", password=""))
        store.add_alerts(failure_messages(_config(channels), _record(), 1, reason="no bolus", at=time.time()))
        Deliverer(store, b"", threading.Event(), channels.addresses()[0], channels).deliver(OutboxStore(store).rows()[0])
        (row,) = OutboxStore(store).rows()
        assert row.state == "pending" and "STARTTLS" in row.last_error and Handler.mails == []
    finally:
        store.close()
        controller.stop()


def test_email_message_encodes_non_ascii_and_falls_back_to_the_thumbnail(tmp_path):
    thumbnail = io.BytesIO()
    Image.new("RGB", (240, 381), (0, 200, 0)).save(thumbnail, "PNG")
    document = {"to": ["khoa.dot-quy@benhvien.example"], "from": "triage@benhvien.example",
                "subject": "Kết quả phân loại đột quỵ: lõi 22,7 mL", "text": "Lõi 22,7 mL\nTỷ lệ ≥ 1,8",
                "message_id": "<0123abcd@benhvien.example>", "summary_png": [str(tmp_path / "removed.png")],
                "thumbnail_png_base64": base64.b64encode(thumbnail.getvalue()).decode()}
    raw = email_message(document).as_bytes()
    raw.decode("ascii")  # headers in RFC 2047 words, the text quoted-printable
    assert b"=?utf-8?" in raw
    parsed = email.message_from_bytes(raw, policy=default_policy)
    assert parsed["Subject"] == document["subject"]
    assert parsed.get_body(("plain",)).get_content().splitlines() == document["text"].splitlines()
    (attachment,) = parsed.iter_attachments()
    assert Image.open(io.BytesIO(attachment.get_content())).size == (240, 381)  # the summary file is gone


# Settings

def test_channel_settings_from_the_config_file_and_environment(tmp_path):
    token, password = tmp_path / "telegram.token", tmp_path / "smtp.password"
    token.write_text(f"{TOKEN}\n")
    password.write_text("mail-password\n")
    config = tmp_path / "triage.toml"
    config.write_text(f'[alerts]\nslack_webhook = "https://hooks.slack.com/services/T/B/X"\n'
                      f'telegram_bot_token_file = "{token}"\ntelegram_chat_id = "{CHAT_ID}"\n'
                      f'email_from = "triage@hospital.example"\nsmtp_host = "mail.hospital.example"\n'
                      f'smtp_user = "triage"\nsmtp_password_file = "{password}"\n')
    settings = load_settings(config, environ={"TRIAGE_EMAIL_TO": "a@hospital.example, b@hospital.example",
                                              "TRIAGE_TEAMS_WEBHOOK": "https://prod.example/workflows/x"})
    alerts = alert_config(settings.alerts)
    assert alerts.urls == () and alerts.secret == b""  # no webhook: no secret needed
    channels = alerts.channels
    assert channels.slack == "https://hooks.slack.com/services/T/B/X" and channels.teams == "https://prod.example/workflows/x"
    assert channels.telegram == Telegram("https://api.telegram.org", CHAT_ID, TOKEN)
    assert channels.email == Email(("a@hospital.example", "b@hospital.example"), "triage@hospital.example",
                                   "mail.hospital.example", 587, True, "triage", "mail-password")
    assert TOKEN not in repr(channels) and "mail-password" not in repr(channels)
    assert alerts.addresses() == ("https://hooks.slack.com/services/T/B/X", "https://prod.example/workflows/x",
                                  "https://api.telegram.org", "smtp://mail.hospital.example:587")


@pytest.mark.parametrize("settings, error", [
    ({"slack_webhook": "hooks.slack.com/services/T/B/X"}, "slack_webhook ://: expected an http:// or https:// URL"),
    ({"teams_webhook": "ftp://teams.example/x?sig=1"}, "teams_webhook ftp://teams.example: expected an http:// or https:// URL"),
    ({"telegram_chat_id": "42"}, "telegram_bot_token_file and telegram_chat_id go together: give both or neither"),
    ({"telegram_chat_id": "42", "telegram_bot_token_file": "/nonexistent/token"},
     "telegram_bot_token_file /nonexistent/token: cannot read it (No such file or directory)"),
    ({"email_to": ("team@hospital.example",), "smtp_host": "mail"}, "email_to needs email_from, the sender's address"),
    ({"email_to": ("team",), "email_from": "t@h.example", "smtp_host": "mail"},
     "email_to/email_from: 'team' is not an e-mail address"),
    ({"email_to": ("team@h.example",), "email_from": "t@h.example"}, "email_to needs smtp_host, the mail server"),
    ({"email_to": ("team@h.example",), "email_from": "t@h.example", "smtp_host": "mail", "smtp_port": 0},
     "smtp_port 0: expected a port number (1-65535)"),
    ({"email_to": ("team@h.example",), "email_from": "t@h.example", "smtp_host": "mail", "smtp_starttls": False,
      "smtp_user": "triage", "smtp_password_file": "/etc/passwd"},
     "smtp_user needs smtp_starttls: the SMTP password is never sent without TLS"),
    ({"email_to": ("team@h.example",), "email_from": "t@h.example", "smtp_host": "mail", "smtp_user": "triage"},
     "smtp_user and smtp_password_file go together: give both or neither"),
], ids=["slack no scheme", "teams ftp", "chat without token", "token unreadable", "no sender", "bad address",
        "no server", "bad port", "password without tls", "user without password"])
def test_bad_channel_settings_are_one_line_errors(settings, error):
    with pytest.raises(InputError) as raised:
        channels_config(AlertSettings(**settings))
    assert str(raised.value) == error


def test_bad_channel_settings_stop_serve_with_one_line(tmp_path):
    empty = tmp_path / "token"
    empty.write_text("\n")
    command = [sys.executable, "-m", "triage.cli", "serve", "--data-dir", str(tmp_path / "data"), "--allow-aet", "CT1",
               "--telegram-chat-id", "42", "--telegram-bot-token-file", str(empty)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr.strip().splitlines()) == (
        2, [f"error: telegram_bot_token_file {empty}: the file is empty"])
    help_text = subprocess.run([sys.executable, "-m", "triage.cli", "serve", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=60).stdout
    for flag in ("--slack-webhook", "--teams-webhook", "--telegram-bot-token-file", "--telegram-chat-id",
                 "--telegram-api-url", "--email-to", "--email-from", "--smtp-host", "--smtp-port",
                 "--no-smtp-starttls", "--smtp-user", "--smtp-password-file"):
        assert flag in help_text


# The node end to end

def test_serve_announces_a_result_on_every_channel(tmp_path, monkeypatch):
    """``triage serve`` with Slack, Teams, Telegram and e-mail (STARTTLS, login) configured by
    flags: a phantom study sent with DCMTK storescu is announced once on each, with the volumes
    of its result.json and the summary picture it wrote; no token or password in the log."""
    certs = peers.make_certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs["ca.pem"]))  # inherited by the node
    token, password = tmp_path / "telegram.token", tmp_path / "smtp.password"
    token.write_text(TOKEN + "\n")
    password.write_text("mail-password\n")
    ctp = write_dicom(make_phantom(replace(CASES["mismatch"], matrix=128, n_slices=8, n_frames=25)), tmp_path / "ctp")
    uid = str(pydicom.dcmread(ctp[0], stop_before_pixels=True).SeriesInstanceUID)
    with (Endpoint() as slack, Endpoint() as teams, Endpoint() as telegram,
          MailServer(tls=(certs["server.pem"], certs["server.key"]), login=("triage", "mail-password")) as mail):
        node = NodeProcess(tmp_path / "node", extra=(
            "--slack-webhook", slack.url("/services/T000/B000/XXXX"), "--teams-webhook", teams.url("/workflows/x"),
            "--telegram-bot-token-file", str(token), "--telegram-chat-id", CHAT_ID,
            "--telegram-api-url", telegram.url(""), "--email-to", "stroke-team@hospital.example",
            "--email-to", "neuro@hospital.example", "--email-from", "triage@hospital.example",
            "--smtp-host", "127.0.0.1", "--smtp-port", str(mail.port), "--smtp-user", "triage",
            "--smtp-password-file", str(password), "--public-url", PUBLIC_URL)).start()
        try:
            node.wait_for_log(r"alerts go to email \(smtp://127\.0\.0\.1:\d+, 2 recipient\(s\)\)")
            run = peers.storescu(node.port, ctp, calling="CT1")
            assert run.returncode == 0, run.stderr[-2000:]
            posts = {name: endpoint.wait_for(count, timeout=180, log=node.log)
                     for name, endpoint, count in (("slack", slack, 1), ("teams", teams, 1), ("telegram", telegram, 2))}
            (received,) = mail.wait_for_accepted(1, timeout=180)
            node.wait_for_log(r"generation 1 finished")
            time.sleep(1.0)  # room for a duplicate to show up
        finally:
            assert node.stop() == 0
    folder = ResultFolder(node.result_dir(uid, 1))
    result = folder.read()
    expected = [f"{result.document[name]:.1f} mL" for name in ("core_ml", "tmax6_ml", "mismatch_ml")]
    expected.append(f"{PUBLIC_URL}/studies/{safe_name(uid)}")
    assert [len(posts[name]) for name in ("slack", "teams", "telegram")] == [1, 1, 2] and len(mail.mails) == 1
    photo, text = posts["telegram"]  # the picture first, then the text
    assert photo.path.endswith("/sendPhoto") and text.path.endswith("/sendMessage")
    posts["telegram"] = [text]
    texts = {"slack": json.loads(posts["slack"][0].body)["text"],
             "teams": json.dumps(json.loads(posts["teams"][0].body), ensure_ascii=False),
             "telegram": json.loads(posts["telegram"][0].body)["text"]}
    parsed = email.message_from_bytes(received.content, policy=default_policy)
    texts["email"] = parsed.get_body(("plain",)).get_content()
    for name, text in texts.items():
        assert all(value in text for value in expected), name
    (attachment,) = parsed.iter_attachments()
    assert Image.open(io.BytesIO(attachment.get_content())).size == Image.open(folder.summary_png).size
    assert received.over_tls and received.recipients == ["stroke-team@hospital.example", "neuro@hospital.example"]
    log = node.log()
    assert TOKEN not in log and "mail-password" not in log and "XXXX" not in log


# Language

def test_alerts_in_vietnamese_say_the_same_numbers_in_every_channel(tmp_path):
    """With ``language = "vi"`` the JSON alert's words (message, warnings, reasons, statement)
    and every channel's text are Vietnamese; field names, numbers and units are those of the
    English alert."""
    from triage.base.language import Text
    from triage.node.alert_text import chat_message, email_subject, plain_text

    document = _result().document
    warning = Text("bolus.truncated_tail", percent=41.0, end_s=50.0)
    reasons = {"defuse3": Text("defuse3.met"), "dawn": Text("dawn.unknown")}
    document = {**document, "quality": {**document["quality"], "warnings": [warning]},
                "eligibility": {**document["eligibility"], "reasons": reasons},
                "texts": {"warnings": [warning.as_dict()], "reasons": {k: v.as_dict() for k, v in reasons.items()}}}
    result = Result.from_document(json.loads(json.dumps(document)))
    folder = _summary(tmp_path)
    bodies = {}
    for language in ("en", "vi"):
        config = replace(_config(Channels()), urls=("http://127.0.0.1:9/hook",), secret=b"s" * 16, language=language)
        (message,) = result_messages(config, _record(), 1, result=result, folder=folder, at=1100.0)
        bodies[language] = json.loads(message.body)
    en, vi = bodies["en"], bodies["vi"]
    assert (en["language"], vi["language"]) == ("en", "vi")
    assert vi["message"].startswith("Kết quả phân loại đột quỵ cho loạt ảnh 1.2.826.0.1.747: lõi 22.7 mL")
    assert re.findall(r"\d+(?:\.\d+)?", vi["message"]) == re.findall(r"\d+(?:\.\d+)?", en["message"])
    assert vi["quality"]["warnings"] == ["bolus bị cắt cụt: độ tăng quang của mô vẫn còn 41 % đỉnh "
                                         "ở khung hình cuối (50 s)"]
    assert en["quality"]["warnings"] == [str(warning)]
    assert vi["eligibility"]["reasons"]["dawn"] == "chưa rõ: cần tuổi và điểm NIHSS"
    assert vi["statement"].startswith("Chỉ dùng cho nghiên cứu") and vi["statement"] in vi["message"]
    assert {k: v for k, v in vi.items() if k not in ("language", "message", "statement", "quality", "eligibility",
                                                     "idempotency_key", "patient")} == \
        {k: v for k, v in en.items() if k not in ("language", "message", "statement", "quality", "eligibility",
                                                  "idempotency_key", "patient")}

    chat = chat_message(vi)
    text = plain_text(chat)
    for line in ("Lõi: 22.7 mL", "Tmax > 6 s: 80.1 mL", "Bất tương xứng: 57.4 mL", "Tỉ lệ bất tương xứng: 3.53",
                 "Chất lượng: hạn chế", f"Mở trong trình xem ảnh: {PUBLIC_URL}/studies/"):
        assert line in text, line
    assert text.endswith(vi["statement"])
    slack = json.loads(payload("slack", vi, key="k", channels=Channels()))
    assert slack["text"] == text and slack["blocks"][0]["text"]["text"] == chat.title
    assert slack["blocks"][3]["elements"][0]["text"]["text"] == "Mở trong trình xem ảnh"
    subject = email_subject(chat)
    assert subject == "Kết quả phân loại đột quỵ: lõi 22.7 mL, bất tương xứng 57.4 mL (chỉ dùng cho nghiên cứu)"
    mail = {"to": ["khoa.dot-quy@benhvien.example"], "from": "triage@benhvien.example", "subject": subject,
            "text": text, "message_id": "<k@benhvien.example>", "summary_png": [], "thumbnail_png_base64": None}
    parsed = email.message_from_bytes(email_message(mail).as_bytes(), policy=default_policy)
    assert parsed["Subject"] == subject and parsed.get_body(("plain",)).get_content().splitlines() == text.splitlines()
