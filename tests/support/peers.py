"""Real DICOM peers for tests: DCMTK's echoscu/storescu/storescp on loopback ports.

Every server is a child process stopped by its own process id in a ``finally``. DCMTK is called
by its Debian path: pynetdicom installs Python scripts named ``storescu``/``echoscu`` that would
otherwise shadow it on PATH.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

DCMTK_BIN = Path("/usr/bin")


def dcmtk(tool: str) -> str:
    """Absolute path of a DCMTK tool (``storescu``, ``echoscu``, ``storescp``...)."""
    path = DCMTK_BIN / tool
    if not path.exists():
        raise RuntimeError(f"DCMTK's {tool} is missing: run scripts/setup.sh (apt-get install dcmtk)")
    return str(path)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0, process: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args[0]} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the process by its id, wait, then SIGKILL if it is still there."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout)


def nodelay_env(nodelay: bool) -> dict:
    """The environment for a DCMTK tool, with Nagle's algorithm off when ``nodelay``."""
    env = dict(os.environ)
    env.pop("TCP_NODELAY", None)
    if nodelay:
        env["TCP_NODELAY"] = "1"
    return env


def echoscu(port: int, *, calling: str = "MODALITY", called: str = "TRIAGE", extra: tuple[str, ...] = (),
            timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run DCMTK ``echoscu`` against 127.0.0.1:``port`` (``extra``: options such as ``+tls ...``)."""
    return subprocess.run([dcmtk("echoscu"), "-aet", calling, "-aec", called, *extra, "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=timeout)


def storescu(port: int, paths: list[Path] | Path, *, calling: str = "MODALITY", called: str = "TRIAGE",
             nodelay: bool = True, extra: tuple[str, ...] = (), timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Send files (or a directory, recursively) with DCMTK ``storescu``."""
    targets = [paths] if isinstance(paths, (str, Path)) else list(paths)
    scan = ("+sd", "+r") if any(Path(p).is_dir() for p in targets) else ()
    command = [dcmtk("storescu"), "-aet", calling, "-aec", called, *scan, *extra,
               "127.0.0.1", str(port), *map(str, targets)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=nodelay_env(nodelay))


@contextmanager
def storescp(directory: Path, *, ae_title: str = "PACS", port: int | None = None, nodelay: bool = True,
             extra: tuple[str, ...] = ()):
    """DCMTK ``storescp`` receiving into ``directory``; yields ``(port, process)``."""
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    command = [dcmtk("storescp"), "-aet", ae_title, "-od", str(directory), *extra, str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=nodelay_env(nodelay))
    try:
        wait_for_port(port, process=process)
        yield port, process
    finally:
        stop_process(process)


def make_certificates(root: Path) -> dict[str, Path]:
    """A test CA, and a server and a client certificate it signed (RSA 2048, PEM, 2 days). The
    server's names 127.0.0.1 and localhost (subjectAltName), so a client that checks host names
    accepts it on loopback. Keys: ``ca.pem``, ``server.key``/``.pem``, ``client.key``/``.pem``."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", str(root / "ca.key"), "-out", str(root / "ca.pem"))
    (root / "server.ext").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", str(root / f"{name}.key"), "-out", str(root / f"{name}.csr"))
        openssl("x509", "-req", "-days", "2", "-in", str(root / f"{name}.csr"), "-CA", str(root / "ca.pem"),
                "-CAkey", str(root / "ca.key"), "-CAcreateserial", "-out", str(root / f"{name}.pem"),
                *(("-extfile", str(root / "server.ext")) if name == "server" else ()))
    return {name: root / name for name in ("ca.pem", "server.key", "server.pem", "client.key", "client.pem")}


def wait_for_log(name: str, read, process: subprocess.Popen, pattern: str, *, count: int = 1,
                 timeout: float = 60.0) -> list[str]:
    """The lines of ``read()`` (a process's log) matching ``pattern`` once there are ``count``;
    AssertionError (with the log's end) after ``timeout`` s or when ``process`` exited first."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in read().splitlines() if re.search(pattern, line)]
        if len(lines) >= count:
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: no {count} log lines matching {pattern!r} after {timeout} s; "
                                 f"log:\n{read()[-4000:]}")
        if process.poll() is not None:
            raise AssertionError(f"{name} exited with {process.returncode}; log:\n{read()[-4000:]}")
        time.sleep(0.1)
