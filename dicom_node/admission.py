"""The door of the storage SCP: connections that stalled or slow callers cannot lock.

pynetdicom's server wraps each accepted socket for TLS in its accept loop (one silent client
stops every other caller), reads an A-ASSOCIATE-RQ from a blocking socket (half a request holds
its thread for ever) and counts every open connection against ``maximum_associations``
(callers that never associate fill the slots). :class:`AdmissionServer` changes that:

- a caller gets at most ``max_connections_per_peer`` connections at a time from one address,
  and at most :data:`MAX_WAITING` connections of all callers may be waiting to associate;
  further connections are closed at once;
- the TLS handshake runs in the connection's own thread and must finish within
  ``request_timeout`` seconds, and so must the A-ASSOCIATE-RQ after it (the socket's timeout
  and pynetdicom's ACSE timeout), else the connection is closed;
- only connections whose A-ASSOCIATE-RQ arrived take one of the ``max_associations`` slots;
  a request beyond them is rejected (transient, local limit exceeded).

Refused and dropped connections are logged once per peer address and reason per
:data:`WARN_INTERVAL_S`, with the number left unsaid since the last such line.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import Counter

from pynetdicom import evt
from pynetdicom.transport import ThreadedAssociationServer

LOGGER = logging.getLogger("dicom_node.scp")

MAX_WAITING = 256        # connections of all callers not yet associated (handshake or request)
WARN_INTERVAL_S = 60.0   # one warning per peer address and reason per this many seconds
_LOCAL_LIMIT_EXCEEDED = (0x02, 0x03, 0x02)   # A-ASSOCIATE-RJ: transient, provider, local limit


class PeerWarnings:
    """Warnings about a peer address, at most one per address and reason per ``interval_s``."""

    def __init__(self, interval_s: float = WARN_INTERVAL_S):
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], tuple[float, int]] = {}  # -> (logged at, unsaid since)
        self._lock = threading.Lock()

    def warn(self, host: str, reason: str, detail: str = "") -> None:
        """Log ``connection from HOST REASON[: DETAIL]`` unless that reason was logged for the
        address less than ``interval_s`` ago (then it is counted for the next line)."""
        now = time.monotonic()
        with self._lock:
            logged_at, unsaid = self._last.get((host, reason), (None, 0))
            if logged_at is not None and now - logged_at < self.interval_s:
                self._last[(host, reason)] = (logged_at, unsaid + 1)
                return
            self._last[(host, reason)] = (now, 0)
        more = f" ({unsaid} more since the last such line)" if unsaid else ""
        LOGGER.warning("connection from %s %s%s%s", host, reason, f": {detail}" if detail else "", more)


class AdmissionServer(ThreadedAssociationServer):
    """pynetdicom's threaded association server behind :mod:`this module's <dicom_node.admission>`
    door. Made by ``ae.make_server(..., server_class=AdmissionServer, ...)`` with the
    keyword arguments below; pynetdicom's own ``ssl_context`` must stay ``None``.

    tls_context : server context for DICOM TLS (``None``: plain TCP).
    max_associations : simultaneous associations (connections whose A-ASSOCIATE-RQ arrived).
    max_connections_per_peer : simultaneous connections from one IP address, associated or not.
    request_timeout : seconds for the TLS handshake, and again for the A-ASSOCIATE-RQ.
    """

    def __init__(self, *args, tls_context: ssl.SSLContext | None = None, max_associations: int = 8,
                 max_connections_per_peer: int = 16, request_timeout: float = 5.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.tls_context = tls_context
        self.max_associations = max_associations
        self.max_connections_per_peer = max_connections_per_peer
        self.request_timeout = request_timeout
        self.warnings = PeerWarnings()
        self._lock = threading.Lock()
        self._preparing: Counter[str] = Counter()  # host -> connections in their own thread's set-up
        self._started: set = set()                 # associations whose set-up thread has finished
        self._admitted: set = set()                # associations holding a slot
        self._setting_up = threading.local()       # .assoc: the association this thread made
        self.bind(evt.EVT_CONN_OPEN, self._on_conn_open)
        self.bind(evt.EVT_REQUESTED, self._on_requested)
        self.bind(evt.EVT_CONN_CLOSE, self._on_conn_close)

    def verify_request(self, request, client_address) -> bool:
        """In the accept loop: admit the connection unless its address or the waiting room is full."""
        host = client_address[0]
        with self._lock:
            self._started = {assoc for assoc in self._started if assoc.is_alive()}
            self._admitted = {assoc for assoc in self._admitted if assoc.is_alive()}
            from_peer = self._preparing[host] + sum(a.requestor.address == host for a in self._started)
            waiting = sum(self._preparing.values()) + len(self._started - self._admitted)
            if from_peer < self.max_connections_per_peer and waiting < MAX_WAITING:
                self._preparing[host] += 1
                return True
        if from_peer >= self.max_connections_per_peer:
            self.warnings.warn(host, "refused", f"at most {self.max_connections_per_peer} "
                                                "connections from one address at a time")
        else:
            self.warnings.warn(host, "refused", f"{MAX_WAITING} connections are waiting to associate")
        return False

    def process_request_thread(self, request, client_address) -> None:
        """In the connection's thread: the TLS handshake, then pynetdicom's association."""
        host = client_address[0]
        self._setting_up.assoc = None
        try:
            request.settimeout(self.request_timeout)   # also bounds reading the A-ASSOCIATE-RQ
            if self.tls_context is not None:
                try:
                    request = self.tls_context.wrap_socket(request, server_side=True)
                except OSError as error:
                    self.warnings.warn(host, "dropped", f"TLS handshake failed or took over "
                                                        f"{self.request_timeout:g} s ({error})")
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)
        finally:
            # One step from "setting up" to "started", so that no check counts it twice or not at all
            assoc = self._setting_up.assoc
            with self._lock:
                if assoc is not None and assoc.is_alive():
                    self._started.add(assoc)
                self._preparing[host] -= 1
                if not self._preparing[host]:
                    del self._preparing[host]

    def _on_conn_open(self, event) -> None:
        """In the connection's thread, just before its association thread starts."""
        self._setting_up.assoc = event.assoc

    def _on_requested(self, event) -> None:
        """The A-ASSOCIATE-RQ arrived: take a slot, or reject the request if none is free."""
        assoc = event.assoc
        with self._lock:
            self._admitted = {a for a in self._admitted if a.is_alive()}
            admitted = len(self._admitted) < self.max_associations
            if admitted:
                self._admitted.add(assoc)
        if admitted:
            assoc.dul.socket.socket.settimeout(assoc.network_timeout)   # a peer stalled mid-PDU
            return
        self.warnings.warn(assoc.requestor.address, "rejected",
                           f"at most {self.max_associations} associations at a time")
        assoc.acse.send_reject(*_LOCAL_LIMIT_EXCEEDED)
        assoc.kill()

    def _on_conn_close(self, event) -> None:
        if event.assoc.requestor.primitive is None:
            self.warnings.warn(event.address[0], "closed", "before an association request (allowed: "
                                                           f"{self.request_timeout:g} s)")
