"""Sending result files to a DICOMweb server with STOW-RS (DICOM PS3.18 §10.5), a status per file.

:func:`store_files` POSTs the files to ``<base URL>/studies`` as ``multipart/related;
type="application/dicom"``, one file as it is on disk per part, in requests of at most
``MAX_REQUEST_BYTES`` of files each (a larger file goes alone). The server's answer, a DICOM JSON
data set (``Accept: application/dicom+json``), lists the stored instances in the Referenced SOP
Sequence (with a Warning Reason when stored with a warning) and the refused ones in the Failed
SOP Sequence with their Failure Reason (e.g. ``0xA700`` out of resources). The lists decide, an
instance in neither is not stored: HTTP 200 should mean every instance was stored, 202 some of
them, 409 none, but Orthanc answers 400 listing what it stored when one part is not DICOM, and
200 listing nothing to a request whose parts it could not split. Only an answer without the lists
is judged by its status (200: all stored).

As with C-STORE (:mod:`dicom_node.scu`), the result is a :class:`~dicom_node.scu.SendReport`:
a :class:`~dicom_node.scu.FileResult` per file whose ``status`` is the Failure or Warning Reason
(0 when stored without warning, None when the server said nothing about the file), so the
caller retries only what was not stored. Nothing sent at all raises
:class:`~dicom_node.scu.SendError` with one line: the server cannot be reached (connection
refused, unknown host, timeout, certificate not trusted) or answered the first request with
another HTTP status (401 wrong credentials, 404 wrong URL, 5xx). When a later request fails that
way, its files and those after it are reported not stored. There is no retry loop here.

Log lines name the server by scheme, host and port only (:meth:`StowEndpoint.__str__`): the
credentials are never logged.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pydicom

from dicom_node.scu import FileResult, SendableFile, SendError, SendReport, log_files, read_sendable, status_text
from triage.base.errors import one_line
from triage.base.http import USER_AGENT, post

LOGGER = logging.getLogger("dicom_node.stow")
MAX_REQUEST_BYTES = 50 * 2**20    # files per STOW-RS request (bytes on disk)
MAX_ANSWER_BYTES = 4 * 2**20      # of the server's answer that is read
URL_FORM = "expected http(s)://[USER[:PASSWORD]@]HOST[:PORT]/PATH, e.g. https://pacs.example:8042/dicom-web"


@dataclass(frozen=True)
class StowEndpoint:
    """A DICOMweb server: its base URL (without credentials, no trailing slash), the Basic
    authentication ``auth`` (user, password) and the TLS context verifying an https server."""

    url: str
    auth: tuple[str, str] | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, text: str, *, password_file: str = "", ca_file: str = "") -> StowEndpoint:
        """The endpoint of ``text``, ``http(s)://[USER[:PASSWORD]@]HOST[:PORT]/PATH``; the password
        may instead be in ``password_file`` (surrounding white space ignored); an https server's
        certificate is verified against ``ca_file`` (PEM) if given, else the system's trusted
        CAs. ValueError with a one-line reason if malformed or unreadable."""
        parts = urlsplit(text.strip())
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"invalid DICOMweb URL {where(text)}: the port is not 1-65535") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid DICOMweb URL {where(text)}: {URL_FORM}")
        if parts.query or parts.fragment:
            raise ValueError(f"invalid DICOMweb URL {where(text)}: a base URL has no ?query or #fragment")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        url = f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path.rstrip('/')}"
        auth = _credentials(parts.username, parts.password, password_file, where(text))
        if ca_file and parts.scheme != "https":
            raise ValueError(f"a CA file is for an https DICOMweb URL, not {where(text)}")
        tls = None
        if parts.scheme == "https":
            try:
                tls = ssl.create_default_context(cafile=ca_file or None)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot use the CA file {ca_file}: {one_line(exc, 160)}") from None
        return cls(url, auth, tls)

    def __str__(self) -> str:
        """``scheme://host:port``: the URL's path may hold a token, and is not shown."""
        return where(self.url)


def where(url: str) -> str:
    """``scheme://host:port`` of a URL (the scheme's default port if none), without credentials."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}:{port}" if port else f"{parts.scheme}://{host}"


def _credentials(user: str | None, password: str | None, password_file: str,
                 shown: str) -> tuple[str, str] | None:
    if not password_file:
        return None if user is None else (unquote(user), unquote(password or ""))
    if user is None:
        raise ValueError(f"a DICOMweb password file needs the user name in the URL: "
                         f"{shown.replace('://', '://USER@', 1)}/...")
    if password is not None:
        raise ValueError("the DICOMweb password is both in the URL and in a password file: keep one")
    try:
        secret = Path(password_file).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the DICOMweb password file {password_file}: "
                         f"{getattr(exc, 'strerror', None) or one_line(exc, 120)}") from None
    if not secret:
        raise ValueError(f"the DICOMweb password file {password_file} is empty")
    return unquote(user), secret


def store_files(paths: list[Path], endpoint: StowEndpoint, *, timeout: float = 30.0,
                max_request_bytes: int = MAX_REQUEST_BYTES) -> SendReport:
    """Store ``paths`` on ``endpoint`` with STOW-RS.

    Parameters
    ----------
    paths : list of Path
        DICOM files (Part 10, with file meta information), sent in this order.
    endpoint : StowEndpoint
        The receiving DICOMweb server.
    timeout : float
        Seconds allowed for the connection and for each read and write on it.
    max_request_bytes : int
        Bytes of files in one request (a larger file is sent alone).

    Returns
    -------
    SendReport
        A result per file; ``report.ok`` when every file was stored.

    Raises
    ------
    SendError
        The server cannot be reached or refused the first request as a whole (one-line reason).
    """
    started = time.monotonic()
    report = SendReport(endpoint)
    read = [read_sendable(Path(p)) for p in paths]
    batches = _batches([f for f in read if isinstance(f, SendableFile)], max_request_bytes)
    outcome: dict[Path, FileResult] = {}
    for number, batch in enumerate(batches):
        try:
            outcome.update(_store_batch(batch, endpoint, timeout))
        except SendError as exc:
            if number == 0:
                raise
            outcome.update({f.path: FileResult(f.path, f.sop_instance_uid, False, None, str(exc))
                            for later in batches[number:] for f in later})
            break
    report.results = [outcome[item.path] if isinstance(item, SendableFile) else item for item in read]
    report.seconds = time.monotonic() - started
    log_files(report, LOGGER)
    (LOGGER.info if report.ok else LOGGER.warning)("%s (STOW-RS, %d request(s))", report.summary(),
                                                   len(batches))
    return report


def _batches(files: list[SendableFile], limit: int) -> list[list[SendableFile]]:
    """``files`` in order, in runs of at most ``limit`` bytes on disk (a larger file alone)."""
    batches: list[list[SendableFile]] = []
    size = limit + 1
    for f in files:
        length = f.path.stat().st_size
        if size + length > limit:
            batches.append([])
            size = 0
        batches[-1].append(f)
        size += length
    return batches


def multipart_body(parts: list[bytes]) -> tuple[bytes, str]:
    """``parts`` as a ``multipart/related`` body of ``application/dicom`` parts (RFC 2387), and
    the request's Content-Type naming its boundary, one found in no part."""
    boundary = f"stroke-triage-{uuid.uuid4().hex}"
    while any(boundary.encode() in part for part in parts):
        boundary = f"stroke-triage-{uuid.uuid4().hex}"
    delimiter = b"--" + boundary.encode()
    body = b"".join(delimiter + b"\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n"
                    for part in parts) + delimiter + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def _store_batch(batch: list[SendableFile], endpoint: StowEndpoint, timeout: float) -> dict[Path, FileResult]:
    """One STOW-RS request with ``batch``; the result of each of its files."""
    outcome, parts, sent = {}, [], []
    for f in batch:
        try:
            parts.append(f.path.read_bytes())
            sent.append(f)
        except OSError as exc:
            outcome[f.path] = FileResult(f.path, f.sop_instance_uid, False, None,
                                         f"cannot read the file: {exc.strerror}")
    if not sent:
        return outcome
    body, content_type = multipart_body(parts)
    headers = {"Content-Type": content_type, "Accept": "application/dicom+json",
               "User-Agent": USER_AGENT}
    try:
        answer = post(endpoint.url + "/studies", body, headers, timeout=timeout, tls=endpoint.tls,
                      auth=endpoint.auth, max_body=MAX_ANSWER_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        raise SendError(f"DICOMweb server {endpoint} unreachable: {_connection_reason(exc)}") from None
    outcome.update(parse_answer(answer.status, answer.body, sent, endpoint))
    return outcome


def parse_answer(status: int, body: bytes, files: list[SendableFile], endpoint: StowEndpoint) -> dict[Path, FileResult]:
    """The result of each of ``files`` from ``endpoint``'s answer to STOW-RS: HTTP ``status`` and
    ``body``. An answer that lists instances (a DICOM JSON data set with a Referenced or Failed SOP
    Sequence, whatever the status: Orthanc's 400 for a request with a part it cannot read lists
    the others) is taken as it lists them, an instance not listed not stored; a 200 without one
    stores all; any other answer raises :class:`~dicom_node.scu.SendError`."""
    lists = _instance_lists(body)
    if lists is None:
        if status == 200:
            return {f.path: FileResult(f.path, f.sop_instance_uid, True, 0, "stored (HTTP 200)") for f in files}
        detail = " ".join(body.decode(errors="replace").split())[:160]
        raise SendError(f"DICOMweb server {endpoint} answered STOW-RS with HTTP {status}"
                        + (f": {detail}" if detail else ""))
    referenced, failed = lists
    outcome = {}
    for f in files:
        uid = f.sop_instance_uid
        if uid in failed:
            code = failed[uid].get("FailureReason")
            reason = status_text(int(code)) if code is not None else "failed without a Failure Reason"
            outcome[f.path] = FileResult(f.path, uid, False, None if code is None else int(code),
                                         f"SOP instance {uid}: {reason} (HTTP {status})")
        elif uid in referenced:
            code = referenced[uid].get("WarningReason")
            reason = status_text(int(code)) if code is not None else f"stored (HTTP {status})"
            outcome[f.path] = FileResult(f.path, uid, True, 0 if code is None else int(code), reason)
        else:
            outcome[f.path] = FileResult(f.path, uid, False, None,
                                         f"SOP instance {uid}: not in the server's answer (HTTP {status})")
    return outcome


def _instance_lists(body: bytes) -> tuple[dict, dict] | None:
    """The items of the Referenced and of the Failed SOP Sequence of a DICOM JSON answer, by
    Referenced SOP Instance UID; None if the answer has neither."""
    try:
        answer = pydicom.Dataset.from_json(json.loads(body))
    except (ValueError, TypeError, KeyError, AttributeError):  # not JSON, or not DICOM JSON
        return None
    if "ReferencedSOPSequence" not in answer and "FailedSOPSequence" not in answer:
        return None
    return tuple({str(item.get("ReferencedSOPInstanceUID", "")): item for item in answer.get(keyword) or []}
                 for keyword in ("ReferencedSOPSequence", "FailedSOPSequence"))


def _connection_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its certificate is not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or one_line(exc, 120)}"
    if isinstance(exc, TimeoutError):
        return "no answer within the timeout"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return one_line(exc, 160, with_type=True)
