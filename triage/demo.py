"""``triage demo``: a newcomer's first run of the whole loop on one machine.

It generates a synthetic CT perfusion study (``sample_data``, truth known), sends it with DICOM
C-STORE to a node, listens for the node's signed alert on a loopback HTTP port, checks the
signature, and prints the alert as it arrives: the volumes beside the phantom's truth, the
decision, the quality and the link to the study in the viewer.

By default it starts a node of its own (``triage serve`` in a child process, data in
``--work``, an admin user ``demo`` with a random password printed for the viewer) and keeps it
running until Ctrl-C so the viewer can be opened. With ``--node AET@HOST:PORT`` it sends to a
node that is already running; that node's ``--webhook`` must point at ``--listen`` and its
webhook secret (``TRIAGE_WEBHOOK_SECRET`` or ``--webhook-secret-file``) be the ``--secret``
given here.

Research use only: the phantom's figures are not clinical validation.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from triage.base.errors import InputError

ALERT_PATH = "/triage-alerts"
CALLING_AET = "DEMO"
NODE_START_S = 60.0
WORK_MARKER = ".triage-demo"


@dataclass(frozen=True)
class Alert:
    """One POST received from the node: its headers (lower-case names) and raw body."""

    headers: dict[str, str]
    body: bytes


class AlertReceiver:
    """A loopback HTTP endpoint that plays the stroke team's: every POST is acknowledged (200)
    and queued for :meth:`next`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        received: queue.Queue[Alert] = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                received.put(Alert({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # the demo prints what matters itself
                pass

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise InputError(f"cannot listen for alerts on {host}:{port}: {exc.strerror or exc}") from None
        self._received = received
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{ALERT_PATH}"

    def next(self, timeout: float) -> Alert | None:
        try:
            return self._received.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + NODE_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise InputError(f"the node exited with status {process.returncode} before listening: "
                             f"{_last_line(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise InputError(f"the node did not listen on port {port} within {NODE_START_S:.0f} s "
                     f"(log: {log_path})")


def _last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return lines[-1] if lines else "no output"


class LocalNode:
    """``triage serve`` in a child process with its data in ``work/node``: DICOM, HTTP (the
    viewer) and the demo's webhook on loopback ports; an admin user ``demo``."""

    def __init__(self, work: Path, *, webhook: str, secret: str):
        self.data_dir = work / "node"
        self.log_path = work / "node.log"
        self.dicom_port, self.http_port = _free_port(), _free_port()
        self.password = secrets.token_urlsafe(9)
        self._add_user()
        command = [sys.executable, "-m", "triage.cli", "serve", "--data-dir", str(self.data_dir),
                   "--listen-address", "127.0.0.1", "--dicom-port", str(self.dicom_port),
                   "--http-port", str(self.http_port), "--allow-aet", CALLING_AET,
                   "--quiet-seconds", "2", "--webhook", webhook,
                   "--spool-journal-mb", "64"]  # one small study: not the default 1 GiB of disk
        environment = {**os.environ, "TRIAGE_WEBHOOK_SECRET": secret}  # not on the command line
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=environment)
        _wait_for_port(self.dicom_port, self.process, self.log_path)
        _wait_for_port(self.http_port, self.process, self.log_path)

    def _add_user(self) -> None:
        run = subprocess.run([sys.executable, "-m", "triage.cli", "user", "add", "demo", "--role", "admin",
                              "--data-dir", str(self.data_dir)],  # the password on stdin
                             input=self.password + "\n", capture_output=True, text=True)
        if run.returncode != 0:
            raise InputError(f"cannot create the demo user: {run.stderr.strip() or run.stdout.strip()}")

    def wait_for_result(self, timeout: float) -> bool:
        """Wait until a result folder is whole (the alert may come first: it is sent from the
        result's announcement while the maps are still being written); whether one is."""
        deadline = time.monotonic() + timeout
        while not any((self.data_dir / "results").glob("*/[0-9]*/result.json")):
            if time.monotonic() > deadline or self.process.poll() is not None:
                return False
            time.sleep(0.2)
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _make_study(case: str, out: Path):
    """The phantom study's files and truth volumes (mL)."""
    from sample_data.phantom import CASES, make_phantom, write_dicom

    if case not in CASES:
        raise InputError(f"unknown phantom case {case!r}: one of {', '.join(CASES)}")
    phantom = make_phantom(CASES[case])
    return write_dicom(phantom, out), phantom.truth.volumes


def _send(paths: list[Path], node: str) -> float:
    """C-STORE ``paths`` to ``node`` (AET@HOST:PORT); the seconds it took."""
    from dicom_node.scu import RemoteAE, SendError, send_files

    try:
        remote = RemoteAE.parse(node)
        report = send_files(paths, remote, calling_aet=CALLING_AET, timeout=60.0)
    except (ValueError, SendError) as exc:
        raise InputError(str(exc)) from None
    if not report.ok:
        failed = report.failed
        raise InputError(f"{len(failed)} of {len(paths)} images not stored by {node}: "
                         f"{failed[0].reason}")
    return report.seconds


def _print_alert(alert: Alert, secret: str | None, truth: dict, seconds: float) -> dict:
    from triage.node.alerts import SIGNATURE_HEADER, verify_signature

    signature = alert.headers.get(SIGNATURE_HEADER.lower(), "")
    if secret is None:
        check = "not checked (no --secret)"
    elif verify_signature(secret, signature, alert.body):
        check = "valid"
    else:
        check = "INVALID: this alert did not come from the node with this secret"
    message = json.loads(alert.body)
    print(f"\nalert received {seconds:.1f} s after the last image (signature {check}):")
    print(f"  {message.get('kind', '?')}: {message.get('message', '')}")
    for name, label in (("core_ml", "core (rCBF < 30 %)"), ("tmax6_ml", "Tmax > 6 s"),
                        ("tmax10_ml", "Tmax > 10 s"), ("mismatch_ml", "mismatch")):
        value = (message.get("volumes") or {}).get(name)
        expected = truth.get(name)
        if value is not None:
            print(f"  {label:<20} {value:7.1f} mL   (phantom truth {expected:.1f} mL)"
                  if expected is not None else f"  {label:<20} {value:7.1f} mL")
    link = (message.get("links") or {}).get("study")
    if link:
        print(f"  viewer: {link}")
    return message


def _fresh_work_dir(work: Path) -> Path:
    """``work`` emptied, when it is missing, empty or an earlier demo's (marked); else InputError."""
    work = work.resolve()
    if work.exists() and any(work.iterdir()):
        if not (work / WORK_MARKER).exists():
            raise InputError(f"{work} is not empty and not an earlier demo's folder: choose another --work")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / WORK_MARKER).write_text("made by triage demo: emptied by the next run\n")
    return work


def run_demo(args) -> int:
    """``triage demo``: see the module docstring. 0 once an alert arrived, 2 on bad input or
    when no alert arrived within ``--timeout``."""
    work = _fresh_work_dir(Path(args.work))
    host, _, port = (args.listen or "127.0.0.1:0").rpartition(":")
    receiver = AlertReceiver(host or "127.0.0.1", int(port or 0))
    secret = args.secret or (None if args.node else secrets.token_hex(16))
    node = None
    try:
        if args.node:
            target = args.node
            print(f"sending to the node at {target}; it must run with --webhook {receiver.url}"
                  + (" and the --secret given here as its webhook secret" if secret else ""))
        else:
            print(f"starting a node (data and log in {work}) ...")
            node = LocalNode(work, webhook=receiver.url, secret=secret)
            target = f"TRIAGE@127.0.0.1:{node.dicom_port}"
        print(f"generating the phantom case {args.case!r} ...")
        paths, truth = _make_study(args.case, work / "study")
        seconds = _send(paths, target)
        sent_at = time.monotonic()
        print(f"sent {len(paths)} images to {target} in {seconds:.1f} s; waiting for the alert ...")
        alert = receiver.next(args.timeout)
        if alert is None:
            raise InputError(f"no alert within {args.timeout:.0f} s"
                             + (f" (node log: {node.log_path})" if node else ""))
        _print_alert(alert, secret, truth, time.monotonic() - sent_at)
        if node:
            if not node.wait_for_result(timeout=60):
                print(f"  the viewer has no result yet (node log: {node.log_path})")
            print(f"  log in as 'demo' with password {node.password}")
        if node and not args.exit_after_alert:
            print("\nthe node keeps running for the viewer; Ctrl-C stops it")
            try:
                while node.process.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        print("research use only: phantom figures, not clinical validation")
        return 0
    finally:
        if node:
            node.stop()
        receiver.close()
