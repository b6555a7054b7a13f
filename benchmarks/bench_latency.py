"""Latency of the node: last image received to the SR stored in PACS and to the stroke team's
alert, for a clinical-size series (512 x 512, 32 slices x 40 time points: 1,280 images).

Run from the repository root: ``python3 benchmarks/bench_latency.py [--data DIR] [--pacs orthanc]``.

The series is written once with ``sample_data`` into ``DIR/dicom`` (the layout of
``bench_analyze.py``: the same ``--data`` folder serves both). Each run starts fresh processes
on loopback ports: a receiving PACS (Orthanc, the realistic one, or DCMTK ``storescp``) and
``triage serve`` with its default settings (series complete after 3 quiet seconds) sending
there, and alerting a real HTTP endpoint on loopback (``--webhook``, signed). DCMTK ``storescu``
sends the series to the node with Nagle's algorithm off (``TCP_NODELAY=1`` in its environment).
Printed per run: the transfer (seconds, images/s, MB/s), the latency from the last image
acknowledged (``storescu`` exiting) to the SR found at the PACS and to the alert received by the
endpoint (both polled every 0.1 s), and its breakdown from the node's log lines and the result
files' modification times.

Goals (issue 12): last image -> signed alert <= 5 s, -> SR in PACS <= 8 s (the node reads the
series while it arrives, declares it complete as soon as it is known to be whole, alerts from
the result's announcement and sends the SR first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_analyze import prepare  # noqa: E402  (this folder is on sys.path when run as a script)

from tests.support import peers  # noqa: E402
from tests.support.endpoint import Endpoint  # noqa: E402
from tests.support.node import NodeProcess  # noqa: E402
from tests.support.orthanc import orthanc  # noqa: E402

GOAL_S, ALERT_GOAL_S = 8.0, 5.0
WEBHOOK_SECRET = "bench-latency-webhook-secret"
POLL_S = 0.1
TIMEOUT_S = 600.0


def log_time(node: NodeProcess, pattern: str) -> float:
    """Wall-clock time (s since the epoch) of the node's first log line matching ``pattern``;
    the log's timestamps are local time with milliseconds."""
    (line, *_) = node.wait_for_log(pattern, timeout=TIMEOUT_S)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


class OrthancPacs:
    """Orthanc as the PACS; the SR has arrived once a series of modality SR exists."""

    name = "Orthanc (REST /tools/find polled)"

    def __init__(self, stack: ExitStack, root: Path):
        self.server = stack.enter_context(orthanc(root / "orthanc"))
        self.address = f"{self.server.aet}@127.0.0.1:{self.server.dicom_port}"

    def has_sr(self) -> bool:
        return bool(self.server.find("Series", {"Modality": "SR"}))


class StorescpPacs:
    """DCMTK ``storescp`` as the PACS (Nagle off); its file names start with the modality."""

    name = "DCMTK storescp (output folder polled)"

    def __init__(self, stack: ExitStack, root: Path):
        self.folder = root / "storescp"
        port, _ = stack.enter_context(peers.storescp(self.folder, ae_title="PACS"))
        self.address = f"PACS@127.0.0.1:{port}"

    def has_sr(self) -> bool:
        return any(path.name.startswith("SR") for path in self.folder.iterdir())


PACS_KINDS = {"orthanc": OrthancPacs, "storescp": StorescpPacs}


def run_once(series_dir: Path, n_files: int, megabytes: float, pacs_kind: str, scratch: Path) -> None:
    """Send the series, wait for the SR at the PACS, print the timeline."""
    root = scratch / "run"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    with ExitStack() as stack:
        pacs = PACS_KINDS[pacs_kind](stack, root)
        endpoint = stack.enter_context(Endpoint())
        os.environ["TRIAGE_WEBHOOK_SECRET"] = WEBHOOK_SECRET  # the node inherits it
        node = NodeProcess(root / "node", pacs=pacs.address, allow=("CT1",), quiet_seconds=None,
                           extra=("--webhook", endpoint.url())).start()
        stack.callback(node.stop)
        start = time.time()
        sent = peers.storescu(node.port, series_dir, calling="CT1", nodelay=True, timeout=TIMEOUT_S)
        last_ack = time.time()
        if sent.returncode != 0:
            sys.exit(f"storescu failed: {sent.stderr.strip()[-300:]}")
        sr_stored = alerted = None
        while sr_stored is None or alerted is None:
            if time.time() - last_ack > TIMEOUT_S or node.process.poll() is not None:
                sys.exit(f"no SR at the PACS or no alert; node log:\n{node.log()[-3000:]}")
            time.sleep(POLL_S)
            if sr_stored is None and pacs.has_sr():
                sr_stored = time.time()
            if alerted is None and endpoint.requests:
                alerted = time.time()
        (uid,) = [p.name for p in (root / "node" / "results").iterdir()]
        out_dir = root / "node" / "results" / uid / "1"
        sent_line = node.wait_for_log(r"sent \d+ objects of series")[0]
        timeline = {
            "start": start, "last_ack": last_ack, "sr_stored": sr_stored, "alerted": alerted,
            "first_image": log_time(node, r"series .*: first image from"),
            "queued": log_time(node, r"analysis generation 1 queued"),
            "started": log_time(node, r"generation 1 started"),
            "result_json": (out_dir / "result.json").stat().st_mtime,
            "exported": max(p.stat().st_mtime for p in (out_dir / "dicom").glob("*.dcm")),
            "finished": log_time(node, r"generation 1 finished"),
            "sent": log_time(node, r"sent \d+ objects of series"),
        }
        result = json.loads((out_dir / "result.json").read_text())
        report(timeline, result, sent_line, n_files, megabytes)


def report(t: dict, result: dict, sent_line: str, n_files: int, megabytes: float) -> None:
    transfer = t["last_ack"] - t["start"]
    latency = t["sr_stored"] - t["last_ack"]
    print(f"transfer: {n_files} images, {megabytes:.0f} MB in {transfer:.1f} s "
          f"({n_files / transfer:.0f} images/s, {megabytes / transfer:.0f} MB/s); first image logged "
          f"by the node {t['first_image'] - t['start']:.2f} s after storescu started")
    print(f"latency, last image acknowledged -> SR stored at the PACS: {latency:.1f} s "
          f"(goal <= {GOAL_S:.0f} s: {'met' if latency <= GOAL_S else 'NOT met'})")
    alert = t["alerted"] - t["last_ack"]
    print(f"latency, last image acknowledged -> alert received by the endpoint: {alert:.1f} s "
          f"(goal <= {ALERT_GOAL_S:.0f} s: {'met' if alert <= ALERT_GOAL_S else 'NOT met'}; "
          f"{t['result_json'] - t['alerted']:.1f} s before the whole result.json, "
          f"{t['sr_stored'] - t['alerted']:.1f} s before the SR at the PACS)")
    stages = (("quiet period and completion check", "last_ack", "queued"),
              ("queued -> analysis process started", "queued", "started"),
              ("analysis process started -> alert", "started", "alerted"),
              ("alert -> whole result.json", "alerted", "result_json"),
              ("DICOM export (result.json -> last object)", "result_json", "exported"),
              ("analysis process exit, job bookkeeping", "exported", "finished"),
              ("send to the PACS -> SR found there", "finished", "sr_stored"))
    for label, begin, end in stages:
        print(f"  {label:<44}{t[end] - t[begin]:6.1f} s")
    pipeline = ", ".join(f"{name} {seconds:.1f}" for name, seconds in result["timings_s"].items())
    print(f"  analysis stages in result.json (s): {pipeline}")
    print(f"  node: {sent_line.split(' ', 3)[-1].strip()}")
    print(f"  result: core {result['core_ml']:.1f} mL, Tmax>6 s {result['tmax6_ml']:.1f} mL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="folder keeping the generated series (reused)")
    parser.add_argument("--pacs", choices=sorted(PACS_KINDS), default="orthanc",
                        help="receiving PACS (default orthanc)")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as scratch_dir:
        scratch = Path(scratch_dir)
        data = args.data or scratch / "series"
        prepare(data, "mismatch")
        files = sorted((data / "dicom").rglob("*.dcm"))
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
              f"series {len(files)} files (512 x 512, 32 slices x 40 time points, case mismatch); "
              f"sender DCMTK storescu with TCP_NODELAY=1; PACS {PACS_KINDS[args.pacs].name}; "
              f"node: triage serve, default settings")
        for run in range(args.runs):
            print(f"run {run + 1}:")
            run_once(data / "dicom", len(files), megabytes, args.pacs, scratch)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
