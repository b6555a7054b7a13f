"""Sending result files to PACS: one C-STORE association per call, a status per file.

:func:`send_files` proposes exactly the SOP classes of the files, each in the transfer syntax
its files are encoded in (and, for Explicit VR Little Endian files, also Implicit VR Little
Endian, the default every Storage SCP accepts, to which pynetdicom converts them), sends every
file over one association and returns a :class:`SendReport` with the status of each file.

A compressed file (e.g. an RLE Lossless Secondary Capture) is proposed in a presentation context
of its own transfer syntax and in one of Explicit and Implicit VR Little Endian: a PACS that
accepts the compressed syntax gets the file as it is; one that accepts only uncompressed syntaxes
(DCMTK ``storescp`` without ``+xa``, some older archives) gets it decompressed by pydicom
(``Dataset.decompress()``), which one log line per send says.

Failures of the whole send raise :class:`SendError` with a one-line reason: the PACS cannot be
reached (connection refused, unknown host, no answer) or rejects the association (for example
an unknown called AE title). Failures of single files (a refused SOP class, a failure status,
an unreadable file, an association lost half-way) are reported per file, so the caller can
retry just those. There is no retry loop here: retries with backoff belong to the service.

Every send and every file is logged on the ``dicom_node.scu`` logger.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ
from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS, code_to_category

from triage.base.errors import one_line

LOGGER = logging.getLogger("dicom_node.scu")
ADDRESS_FORM = "expected AET@HOST:PORT, e.g. PACS@10.0.0.5:104 or PACS@[fd00::5]:104"
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_ADDRESS = re.compile(r"^(?P<aet>[^@]*)@(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^:@\[\]]+)):(?P<port>[^:]+)$")


class SendError(Exception):
    """Nothing could be sent: ``str(error)`` is one line naming the PACS and the reason."""


def _check_ae_title(title: str, what: str) -> str:
    if not title or len(title) > 16 or "\\" in title or not title.isprintable():
        raise ValueError(f"invalid {what} {title!r}: 1 to 16 printable characters, no backslash")
    return title


@dataclass(frozen=True)
class RemoteAE:
    """A DICOM peer: its AE title and TCP address."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> RemoteAE:
        """``"AET@HOST:PORT"`` (IPv6 hosts in brackets) as a RemoteAE; ValueError if malformed."""
        match = _ADDRESS.match(text.strip())
        if not match:
            raise ValueError(f"invalid PACS address {text!r}: {ADDRESS_FORM}")
        try:
            port = int(match["port"])
        except ValueError:
            port = 0
        if not 1 <= port <= 65535:
            raise ValueError(f"invalid PACS address {text!r}: port {match['port']!r} is not 1-65535")
        aet = match["aet"].strip()
        try:
            _check_ae_title(aet, "AE title")
        except ValueError as exc:
            raise ValueError(f"invalid PACS address {text!r}: {exc}") from None
        return cls(aet, match["ipv6"] or match["host"], port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"


@dataclass(frozen=True)
class FileResult:
    """What became of one file: ``status`` is the C-STORE status (None when not sent)."""

    path: Path
    sop_instance_uid: str
    stored: bool
    status: int | None
    reason: str
    decompressed: bool = False  # sent decompressed: the PACS refused the file's compressed syntax


@dataclass
class SendReport:
    """The outcome of :func:`send_files` (or :func:`dicom_node.stow.store_files`), one
    :class:`FileResult` per file in the given order; ``remote`` is the :class:`RemoteAE` (or the
    :class:`~dicom_node.stow.StowEndpoint`) sent to."""

    remote: object
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def stored(self) -> list[Path]:
        return [r.path for r in self.results if r.stored]

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if not r.stored]

    @property
    def decompressed(self) -> list[Path]:
        return [r.path for r in self.results if r.decompressed]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        text = f"{len(self.stored)}/{len(self.results)} files stored on {self.remote} in {self.seconds:.1f} s"
        return text if self.ok else f"{text}; failed: " + "; ".join(
            f"{r.path.name}: {r.reason}" for r in self.failed)


@dataclass(frozen=True)
class SendableFile:
    """A DICOM file to send: its path and the identifiers of its file meta information."""

    path: Path
    sop_class_uid: UID
    sop_instance_uid: str
    transfer_syntax: UID


def read_sendable(path: Path) -> SendableFile | FileResult:
    """The identifiers of one file, or its failure (never sent) if it is not a sendable DICOM file."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        meta = ds.file_meta
        return SendableFile(path, UID(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID),
                            UID(meta.TransferSyntaxUID))
    except Exception as exc:
        reason = one_line(exc, 160)
        return FileResult(path, "", False, None, f"not a sendable DICOM file: {reason}")


def status_text(code: int, comment: str = "") -> str:
    """A Storage Service status as text: ``"failure 0xA700: Out of resources: <comment>"``."""
    category = code_to_category(code)
    description = STORAGE_SERVICE_CLASS_STATUS.get(code, (category, ""))[1]
    return f"{category.lower()} 0x{code:04X}" + "".join(f": {t}" for t in (description, comment) if t)


def _unreachable_reason(remote: RemoteAE, timeout: float, waited: float,
                        tls: ssl.SSLContext | None = None) -> str:
    """Why no association came about, found by a plain TCP connection (and with ``tls`` a TLS
    handshake) after the failure."""
    try:
        with socket.create_connection((remote.host, remote.port), timeout=min(timeout, 5.0)) as probe:
            if tls is not None:
                try:
                    tls.wrap_socket(probe, server_hostname=remote.host).close()
                except ssl.SSLError as exc:
                    return f"DICOM TLS handshake failed: {exc.reason or exc}"
            if waited >= 0.9 * timeout:
                return f"no answer to the association request within {timeout:g} s"
            return "the connection was closed without an answer to the association request"
    except socket.gaierror as exc:
        return f"unknown host {remote.host!r} ({exc.strerror})"
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def _rejection_text(pdu: A_ASSOCIATE_RJ) -> str:
    try:
        return f"{pdu.reason_str} [{pdu.result_str} by {pdu.source_str}]"
    except ValueError:  # values outside the standard
        return f"result {pdu.result}, source {pdu.source}, reason {pdu.reason_diagnostic}"


def _proposals(syntax: UID) -> list[tuple[UID, ...]]:
    """The transfer syntaxes of the presentation contexts proposed for a file in ``syntax``: a
    compressed syntax alone in one (offered with others, a PACS may prefer an uncompressed one)
    and the uncompressed ones in another; Explicit VR Little Endian with Implicit VR Little
    Endian; any other syntax alone."""
    if syntax.is_compressed:
        return [(syntax,), UNCOMPRESSED]
    if syntax == ExplicitVRLittleEndian:
        return [UNCOMPRESSED]
    return [(syntax,)]


def _application_entity(files: list[SendableFile], calling_aet: str, timeout: float) -> AE:
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout
    contexts = dict.fromkeys((f.sop_class_uid, syntaxes)
                             for f in files for syntaxes in _proposals(f.transfer_syntax))
    if len(contexts) > 128:
        raise ValueError(f"{len(contexts)} presentation contexts (SOP class and transfer syntaxes): "
                         "at most 128 fit one association")
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, list(syntaxes))
    return ae


def log_files(report: SendReport, logger: logging.Logger = LOGGER) -> None:
    """One line per file of ``report`` on ``logger`` (a warning for a file not stored)."""
    for result in report.results:
        log = logger.info if result.stored else logger.warning
        log("%s %s (%s) to %s: %s", "stored" if result.stored else "NOT stored", result.path.name,
            result.sop_instance_uid or "-", report.remote, result.reason)


def send_files(paths: list[Path], remote: RemoteAE, *, calling_aet: str = "TRIAGE",
               timeout: float = 30.0, tls: ssl.SSLContext | None = None) -> SendReport:
    """Send ``paths`` to ``remote`` with C-STORE over one association.

    Parameters
    ----------
    paths : list of Path
        DICOM files (Part 10, with file meta information), sent in this order.
    remote : RemoteAE
        The receiving PACS.
    calling_aet : str
        Our AE title.
    timeout : float
        Seconds allowed for the TCP connection, the association and each C-STORE response.
    tls : ssl.SSLContext, optional
        Client context for DICOM TLS (see :meth:`dicom_node.scp.TlsConfig.client_context`): the
        PACS's certificate is verified, for ``remote.host``; None sends over plain TCP.

    Returns
    -------
    SendReport
        A result per file; ``report.ok`` when every file was stored.

    Raises
    ------
    SendError
        The PACS is unreachable or rejected the association (one-line reason).
    """
    _check_ae_title(calling_aet, "calling AE title")
    started = time.monotonic()
    report = SendReport(remote)
    read = [read_sendable(Path(p)) for p in paths]
    files = [f for f in read if isinstance(f, SendableFile)]
    if files:
        outcome = _send(files, remote, calling_aet, timeout, tls)
    else:
        outcome = {}
    for item in read:
        report.results.append(outcome[item.path] if isinstance(item, SendableFile) else item)
    report.seconds = time.monotonic() - started
    log_files(report)
    if report.decompressed:
        refused = sorted({f"{item.sop_class_uid.name} in {item.transfer_syntax.name}"
                          for item in files if item.path in report.decompressed})
        LOGGER.info("%d file(s) sent decompressed: %s accepts no %s", len(report.decompressed), remote,
                    ", ".join(refused))
    (LOGGER.info if report.ok else LOGGER.warning)("%s", report.summary())
    return report


def _send(files: list[SendableFile], remote: RemoteAE, calling_aet: str, timeout: float,
          tls: ssl.SSLContext | None) -> dict[Path, FileResult]:
    ae = _application_entity(files, calling_aet, timeout)
    answers: list = []

    def on_pdu(event) -> None:
        # The PACS's answer is kept here rather than read from the association: a peer that
        # closes the connection right after its A-ASSOCIATE-RJ makes pynetdicom report an abort,
        # and an A-ASSOCIATE-AC accepting none of our contexts ends in an abort too.
        if isinstance(event.pdu, (A_ASSOCIATE_AC, A_ASSOCIATE_RJ)):
            answers.append(event.pdu)

    asked = time.monotonic()
    try:
        assoc = ae.associate(remote.host, remote.port, ae_title=remote.ae_title,
                             evt_handlers=[(evt.EVT_PDU_RECV, on_pdu)],
                             tls_args=(tls, remote.host) if tls is not None else None)
    except OSError as exc:  # the host name does not resolve
        message = f"PACS {remote} unreachable: unknown host {remote.host!r} ({exc.strerror or exc})"
        LOGGER.error("%s", message)
        raise SendError(message) from None
    if answers and isinstance(answers[0], A_ASSOCIATE_RJ):
        message = f"PACS {remote} rejected the association from {calling_aet}: {_rejection_text(answers[0])}"
        LOGGER.error("%s", message)
        raise SendError(message)
    if answers and not assoc.is_established:  # accepted, but none of the presentation contexts
        return {f.path: _not_accepted(f) for f in files}
    if not assoc.is_established:
        message = f"PACS {remote} unreachable: {_unreachable_reason(remote, timeout, time.monotonic() - asked, tls)}"
        LOGGER.error("%s", message)
        raise SendError(message)
    accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
    outcome: dict[Path, FileResult] = {}
    try:
        for f in files:
            outcome[f.path] = _store(assoc, f, accepted)
    finally:
        if assoc.is_established:
            assoc.release()
    return outcome


def _not_accepted(f: SendableFile) -> FileResult:
    syntax = f.transfer_syntax.name + (" or uncompressed" if f.transfer_syntax.is_compressed else "")
    return FileResult(f.path, f.sop_instance_uid, False, None,
                      f"PACS accepts no {f.sop_class_uid.name} in {syntax}")


def _store(assoc, f: SendableFile, accepted: set[tuple[str, str]]) -> FileResult:
    """C-STORE one file; ``accepted`` holds the (SOP class, transfer syntax) pairs the PACS
    accepted. A compressed file whose syntax the PACS refused is sent decompressed."""
    if not assoc.is_established:
        return FileResult(f.path, f.sop_instance_uid, False, None, "association lost before this file was sent")
    dataset: Path | pydicom.Dataset = f.path
    decompress = f.transfer_syntax.is_compressed and (f.sop_class_uid, f.transfer_syntax) not in accepted
    if decompress:
        if not any((f.sop_class_uid, syntax) in accepted for syntax in UNCOMPRESSED):
            return _not_accepted(f)
        try:
            dataset = pydicom.dcmread(f.path)
            dataset.decompress(generate_instance_uid=False)  # lossless: the same instance
        except Exception as exc:
            reason = one_line(exc, 160)
            return FileResult(f.path, f.sop_instance_uid, False, None,
                              f"cannot decompress {f.transfer_syntax.name} for a PACS that accepts only "
                              f"uncompressed {f.sop_class_uid.name}: {reason}")
    try:
        status = assoc.send_c_store(dataset)
    except ValueError:  # no accepted presentation context for this SOP class and syntax
        return _not_accepted(f)
    except RuntimeError:  # the association ended since the check above
        return FileResult(f.path, f.sop_instance_uid, False, None,
                          "association lost before this file was sent")
    if "Status" not in status:
        return FileResult(f.path, f.sop_instance_uid, False, None,
                          "no C-STORE response (timeout or association aborted)")
    code = int(status.Status)
    stored = code_to_category(code) in ("Success", "Warning")
    comment = str(status.get("ErrorComment", "") or "")
    return FileResult(f.path, f.sop_instance_uid, stored, code, status_text(code, comment), decompress)
