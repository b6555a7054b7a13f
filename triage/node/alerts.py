"""Alerts to the stroke team's endpoint: what each message says, its key and its signature.

A result or a failure of an analysis becomes one message per ``--webhook`` URL (two with
``alert_fhir``: the JSON alert and a FHIR R4 DiagnosticReport, :mod:`triage.node.alerts_fhir`),
and one per configured chat or e-mail channel (Slack, Teams, Telegram, e-mail: the adapters of
:mod:`triage.node.channels`), written to the ``outbox`` table in the transaction that records the result
(:meth:`triage.store.jobs.JobStore.finish_job`) and delivered by :mod:`triage.node.delivery`. A
perfusion series reported incomplete (missing images, not analysed) is announced too, in JSON
and on the channels. The sentences a person reads are made in :mod:`triage.node.alert_text`.

Each message carries an **idempotency key**, stable for a series (as first received), its
generation, the kind of message, its format and the URL: a message sent again (after a failed
attempt or a restart) has the same key, so that a receiver can keep one copy. Each attempt is
**signed**: the header ``X-Triage-Signature: t=<POSIX seconds>,v1=<hex HMAC-SHA256>`` of
``"<t>.<raw body>"`` with the shared secret; :func:`verify_signature` checks it, and refuses a
time stamp more than ``tolerance_s`` away from the receiver's clock (a replay).

By default an alert holds no patient name, ID or birth date; with ``alert_patient_details`` it
holds the PatientID and PatientName of the DICOM header. See ``docs/alerts.md`` for the fields.

Research use only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from triage.base.errors import InputError
from triage.base.names import safe_name
from triage.base.language import DEFAULT_LANGUAGE, in_language
from triage.node.alert_text import failure_paragraph, incomplete_paragraph, result_paragraph, statement
from triage.node.channels import Channels, channels_config, payload, read_secret
from triage.report.folder import Result, ResultFolder
from triage.settings import AlertSettings
from triage.store.outbox import OutboxMessage
from triage.store.records import SeriesRecord

log = logging.getLogger("triage.node")

SCHEMA = "stroke-triage/alert/1"
SIGNATURE_HEADER = "X-Triage-Signature"
MIN_SECRET_LENGTH = 16          # characters of the shared secret
THUMBNAIL_WIDTH_PX = 240        # the inline summary picture is at most this wide
THUMBNAIL_COLOURS = 64          # ... and a palette PNG of this many colours (about 35 kB)
VOLUMES = ("core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml", "mismatch_ratio", "hir")


@dataclass(frozen=True)
class AlertConfig:
    """The alert settings the node runs with: ``urls`` (the webhooks), the HMAC ``secret``,
    ``public_url`` (base of the viewer links; '' when there is no viewer), whether patient
    details and FHIR messages are sent, ``expiry_s``, how long a message is tried, the
    chat and e-mail ``channels``, and the ``language`` of the alerts' words."""

    urls: tuple[str, ...]
    secret: bytes
    public_url: str
    patient_details: bool
    fhir: bool
    expiry_s: float
    channels: Channels = Channels()
    language: str = DEFAULT_LANGUAGE

    def addresses(self) -> tuple[str, ...]:
        """Where messages go: the webhooks' URLs and the channels' addresses, each once."""
        return tuple(dict.fromkeys((*self.urls, *self.channels.addresses())))


def alert_config(s: AlertSettings, *, http_port: int = 0, language: str = DEFAULT_LANGUAGE) -> AlertConfig | None:
    """The alert settings ``s`` checked (None without ``webhook`` or a channel); InputError
    (one line) for a URL that is not http(s), a missing (with webhooks), short or doubly given
    secret, a bad expiry or a bad channel (:func:`~triage.node.channels.channels_config`). The
    viewer links default to the node's own ``http_port`` on loopback."""
    channels = channels_config(s)
    if not s.webhook and not channels.targets():
        return None
    for url in s.webhook:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"--webhook {where(url)}: expected an http:// or https:// URL")
    if s.webhook_secret and s.webhook_secret_file:
        raise InputError("give the webhook secret once: webhook_secret or --webhook-secret-file, not both")
    secret = s.webhook_secret
    if s.webhook_secret_file:
        secret = read_secret("--webhook-secret-file", s.webhook_secret_file)
    if s.webhook and not secret:
        raise InputError("--webhook needs a secret to sign the alerts: --webhook-secret-file FILE "
                         "(or webhook_secret in the config file, or TRIAGE_WEBHOOK_SECRET)")
    if secret and len(secret) < MIN_SECRET_LENGTH:
        raise InputError(f"the webhook secret is too short: at least {MIN_SECRET_LENGTH} characters")
    if not s.alert_expiry_hours > 0:
        raise InputError("--alert-expiry-hours must be positive")
    if s.public_url and urlsplit(s.public_url).scheme not in ("http", "https"):
        raise InputError(f"--public-url {s.public_url}: expected an http:// or https:// URL")
    public_url = s.public_url or (f"http://127.0.0.1:{http_port}" if http_port else "")
    return AlertConfig(urls=tuple(s.webhook), secret=secret.encode(), public_url=public_url.rstrip("/"),
                       patient_details=s.alert_patient_details, fhir=s.alert_fhir,
                       expiry_s=s.alert_expiry_hours * 3600.0, channels=channels, language=language)


def idempotency_key(record: SeriesRecord, generation: int, kind: str, fmt: str, url: str) -> str:
    """32 hex digits, the same for every message of this series (as first received: a series
    received again after retention gets new keys), generation, kind, format and URL."""
    material = "\n".join((record.series_uid, repr(record.first_received), str(generation), kind, fmt, url))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def result_messages(config: AlertConfig, record: SeriesRecord, generation: int, *, result: Result,
                    folder: ResultFolder, at: float, patient: dict | None = None) -> list[OutboxMessage]:
    """The messages announcing the ``result`` of ``generation`` (in ``folder``, ready ``at``,
    POSIX s): a JSON alert per URL, and a FHIR report with ``alert_fhir``. ``patient``
    ({"id", "name"}) is included only with ``alert_patient_details``."""
    patient = patient if config.patient_details else None
    thumbnail = thumbnail_png(folder.summary_png)
    language = config.language
    eligibility = dict(result.document["eligibility"])
    eligibility["reasons"] = {name: in_language(result.reason(name), language) for name in ("defuse3", "dawn")}
    warnings = [in_language(w, language) for w in result.warnings]
    volumes = {name: getattr(result, name) for name in VOLUMES}
    text = result_paragraph(record.series_uid, generation, volumes, eligibility, result.quality_level,
                            warnings, language)
    body = {
        **_body(config, record, generation, "result", text),
        "volumes": volumes,
        "eligibility": {"defuse3": eligibility["defuse3"], "dawn": eligibility["dawn"],
                        "reasons": eligibility["reasons"]},
        "quality": {"level": result.quality_level, "warnings": warnings},
        "links": _links(config, safe_name(record.series_uid)),
        "thumbnail_png_base64": base64.b64encode(thumbnail).decode("ascii") if thumbnail else None,
        "times": _times(record.last_received, result_ready=at),
        "software": result.document["software"],
    }
    return _messages(config, record, generation, "result", body, at, patient,
                     lambda key: _fhir().result_report(key, body, result.document, patient),
                     summary_png=tuple(dict.fromkeys((folder.summary_png, folder.published().summary_png))))


def failure_messages(config: AlertConfig, record: SeriesRecord, generation: int, *, reason: str,
                     at: float, patient: dict | None = None) -> list[OutboxMessage]:
    """The messages saying that the analysis of ``generation`` failed for good (``at``), and why."""
    patient = patient if config.patient_details else None
    body = {
        **_body(config, record, generation, "failure",
                failure_paragraph(record.series_uid, generation, reason, config.language)),
        "error": reason,
        "times": _times(record.last_received, failed=at),
    }
    return _messages(config, record, generation, "failure", body, at, patient,
                     lambda key: _fhir().failure_report(key, body, patient))


def incomplete_messages(config: AlertConfig, record: SeriesRecord, generation: int, *, missing: str,
                        quiet_s: float, at: float, patient: dict | None = None) -> list[OutboxMessage]:
    """The messages saying that a perfusion series is still incomplete (``missing`` images)
    after ``quiet_s`` seconds without new ones, so ``generation`` waits (JSON only: no report)."""
    patient = patient if config.patient_details else None
    body = {
        **_body(config, record, generation, "incomplete",
                incomplete_paragraph(record.series_uid, missing, quiet_s, config.language)),
        "missing": in_language(missing, config.language),
        "times": _times(record.last_received, reported=at),
    }
    return _messages(replace(config, fhir=False), record, generation, "incomplete", body, at, patient, None)


def thumbnail_png(summary: Path) -> bytes | None:
    """``summary`` (PNG) scaled down to ``THUMBNAIL_WIDTH_PX`` wide, as a palette PNG; None
    when the picture is missing or unreadable (the alert goes out without it)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(summary) as image:
            image = image.convert("RGB")
    except (OSError, UnidentifiedImageError):
        return None
    height = max(1, round(image.height * THUMBNAIL_WIDTH_PX / image.width))
    if image.width > THUMBNAIL_WIDTH_PX:
        image = image.resize((THUMBNAIL_WIDTH_PX, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.quantize(THUMBNAIL_COLOURS).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def patient_details(dicom_file: Path) -> dict:
    """``{"id", "name"}`` from the PatientID and PatientName of a DICOM header ('' if absent)."""
    import pydicom

    ds = pydicom.dcmread(dicom_file, stop_before_pixels=True, specific_tags=["PatientID", "PatientName"])
    return {"id": str(ds.get("PatientID", "")), "name": str(ds.get("PatientName", ""))}


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Triage-Signature`` value of ``body`` at ``timestamp`` (POSIX s; now when None)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_mac(secret, t, body)}"


def verify_signature(secret: str | bytes, header: str, body: bytes, now: float | None = None,
                     tolerance_s: float = 300) -> bool:
    """Whether ``header`` (the ``X-Triage-Signature`` value) signs the raw ``body`` with
    ``secret``, at a time stamp within ``tolerance_s`` seconds of ``now`` (POSIX s; the
    receiver's clock when None). False for a changed body, another secret, a malformed
    header, and for a message replayed outside that window."""
    secret = secret.encode() if isinstance(secret, str) else secret
    fields: dict[str, list[str]] = {}
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        (t,) = [int(v) for v in fields.get("t", [])]
    except ValueError:
        return False
    now = time.time() if now is None else now
    if abs(now - t) > tolerance_s:
        return False
    expected = _mac(secret, t, body)
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))


def _mac(secret: bytes, t: int, body: bytes) -> str:
    return hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def _messages(config: AlertConfig, record: SeriesRecord, generation: int, kind: str, body: dict,
              now: float, patient: dict | None, fhir_body, summary_png: tuple[Path, ...] = ()) -> list[OutboxMessage]:
    """Per URL, the JSON ``body`` with its key (and ``patient`` when given), and with
    ``alert_fhir`` the FHIR document ``fhir_body(key)``; per channel, its payload of ``body``
    (never with patient details; an e-mail attaches the first of ``summary_png`` that exists
    when it is sent: the announcement's picture, then the one of the folder in place). Each expires
    ``expiry_s`` after ``now``."""
    targets = []  # (format, address, identity in the key, encode(key) -> bytes)
    for url in config.urls:
        targets.append(("json", url, url, lambda key: _encode({**body, "idempotency_key": key,
                                                                **({"patient": patient} if patient else {})})))
        if config.fhir:
            targets.append(("fhir", url, url, fhir_body))
    for fmt, address, identity in config.channels.targets():
        targets.append((fmt, address, identity, lambda key, fmt=fmt: payload(
            fmt, {**body, "idempotency_key": key}, key=key, channels=config.channels, summary_png=summary_png)))
    messages = []
    for fmt, address, identity, encode in targets:
        key = idempotency_key(record, generation, kind, fmt, identity)
        encoded = encode(key)
        if encoded is not None:  # None: nothing in this format for this alert
            messages.append(OutboxMessage(key=key, series_uid=record.series_uid, generation=generation,
                                          kind=kind, format=fmt, url=address, body=encoded,
                                          expires_at=now + config.expiry_s))
    return messages


def _fhir():
    from triage.node import alerts_fhir  # fhir.resources (pydantic) is loaded only when used
    return alerts_fhir


def _encode(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _body(config: AlertConfig, record: SeriesRecord, generation: int, kind: str, message: str) -> dict:
    """What every alert holds: kind, message, the research-use statement, the study and its link."""
    study_id = safe_name(record.series_uid)
    return {"schema": SCHEMA, "kind": kind, "language": config.language, "message": message,
            "research_use_only": True, "statement": statement(config.language),
            "study": {"id": study_id, "study_uid": record.study_uid, "series_uid": record.series_uid,
                      "series_description": record.description, "generation": generation,
                      "reanalysis": generation >= 2},
            "links": {"study": _links(config, study_id)["study"]}}


def _links(config: AlertConfig, study_id: str) -> dict:
    """The study in the viewer and its summary picture (None each when there is no viewer)."""
    if not config.public_url:
        return {"study": None, "summary_png": None}
    return {"study": f"{config.public_url}/studies/{study_id}",
            "summary_png": f"{config.public_url}/api/studies/{study_id}/summary.png"}


def _times(last_image: float, **events: float) -> dict:
    """Each time as POSIX seconds and as ISO 8601 UTC (``<name>_utc``)."""
    times = {"last_image_received": last_image, **events}
    return {**times, **{f"{name}_utc": _utc(value) for name, value in times.items()}}


def _utc(posix: float) -> str:
    return datetime.fromtimestamp(posix, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def log_alert_config(config: AlertConfig) -> None:
    """Say at start where the alerts go (endpoints by scheme, host and port), and warn of plain
    http beyond this machine."""
    channels = config.channels
    if config.urls:
        log.info("alerts go to %d webhook(s), signed (%s)%s%s", len(config.urls),
                 ", ".join(where(url) for url in config.urls),
                 "; with patient name and ID" if config.patient_details else "",
                 "; with FHIR reports" if config.fhir else "")
    for fmt, address, _ in channels.targets():
        recipients = f", {len(channels.email.to)} recipient(s)" if fmt == "email" else ""
        starttls = "" if fmt != "email" or channels.email.starttls else ", without STARTTLS"
        log.info("alerts go to %s (%s%s%s), no patient details", fmt, where(address), recipients, starttls)
    addresses = [a for fmt, a, _ in channels.targets() if fmt != "email"]
    if unencrypted((*config.urls, *addresses)):
        log.warning("alerts to %s go over plain http: anyone on the way can read them (not encrypted; "
                    "use https)", ", ".join(unencrypted((*config.urls, *addresses))))


def unencrypted(urls: tuple[str, ...]) -> list[str]:
    """The endpoints (:func:`where`) of ``urls`` reached by plain http beyond this machine."""
    def loopback(host: str) -> bool:
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host == "localhost"
    return [where(url) for url in urls if urlsplit(url).scheme == "http" and not loopback(urlsplit(url).hostname)]


def where(url: str) -> str:
    """``scheme://host[:port]`` of a URL: its path and query may hold a token, never logged."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else "(not a URL)"
