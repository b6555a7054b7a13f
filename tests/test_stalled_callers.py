"""Stalled or slow callers cannot lock the DICOM port (issue 15).

``triage serve`` runs as a child process with a real Orthanc as its PACS. 60 callers from other
loopback addresses connect and stall: they send nothing, half an A-ASSOCIATE-RQ, or (on the TLS
port) half a TLS ClientHello or a handshake and then half a request; each one the node closes
is opened again, so 60 are held all along. Meanwhile DCMTK ``echoscu`` (``+tls`` on the TLS
port) must be answered within 2 s, and a phantom study sent with ``storescu`` must come back
from the node as an SR in Orthanc.
"""

from __future__ import annotations

import re
import socket
import ssl
import struct
import threading
import time
from dataclasses import replace

import pydicom
import pytest

from sample_data.phantom import CASES, make_phantom, write_dicom
from tests.support import peers
from tests.support.node import NodeProcess
from tests.support.orthanc import orthanc

N_SLICES, N_FRAMES = 8, 25
STALLED = 60
STALLED_ADDRESSES = ("127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13")  # 15 each: under the cap
ECHO_LIMIT_S = 2.0
HALF_REQUEST = (struct.pack(">BBL", 0x01, 0, 200) + struct.pack(">HH", 1, 0)   # claims 200 bytes,
                + b"TRIAGE".ljust(16) + b"CT1".ljust(16) + bytes(32))          # sends the fixed 68
HALF_CLIENT_HELLO = struct.pack(">BHH", 0x16, 0x0301, 512) + bytes(20)        # a record of 512 bytes, 20 sent


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A small phantom CTP series (128 x 128, 8 slices x 25 time points): files, Study UID."""
    root = tmp_path_factory.mktemp("study")
    phantom = make_phantom(replace(CASES["mismatch"], matrix=128, n_slices=N_SLICES, n_frames=N_FRAMES))
    files = write_dicom(phantom, root)
    return {"files": files, "study_uid": str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return peers.make_certificates(tmp_path_factory.mktemp("tls"))


class Stallers:
    """``count`` stalled connections to 127.0.0.1:``port``, held from ``addresses`` in turn by a
    background thread that opens each one again once the node closed it (EOF seen, counted in
    :attr:`closed_by_node`). ``kinds`` are what each connection sends before it stalls, in turn:
    ``silent``, ``half-request``, ``half-hello``, ``tls-half-request`` (needs ``tls``, a client
    context)."""

    def __init__(self, port: int, kinds: tuple[str, ...], *, count: int = STALLED,
                 addresses: tuple[str, ...] = STALLED_ADDRESSES, tls: ssl.SSLContext | None = None):
        self.port, self.kinds, self.count, self.addresses, self.tls = port, kinds, count, addresses, tls
        self.closed_by_node = 0
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def __enter__(self) -> "Stallers":
        self._thread.start()
        deadline = time.monotonic() + 30
        while self.opened < self.count:
            assert time.monotonic() < deadline, f"only {self.opened} of {self.count} stalled callers connected"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _open(self, index: int) -> socket.socket:
        kind = self.kinds[index % len(self.kinds)]
        sock = socket.socket()
        sock.bind((self.addresses[index % len(self.addresses)], 0))
        sock.connect(("127.0.0.1", self.port))
        if kind == "half-request":
            sock.sendall(HALF_REQUEST)
        elif kind == "half-hello":
            sock.sendall(HALF_CLIENT_HELLO)
        elif kind == "tls-half-request":
            sock = self.tls.wrap_socket(sock, server_hostname="127.0.0.1")
            sock.sendall(HALF_REQUEST)
        sock.setblocking(False)
        self.opened += 1
        return sock

    def _hold(self) -> None:
        held = {index: self._open(index) for index in range(self.count)}
        try:
            while not self._stop.wait(0.05):
                for index, sock in list(held.items()):
                    try:
                        data = sock.recv(1)
                    except (BlockingIOError, ssl.SSLWantReadError):
                        continue
                    except OSError:       # reset by the node
                        data = b""
                    assert data == b"", f"the node sent {data!r} to a stalled caller"
                    sock.close()
                    self.closed_by_node += 1
                    held[index] = self._open(index)
        finally:
            for sock in held.values():
                sock.close()


def client_tls(certificates) -> tuple[ssl.SSLContext, tuple[str, ...]]:
    """A scanner's TLS: a Python client context and DCMTK's options, with the client certificate."""
    context = ssl.create_default_context(cafile=str(certificates["ca.pem"]))
    context.load_cert_chain(certificates["client.pem"], certificates["client.key"])
    dcmtk = ("+tls", str(certificates["client.key"]), str(certificates["client.pem"]),
             "+cf", str(certificates["ca.pem"]))
    return context, dcmtk


def timed_echo(port: int, extra: tuple[str, ...] = ()) -> float:
    """Seconds for a C-ECHO from the allowed caller CT1 (asserted answered)."""
    started = time.monotonic()
    run = peers.echoscu(port, calling="CT1", extra=extra, timeout=60)
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    return elapsed


def wait_for_sr(pacs, study_uid: str, node: NodeProcess, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for study_id in pacs.find("Study", {"StudyInstanceUID": study_uid}):
            if any(s["MainDicomTags"].get("Modality") == "SR" for s in pacs.series(study_id)):
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"no SR of the study in Orthanc after {timeout} s; node log:\n{node.log()[-4000:]}")
        time.sleep(0.5)


def run_under_stall(node: NodeProcess, pacs, study, kinds, *, tls=None, dcmtk_tls=()) -> None:
    """Hold 60 stalled callers; echo within 2 s, send the study, wait for its SR in Orthanc;
    the stalled callers were closed by the node meanwhile and warned about without flooding."""
    with Stallers(node.port, kinds, tls=tls) as stallers:
        assert timed_echo(node.port, dcmtk_tls) < ECHO_LIMIT_S
        run = peers.storescu(node.port, study["files"], calling="CT1", extra=dcmtk_tls)
        assert run.returncode == 0, run.stderr[-2000:]
        assert timed_echo(node.port, dcmtk_tls) < ECHO_LIMIT_S
        wait_for_sr(pacs, study["study_uid"], node)
        deadline = time.monotonic() + 30
        while stallers.closed_by_node < STALLED:         # each closed once at least
            assert time.monotonic() < deadline, f"{stallers.closed_by_node} stalled callers closed by the node"
            time.sleep(0.1)
    log = node.log()
    assert "association rejected" not in log
    warnings = re.findall(r"connection from 127\.0\.0\.1\d .*", log)
    assert warnings and len(warnings) < stallers.closed_by_node / 4, warnings  # once a minute per address


def test_sixty_stalled_callers_on_the_plain_port(study, tmp_path):
    with orthanc(tmp_path / "orthanc") as pacs:
        node = NodeProcess(tmp_path / "node", pacs=f"{pacs.aet}@127.0.0.1:{pacs.dicom_port}").start()
        try:
            run_under_stall(node, pacs, study, ("silent", "half-request"))
        finally:
            assert node.stop() == 0
    assert "before an association request (allowed: 5 s)" in node.log()


def test_sixty_stalled_callers_on_the_tls_port(study, certificates, tmp_path):
    c = certificates
    context, dcmtk_tls = client_tls(c)
    ours = ("--tls-cert", str(c["server.pem"]), "--tls-key", str(c["server.key"]), "--tls-ca", str(c["ca.pem"]))
    with orthanc(tmp_path / "orthanc") as pacs:
        node = NodeProcess(tmp_path / "node", pacs=f"{pacs.aet}@127.0.0.1:{pacs.dicom_port}", extra=ours).start()
        try:
            run_under_stall(node, pacs, study, ("silent", "half-hello", "tls-half-request"),
                            tls=context, dcmtk_tls=dcmtk_tls)
        finally:
            assert node.stop() == 0
    log = node.log()
    assert "dropped: TLS handshake failed or took over 5 s" in log
    assert "before an association request (allowed: 5 s)" in log   # handshaken, then half a request


def test_the_seventeenth_connection_from_one_address_is_refused(tmp_path):
    """16 silent connections from 127.0.0.2 are held (request timeout 30 s); the 17th and more
    are closed at once and warned about once; 127.0.0.1 still gets its C-ECHO answered."""
    node = NodeProcess(tmp_path / "node", extra=("--association-request-timeout", "30")).start()
    held = []
    try:
        for _ in range(16):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", node.port))
            held.append(sock)
        time.sleep(0.5)
        refused = []
        for _ in range(4):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", node.port))
            sock.settimeout(10)
            try:
                refused.append(sock.recv(1))
            except ConnectionResetError:
                refused.append(b"")
            sock.close()
        assert refused == [b""] * 4
        for sock in held:                                # the first 16 are still open
            sock.settimeout(0.2)
            with pytest.raises(TimeoutError):
                sock.recv(1)
        assert timed_echo(node.port) < ECHO_LIMIT_S
        lines = node.wait_for_log(r"connection from 127\.0\.0\.2 refused: at most 16 connections from one address")
        assert len(lines) == 1
    finally:
        for sock in held:
            sock.close()
        assert node.stop() == 0
