"""Storage SCP: receive CT instances over DICOM and spool them durably.

C-ECHO is answered; C-STORE of CT Image Storage and Enhanced CT Image Storage is written to the
:class:`~dicom_node.spool.Spool` exactly as received (no decoding or transcoding of pixel data,
in whatever transfer syntax was negotiated) and made durable (its journal, or its own file
synced), then ``on_stored(info)`` is called, and only then the success status goes back. Other storage SOP classes are acknowledged and
ignored (default), stored like CT (``store_other_classes``) or refused at association time
(``refuse_other_classes``).

Statuses returned to the sender:

========  ===========================================================================
0x0000    stored (or acknowledged and ignored, for a non-CT class by default)
0xA700    out of resources: the spool's disk is full or below its reserve
0xC000    cannot understand: undecodable dataset, a Study, Series or SOP Instance UID or
          the SOP Class UID missing, or one of those three UIDs with non-ASCII characters
0xC210    the instance could not be written, or ``on_stored`` failed (the sender may retry)
========  ===========================================================================

Each association runs in its own thread (pynetdicom), so ``on_stored`` must be thread-safe.
One line per event goes to the ``dicom_node.scp`` logger; pynetdicom's own logger
(``pynetdicom``) is left as the application configures it.

Speed: the receiver sets ``TCP_NODELAY`` on every accepted socket and re-arms
``TCP_QUICKACK`` after each PDU it sends. A sender that leaves Nagle's algorithm on (DCMTK's
default) otherwise waits for a delayed ACK on the tail of every image; see
``benchmarks/bench_ingest.py`` for the measured effect. pynetdicom's network thread polls its
socket every ``DUL_POLL_S`` (0.2 ms) instead of its default 1 ms when idle: with a short handler
that wait was a tenth of each image's time.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification

from triage.base.errors import one_line

from .admission import MAX_WAITING, AdmissionServer
from .instance import CT_STORAGE_CLASSES, InstanceInfo, header_text, instance_info
from .spool import Spool, SpoolFull

LOGGER = logging.getLogger("dicom_node.scp")

TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1,
    JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, HTJ2KLossless,
    HTJ2KLosslessRPCL, HTJ2K, RLELossless,
)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
STORE_FAILED = 0xC210
MAXIMUM_PDU_BYTES = 1 << 20
_REQUIRED_UIDS = (("study_uid", "StudyInstanceUID"), ("series_uid", "SeriesInstanceUID"),
                  ("sop_instance_uid", "SOPInstanceUID"))
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)          # Linux only
DUL_POLL_S = 0.0002   # pynetdicom's network thread sleeps this long when idle (its default: 1 ms)


@dataclass(frozen=True)
class TlsConfig:
    """DICOM TLS: our certificate and key (PEM), and the CA (PEM) that signs the peers'
    certificates. Receiving, with ``ca`` a client certificate is required; without it any
    client may connect over TLS. Sending, our certificate is the client certificate and the
    PACS's is verified against ``ca`` (else the system's trusted CAs), host name included."""

    cert: Path
    key: Path
    ca: Path | None = None

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        if self.ca is not None:
            context.load_verify_locations(self.ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and host name
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        if self.ca is not None:
            context.load_verify_locations(self.ca)
        else:
            context.load_default_certs()
        return context


class _Peer:
    """The calling AE title and address of an association, formatted when a line is logged."""

    def __init__(self, assoc):
        self.assoc = assoc

    def __str__(self) -> str:
        requestor = self.assoc.requestor
        return f"'{requestor.ae_title}' ({requestor.address}:{requestor.port})"


class StorageSCP:
    """The DICOM receiver of the node.

    Parameters
    ----------
    spool : where instances are written.
    ae_title : our AE title.
    host, port : where to listen (``port=0`` picks a free port, see :attr:`port`).
    allowed_aets : calling AE titles allowed to associate; ``None`` accepts any (an empty set
        is refused as a configuration error: nobody could send).
    on_stored : called with the :class:`InstanceInfo` of each stored instance, after it is on
        disk and before the sender gets the success status; if it raises, the sender gets
        0xC210 (the file stays in the spool and a retry replaces it).
    max_associations : simultaneous associations; further requests are rejected. Connections
        that have not sent their A-ASSOCIATE-RQ take no slot (see :mod:`dicom_node.admission`).
    max_connections_per_peer : simultaneous connections from one IP address; further ones are
        closed at once.
    request_timeout : seconds a caller has for the TLS handshake, and again for its
        A-ASSOCIATE-RQ, before the connection is closed.
    timeout : seconds for DIMSE messages, an idle association and a PDU begun but not finished,
        so a stalled peer releases its slot.
    tls : serve DICOM over TLS.
    store_other_classes : store non-CT storage classes like CT instead of ignoring them.
    refuse_other_classes : offer no presentation context for non-CT storage classes.
    quick_ack : re-arm ``TCP_QUICKACK`` after each PDU sent (Linux; off only to measure it).
    """

    def __init__(self, spool: Spool, *, ae_title: str = "TRIAGE", host: str = "0.0.0.0",
                 port: int = 11112, allowed_aets: frozenset[str] | None = None,
                 on_stored: Callable[[InstanceInfo], None] = lambda info: None,
                 max_associations: int = 8, max_connections_per_peer: int = 16,
                 request_timeout: float = 5.0, timeout: float = 30.0, tls: TlsConfig | None = None,
                 store_other_classes: bool = False, refuse_other_classes: bool = False,
                 quick_ack: bool = True):
        if store_other_classes and refuse_other_classes:
            raise ValueError("store_other_classes and refuse_other_classes exclude each other")
        if allowed_aets is not None and not allowed_aets:
            raise ValueError("no calling AE title is allowed: list some, or accept any")
        self.spool, self.on_stored = spool, on_stored
        self.host, self._port = host, port
        self.allowed_aets = (None if allowed_aets is None
                             else frozenset(title.strip() for title in allowed_aets))
        self.timeout, self.tls = timeout, tls
        self.max_associations, self.max_connections_per_peer = max_associations, max_connections_per_peer
        self.request_timeout = request_timeout
        self.store_other_classes = store_other_classes
        self.quick_ack = quick_ack and _QUICKACK is not None
        self._tallies: dict[object, Counter] = {}
        self._latest_series: dict[object, str] = {}  # association -> series of its latest image
        self._server = None
        self.ae = AE(ae_title)
        # The admission server counts the slots; pynetdicom's count includes every connection.
        self.ae.maximum_associations = max_associations + MAX_WAITING
        self.ae.acse_timeout = request_timeout   # an acceptor waits this long for the request
        self.ae.dimse_timeout = self.ae.network_timeout = timeout
        self.ae.maximum_pdu_size = MAXIMUM_PDU_BYTES
        if self.allowed_aets is not None:
            self.ae.require_calling_aet = sorted(self.allowed_aets)
        self.ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            if refuse_other_classes and context.abstract_syntax not in CT_STORAGE_CLASSES:
                continue
            self.ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)

    @property
    def port(self) -> int:
        """The port listened on (the one picked by the system when started with ``port=0``)."""
        return self._server.server_address[1] if self._server else self._port

    def sending_series(self) -> frozenset[str]:
        """The Series Instance UIDs of the latest instance stored from each open association:
        the series their senders are still on (thread-safe)."""
        return frozenset(list(self._latest_series.values()))

    def start(self) -> None:
        """Listen in background threads and return."""
        removed = self.spool.remove_partial_files()
        if removed:
            LOGGER.info("removed %d partial files of an earlier run from the spool", removed)
        handlers = [
            (evt.EVT_CONN_OPEN, self._on_conn_open), (evt.EVT_CONN_CLOSE, self._on_conn_close),
            (evt.EVT_ACCEPTED, self._on_accepted), (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_C_ECHO, self._on_c_echo), (evt.EVT_C_STORE, self._on_c_store),
        ]
        if self.quick_ack:
            handlers.append((evt.EVT_PDU_SENT, self._on_pdu_sent))
        self._server = self.ae.make_server(
            (self.host, self._port), evt_handlers=handlers, server_class=AdmissionServer,
            tls_context=self.tls.server_context() if self.tls else None,
            max_associations=self.max_associations, request_timeout=self.request_timeout,
            max_connections_per_peer=self.max_connections_per_peer)
        self.ae._servers.append(self._server)    # as start_server does: shutdown() removes it
        threading.Thread(target=self._server.serve_forever, name="dicom-accept", daemon=True).start()
        LOGGER.info("listening as '%s' on %s:%d%s", self.ae.ae_title, self.host, self.port,
                    " (TLS)" if self.tls else "")

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop listening, give open associations ``grace_seconds`` to finish, then abort the
        rest (their unacknowledged instances are the senders' to resend)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server = None
        deadline = time.monotonic() + grace_seconds
        # Connections that never got to an association (a port probe, a stalled client) hold
        # nothing to lose: only established associations get the grace period.
        while (any(a.is_established for a in self.ae.active_associations)
               and time.monotonic() < deadline):
            time.sleep(0.05)
        for assoc in self.ae.active_associations:
            if assoc.requestor.primitive is not None:   # the rest end at their request timeout
                LOGGER.warning("aborting the association from %s", _Peer(assoc))
                assoc.abort()
        LOGGER.info("stopped listening")

    # Event handlers (pynetdicom calls them from the association threads)

    def _on_conn_open(self, event) -> None:
        host, port = event.address[:2]
        LOGGER.debug("connection from %s:%d", host, port)
        try:
            event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as error:
            LOGGER.debug("TCP_NODELAY not set for %s:%d: %s", host, port, error)
        if hasattr(event.assoc.dul, "_run_loop_delay"):
            event.assoc.dul._run_loop_delay = DUL_POLL_S

    def _on_pdu_sent(self, event) -> None:
        """Acknowledge the peer's next data at once: Linux falls back to delayed ACKs after
        every exchange, and a Nagle sender then holds the tail of each image back."""
        try:
            event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except (OSError, AttributeError):
            pass                # the connection is closing

    def _on_accepted(self, event) -> None:
        self._tallies[event.assoc] = Counter()
        LOGGER.info("association accepted from %s", _Peer(event.assoc))

    def _on_rejected(self, event) -> None:
        calling = event.assoc.requestor.ae_title
        if self.allowed_aets is not None and calling not in self.allowed_aets:
            reason = "calling AE title not allowed"
        else:
            reason = "the request was not acceptable"
        LOGGER.warning("association rejected from %s: %s", _Peer(event.assoc), reason)

    def _on_conn_close(self, event) -> None:
        self._latest_series.pop(event.assoc, None)
        tally = self._tallies.pop(event.assoc, None)
        host, port = event.address[:2]
        if tally is None:
            LOGGER.debug("connection from %s:%d closed", host, port)
            return
        how = "released" if event.assoc.is_released else "closed without release"
        counts = ", ".join(f"{tally[key]} {key}" for key in ("stored", "ignored", "failed"))
        LOGGER.info("association from %s %s: %s", _Peer(event.assoc), how, counts)

    def _on_c_echo(self, event) -> int:
        LOGGER.info("C-ECHO from %s", _Peer(event.assoc))
        return SUCCESS

    def _on_c_store(self, event) -> int:
        status, outcome = self._store(event)
        tally = self._tallies.get(event.assoc)
        if tally is None:
            tally = self._tallies[event.assoc] = Counter()
        tally[outcome] += 1
        return status

    def _store(self, event) -> tuple[int, str]:
        """Spool one C-STORE request: the status to return and what became of the instance
        (``stored``, ``ignored`` or ``failed``)."""
        peer = _Peer(event.assoc)
        sop_class = UID(event.request.AffectedSOPClassUID)
        if sop_class not in CT_STORAGE_CLASSES and not self.store_other_classes:
            LOGGER.info("ignored: %s from %s", sop_class.name, peer)
            return SUCCESS, "ignored"
        try:
            dataset = event.dataset
            uids = {key: header_text(dataset, keyword) for key, keyword in _REQUIRED_UIDS}
            missing = [keyword for key, keyword in _REQUIRED_UIDS if not uids[key]]
            if not header_text(dataset, "SOPClassUID"):
                missing.append("SOPClassUID")
            non_ascii = [keyword for key, keyword in _REQUIRED_UIDS if not uids[key].isascii()]
            info = None if missing or non_ascii else instance_info(
                dataset, self.spool.path_for(**uids), event.assoc.requestor.ae_title)
        except Exception as error:                # any decoding error of a peer's bytes
            LOGGER.warning("refused an undecodable %s from %s: %s", sop_class.name, peer,
                           one_line(error, with_type=True))
            return CANNOT_UNDERSTAND, "failed"
        if missing:
            LOGGER.warning("refused a %s from %s without %s", sop_class.name, peer,
                           ", ".join(missing))
            return CANNOT_UNDERSTAND, "failed"
        if non_ascii:                             # invalid, and not told apart once decoded
            LOGGER.warning("refused a %s from %s: non-ASCII characters in %s", sop_class.name,
                           peer, ", ".join(non_ascii))
            return CANNOT_UNDERSTAND, "failed"
        with self.spool.writing():  # the series is not removed (retention) meanwhile
            try:
                with event.request.DataSet.getbuffer() as encoded:
                    path = self.spool.store(encoded, sop_class_uid=sop_class,
                                            transfer_syntax_uid=event.context.transfer_syntax, **uids)
            except SpoolFull as error:
                LOGGER.error("out of resources, refused %s from %s: %s",
                             uids["sop_instance_uid"], peer, error)
                return OUT_OF_RESOURCES, "failed"
            except (OSError, ValueError, TypeError) as error:
                LOGGER.error("could not store %s from %s: %s", uids["sop_instance_uid"], peer, error)
                return STORE_FAILED, "failed"
            try:
                self.on_stored(info)
            except Exception as error:            # the caller's hook: report, never crash
                LOGGER.error("stored %s from %s but could not record it: %s",
                             uids["sop_instance_uid"], peer, error)
                return STORE_FAILED, "failed"
        self._latest_series[event.assoc] = uids["series_uid"]
        LOGGER.debug("stored %s from %s", path.name, peer)
        return SUCCESS, "stored"


def main(argv: list[str] | None = None) -> int:
    """A receive-only node: ``python -m dicom_node.scp --spool DIR [--port N] ...``.

    Stores what it receives, records nothing else; stops on SIGTERM or SIGINT. Used by
    ``benchmarks/bench_ingest.py`` and for trying senders by hand.
    """
    parser = argparse.ArgumentParser(prog="python -m dicom_node.scp", description=main.__doc__)
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--port", type=int, default=11112)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--ae-title", default="TRIAGE")
    parser.add_argument("--allow-aet", action="append", help="allowed calling AE (repeatable)")
    parser.add_argument("--reserve-mb", type=float, default=0.0)
    parser.add_argument("--journal-mb", type=int, default=1024,
                        help="write-ahead journal size, 0 = none (default 1024)")
    parser.add_argument("--no-quick-ack", action="store_true", help="leave delayed ACKs on")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # a traceback per dropped caller
    _config.LOG_HANDLER_LEVEL = "none"        # pynetdicom's per-PDU debug formatting: ~4 % CPU
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    spool = Spool(args.spool, reserve_bytes=int(args.reserve_mb * 1e6), journal_bytes=args.journal_mb * 2**20)
    scp = StorageSCP(spool,
                     ae_title=args.ae_title, host=args.host, port=args.port,
                     allowed_aets=frozenset(args.allow_aet) if args.allow_aet else None,
                     quick_ack=not args.no_quick_ack)
    scp.start()
    stop.wait()
    scp.stop()
    spool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
