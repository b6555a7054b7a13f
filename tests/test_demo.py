"""``triage demo`` as a newcomer runs it: a node of its own, a phantom sent over DICOM, the signed
alert printed with the volumes beside the truth and the viewer link; the viewer answers with the
printed password while the demo runs, and Ctrl-C stops everything."""

from __future__ import annotations

import http.cookiejar
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from tests.support.node import ROOT


def _lines(process: subprocess.Popen) -> queue.Queue:
    """The process's stdout lines, read in a thread (None at the end)."""
    lines: queue.Queue = queue.Queue()

    def read():
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _read_until(lines: queue.Queue, marker: str, timeout: float) -> str:
    text, deadline = "", time.monotonic() + timeout
    while marker not in text:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {marker!r} after {timeout} s; output:\n{text}") from None
        if line is None:
            raise AssertionError(f"the demo ended before {marker!r}; output:\n{text}")
        text += line
    return text


def test_demo_prints_the_signed_alert_and_keeps_the_viewer_up_until_ctrl_c(tmp_path):
    work = tmp_path / "demo"
    process = subprocess.Popen([sys.executable, "-m", "triage.cli", "demo", "--work", str(work),
                                "--timeout", "240"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        out = _read_until(_lines(process), "Ctrl-C stops it", timeout=300)
        assert "signature valid" in out, out
        volumes = {name: (float(measured), float(truth)) for name, measured, truth in re.findall(
            r"^\s+(core|Tmax > 6 s)\b[^\n]*?\s([\d.]+) mL\s+\(phantom truth ([\d.]+) mL\)", out, re.M)}
        assert set(volumes) == {"core", "Tmax > 6 s"}, out
        core, truth_core = volumes["core"]
        assert abs(core - truth_core) <= max(5.0, 0.15 * truth_core), out
        tmax6, truth_tmax6 = volumes["Tmax > 6 s"]
        assert abs(tmax6 - truth_tmax6) <= max(10.0, 0.10 * truth_tmax6), out
        # What the demo printed is what the node computed.
        result = json.loads(next((work / "node" / "results").glob("*/1/result.json")).read_text())
        assert (result["core_ml"], result["tmax6_ml"]) == (core, tmax6)

        viewer = re.search(r"viewer: (http://127\.0\.0\.1:\d+)/studies/(\S+)", out)
        password = re.search(r"log in as 'demo' with password (\S+)", out)
        assert viewer and password, out
        base, study = viewer.groups()
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        login = urllib.request.Request(f"{base}/api/login", method="POST",
                                       data=json.dumps({"username": "demo",
                                                        "password": password.group(1)}).encode(),
                                       headers={"Content-Type": "application/json"})
        assert opener.open(login, timeout=10).status == 200
        detail = json.loads(opener.open(f"{base}/api/studies/{study}", timeout=10).read())
        assert detail["result"]["core_ml"] == core
        assert opener.open(f"{base}/studies/{study}", timeout=10).status == 200

        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_demo_refuses_a_work_folder_that_is_not_its_own(tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    run = subprocess.run([sys.executable, "-m", "triage.cli", "demo", "--work", str(tmp_path),
                          "--exit-after-alert"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip() == (f"error: {tmp_path} is not empty and not an earlier demo's folder: "
                                  "choose another --work")
    assert precious.read_text() == "keep me"


def test_demo_sends_to_a_running_node_and_checks_its_signature(tmp_path, monkeypatch):
    from tests.support import peers
    from tests.support.node import NodeProcess

    secret, listen = "a-shared-secret-of-the-demo", peers.free_port()
    monkeypatch.setenv("TRIAGE_WEBHOOK_SECRET", secret)
    node = NodeProcess(tmp_path / "node", allow=("DEMO",),
                       extra=("--webhook", f"http://127.0.0.1:{listen}/triage-alerts")).start()
    try:
        run = subprocess.run([sys.executable, "-m", "triage.cli", "demo", "--work", str(tmp_path / "demo"),
                              "--node", f"TRIAGE@127.0.0.1:{node.port}", "--listen", f"127.0.0.1:{listen}",
                              "--secret", secret, "--timeout", "240"],
                             cwd=ROOT, capture_output=True, text=True, timeout=400)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + node.log()[-3000:]
        assert "signature valid" in run.stdout
        assert re.search(r"^\s+core \(rCBF < 30 %\)\s+[\d.]+ mL\s+\(phantom truth", run.stdout, re.M)
        assert "log in as" not in run.stdout  # the running node's users are its own
    finally:
        assert node.stop() == 0
