"""Alerts to the stroke team's endpoint: what each message says, its key and its signature.

A result or a failure of an analysis becomes one message per ``--webhook`` URL (two with
``alert_fhir``: the JSON alert and a FHIR R4 DiagnosticReport, :mod:`triage.node.alerts_fhir`),
written to the ``outbox`` table in the transaction that records the result
(:meth:`triage.store.jobs.JobStore.finish_job`) and delivered by :mod:`triage.node.delivery`. A
perfusion series reported incomplete (missing images, not analysed) is announced too, in JSON.

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
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from triage.base.errors import InputError
from triage.base.names import safe_name
from triage.report.folder import Result, ResultFolder
from triage.settings import AlertSettings
from triage.store.outbox import OutboxMessage
from triage.store.records import SeriesRecord

SCHEMA = "stroke-triage/alert/1"
STATEMENT = ("Research use only: not clinically validated and not for clinical decisions; "
             "verify against the source images.")
SIGNATURE_HEADER = "X-Triage-Signature"
MIN_SECRET_LENGTH = 16          # characters of the shared secret
THUMBNAIL_WIDTH_PX = 240        # the inline summary picture is at most this wide
THUMBNAIL_COLOURS = 64          # ... and a palette PNG of this many colours (about 35 kB)
VOLUMES = ("core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml", "mismatch_ratio", "hir")


@dataclass(frozen=True)
class AlertConfig:
    """The alert settings the node runs with: ``urls`` (the webhooks), the HMAC ``secret``,
    ``public_url`` (base of the viewer links; '' when there is no viewer), whether patient
    details and FHIR messages are sent, and ``expiry_s``, how long a message is tried."""

    urls: tuple[str, ...]
    secret: bytes
    public_url: str
    patient_details: bool
    fhir: bool
    expiry_s: float


def alert_config(s: AlertSettings, *, http_port: int = 0) -> AlertConfig | None:
    """The alert settings ``s`` checked (None without ``webhook``); InputError (one line) for
    a URL that is not http(s), a missing, short or doubly given secret, or a bad expiry. The
    viewer links default to the node's own ``http_port`` on loopback."""
    if not s.webhook:
        return None
    for url in s.webhook:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"--webhook {where(url)}: expected an http:// or https:// URL")
    if s.webhook_secret and s.webhook_secret_file:
        raise InputError("give the webhook secret once: webhook_secret or --webhook-secret-file, not both")
    secret = s.webhook_secret
    if s.webhook_secret_file:
        try:
            secret = Path(s.webhook_secret_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--webhook-secret-file {s.webhook_secret_file}: cannot read it "
                             f"({getattr(exc, 'strerror', None) or exc})") from None
    if not secret:
        raise InputError("--webhook needs a secret to sign the alerts: --webhook-secret-file FILE "
                         "(or webhook_secret in the config file, or TRIAGE_WEBHOOK_SECRET)")
    if len(secret) < MIN_SECRET_LENGTH:
        raise InputError(f"the webhook secret is too short: at least {MIN_SECRET_LENGTH} characters")
    if not s.alert_expiry_hours > 0:
        raise InputError("--alert-expiry-hours must be positive")
    if s.public_url and urlsplit(s.public_url).scheme not in ("http", "https"):
        raise InputError(f"--public-url {s.public_url}: expected an http:// or https:// URL")
    public_url = s.public_url or (f"http://127.0.0.1:{http_port}" if http_port else "")
    return AlertConfig(urls=tuple(s.webhook), secret=secret.encode(), public_url=public_url.rstrip("/"),
                       patient_details=s.alert_patient_details, fhir=s.alert_fhir,
                       expiry_s=s.alert_expiry_hours * 3600.0)


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
    eligibility = result.document["eligibility"]
    body = {
        **_body(config, record, generation, "result", _result_text(record, generation, result)),
        "volumes": {name: getattr(result, name) for name in VOLUMES},
        "eligibility": {"defuse3": eligibility["defuse3"], "dawn": eligibility["dawn"],
                        "reasons": eligibility["reasons"]},
        "quality": {"level": result.quality_level, "warnings": list(result.warnings)},
        "links": _links(config, safe_name(record.series_uid)),
        "thumbnail_png_base64": base64.b64encode(thumbnail).decode("ascii") if thumbnail else None,
        "times": _times(record.last_received, result_ready=at),
        "software": result.document["software"],
    }
    return _messages(config, record, generation, "result", body, at, patient,
                     lambda key: _fhir().result_report(key, body, result.document, patient))


def failure_messages(config: AlertConfig, record: SeriesRecord, generation: int, *, reason: str,
                     at: float, patient: dict | None = None) -> list[OutboxMessage]:
    """The messages saying that the analysis of ``generation`` failed for good (``at``), and why."""
    patient = patient if config.patient_details else None
    what = f"re-analysis {generation}" if generation >= 2 else "analysis"
    body = {
        **_body(config, record, generation, "failure",
                f"Stroke triage: the {what} of series {record.series_uid} failed: {reason}. "
                "No result will come from it: read the images without it."),
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
                f"Stroke triage: CT perfusion series {record.series_uid} is incomplete after "
                f"{quiet_s:.0f} s without new images ({missing}); it is analysed when the missing "
                "images arrive. Read the images without waiting for it."),
        "missing": missing,
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
              now: float, patient: dict | None, fhir_body) -> list[OutboxMessage]:
    """Per URL, the JSON ``body`` with its key (and ``patient`` when given), and with
    ``alert_fhir`` the FHIR document ``fhir_body(key)``; each expires ``expiry_s`` after ``now``."""
    messages = []
    for url in config.urls:
        formats = {"json": lambda key: _encode({**body, "idempotency_key": key,
                                                 **({"patient": patient} if patient else {})})}
        if config.fhir:
            formats["fhir"] = fhir_body
        for fmt, encode in formats.items():
            key = idempotency_key(record, generation, kind, fmt, url)
            messages.append(OutboxMessage(key=key, series_uid=record.series_uid, generation=generation,
                                          kind=kind, format=fmt, url=url, body=encode(key),
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
    return {"schema": SCHEMA, "kind": kind, "message": message, "research_use_only": True,
            "statement": STATEMENT,
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


def _result_text(record: SeriesRecord, generation: int, result: Result) -> str:
    """One paragraph for a person reading the alert in a chat or a pager."""
    ratio = result.mismatch_ratio
    eligibility = result.document["eligibility"]
    what = f" (re-analysis {generation})" if generation >= 2 else ""
    return (f"Stroke triage result for series {record.series_uid}{what}: core {result.core_ml:.1f} mL, "
            f"Tmax > 6 s {result.tmax6_ml:.1f} mL, mismatch {result.mismatch_ml:.1f} mL "
            f"(ratio {'n/a' if ratio is None else ratio}). DEFUSE 3 imaging criteria "
            f"{'met' if eligibility['defuse3'] else 'not met'}; DAWN {eligibility['reasons']['dawn']}. "
            f"Quality {result.quality_level}" + (f" ({'; '.join(result.warnings)})" if result.warnings else "")
            + f". {STATEMENT}")


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
