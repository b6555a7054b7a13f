"""Memory of the node while many modalities send at once: a clinical-size CT perfusion series
(1,280 images, 512 x 512, 32 slices x 40 time points) split into interleaved parts, each sent
by its own DCMTK ``storescu`` at the same time, to ``triage serve`` (defaults, except
``--max-associations`` and ``--max-connections-per-peer`` raised to the number of senders).

Run from the repository root: ``python3 benchmarks/bench_memory.py [--data DIR]
[--associations 1 20] [--budget-mb 1500] [--no-analysis-wait]``.

Each row starts a fresh node. Printed per row: the senders' seconds, the images acknowledged
as stored (the node's log), and the memory of the node process (the DICOM listener, job store
and web app; the analysis runs in child processes): its peak resident set (``VmHWM`` of ``/proc/PID/status``, which counts
every page it ever had resident, file-backed included) and its peak anonymous memory
(``RssAnon``, sampled every 50 ms), its resident set once the senders have finished, and the
peak of the analysis children's resident sets (sampled) until the analysis of the series has
finished. The difference between the 1-association and the N-association rows, divided by
N - 1, is what one more association costs: pynetdicom assembles one instance at a time per
association, so it should be of the order of one image (0.5 MB) plus a thread, not a share
of the series.

The node's peak resident set must stay under ``--budget-mb`` (issue 15: 1.5 GB with 20
associations): the exit status is 1 when a row exceeds it or when images were lost.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ingest import series_files  # noqa: E402
from tests.support import peers  # noqa: E402
from tests.support.node import NodeProcess  # noqa: E402

SAMPLE_S = 0.05
PRODUCTION_JOURNAL_MB = "1024"   # the default; NodeProcess uses a small one for tests


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/PID/status`` (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """The descendants of ``pid`` (from ``/proc/*/stat``)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, its_parent in parents.items() if its_parent == parent]
        found += kids
        frontier += kids
    return found


class Sampler(threading.Thread):
    """Peak ``RssAnon`` of a process and peak summed ``VmRSS`` of its descendants, in KiB."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.anon_kib, self.children_kib = pid, 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_S):
            self.anon_kib = max(self.anon_kib, status_kib(self.pid, "RssAnon"))
            self.children_kib = max(self.children_kib,
                                    sum(status_kib(child, "VmRSS") for child in children(self.pid)))


def send_all(port: int, files: list[Path], associations: int) -> tuple[float, list[int]]:
    """Seconds for ``associations`` storescu at once to send the interleaved parts; their exit
    statuses."""
    env = peers.nodelay_env(True)
    start = time.perf_counter()
    senders = [subprocess.Popen([peers.dcmtk("storescu"), "-aet", "CT1", "-aec", "TRIAGE", "127.0.0.1",
                                 str(port), *map(str, files[k::associations])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
               for k in range(associations)]
    statuses = [sender.wait(900) for sender in senders]
    return time.perf_counter() - start, statuses


def run_row(files: list[Path], associations: int, scratch: Path, wait_for_analysis: bool) -> dict:
    # one connection more than the senders: the readiness probe of NodeProcess.start may not
    # have been closed on the node's side when the senders connect
    node = NodeProcess(scratch / f"node-{associations}", quiet_seconds=3.0, extra=(
        "--max-associations", str(associations), "--max-connections-per-peer", str(associations + 1),
        "--spool-journal-mb", PRODUCTION_JOURNAL_MB)).start()
    sampler = Sampler(node.process.pid)
    sampler.start()
    try:
        seconds, statuses = send_all(node.port, files, associations)
        after_kib = status_kib(node.process.pid, "VmRSS")
        ended = node.wait_for_log(r"association from .* (released|closed without release): \d+ stored",
                                  count=associations)
        received = sum(int(re.search(r": (\d+) stored", line)[1]) for line in ended)
        if wait_for_analysis:
            node.wait_for_log(r"analysis of .* finished in", timeout=1800)
        peak_kib = status_kib(node.process.pid, "VmHWM")
    finally:
        sampler.stop.set()
        sampler.join()
        node.stop()
    return {"seconds": seconds, "failed senders": sum(status != 0 for status in statuses),
            "received": received, "peak MB": peak_kib / 1024, "anon MB": sampler.anon_kib / 1024,
            "after MB": after_kib / 1024, "children MB": sampler.children_kib / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="series folder (written there if empty)")
    parser.add_argument("--associations", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--budget-mb", type=float, default=1500.0)
    parser.add_argument("--no-analysis-wait", action="store_true",
                        help="stop each node once the images are in (no analysis figures)")
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        files, megabytes = series_files(args.data, scratch)
        print(f"series: {len(files)} files, {megabytes:.0f} MB; node budget {args.budget_mb:.0f} MB; "
              f"{os.cpu_count()} CPUs")
        print(f"{'assoc.':>7}{'send s':>8}{'received':>10}{'node peak RSS MB':>18}{'node peak anon MB':>19}"
              f"{'node RSS after MB':>19}{'analysis peak MB':>18}")
        rows = {}
        for associations in args.associations:
            row = rows[associations] = run_row(files, associations, scratch, not args.no_analysis_wait)
            children = "-" if args.no_analysis_wait else f"{row['children MB']:.0f}"
            print(f"{associations:>7}{row['seconds']:8.1f}{row['received']:>10}{row['peak MB']:18.0f}"
                  f"{row['anon MB']:19.0f}{row['after MB']:19.0f}{children:>18}", flush=True)
            if row["peak MB"] > args.budget_mb:
                print(f"  over budget: {row['peak MB']:.0f} MB > {args.budget_mb:.0f} MB")
                failed = True
            if row["received"] != len(files) or row["failed senders"]:
                print(f"  lost images: {row['received']} of {len(files)} received, "
                      f"{row['failed senders']} sender(s) failed")
                failed = True
        if len(rows) > 1:
            fewest, most = min(rows), max(rows)
            extra = (rows[most]["peak MB"] - rows[fewest]["peak MB"]) / (most - fewest)
            print(f"peak resident set per extra association: {extra:.1f} MB "
                  f"({fewest} -> {most} associations)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
