"""Soak: studies arriving for a long while, the node (and, on a hub, the workers) killed -9 at
random moments, and at the end every study analysed once, one SR and one result alert each,
no file or process left behind.

Run from the repository root: ``python3 benchmarks/bench_soak.py [--studies 30]
[--minutes 20] [--hub] [--seed 1]`` (issue 15: 30 studies over 20 minutes).

Fresh processes on loopback ports: a real Orthanc (the PACS), an HTTP endpoint (the stroke
team's webhook) and ``triage serve`` on one machine (SQLite, its own analyses); with ``--hub``
a throw-away PostgreSQL cluster, ``redis-server`` and two ``triage worker`` processes as well.
The studies (phantom series with new UIDs each, ``--matrix``² x ``--slices`` x 40 time points)
start one every ``minutes / studies``; each is sent by DCMTK ``storescu`` and sent again whole,
as a PACS retries a failed transfer, until one transfer succeeds. Meanwhile a killer sends
SIGKILL to the node (or, on a hub, to the node or a worker, at random) every 20 to 90 s and
restarts it 1 to 5 s later; what it killed and when is printed.

Once every study is sent, the script waits (up to ``--settle-minutes``) for a result alert
and an SR of each, then stops everything gracefully and prints, per study and in total:
analyses finished (``result.json`` of each generation), result alerts received and distinct
(by idempotency key: the outbox delivers at least once, a receiver deduplicates by that key),
SR instances in the PACS; then the files left behind (the spool's unfiled ``.part`` files,
hidden staging folders of results, result folders without ``result.json``) and the processes left behind (any process
whose command line names the soak's data directory). The exit status is 1 when a study has
not exactly one analysis, one distinct result alert and one SR, or something was left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pydicom  # noqa: E402

from sample_data.phantom import CASES, make_phantom, write_dicom  # noqa: E402
from tests.support import peers  # noqa: E402
from tests.support.endpoint import Endpoint  # noqa: E402
from tests.support.node import NodeProcess  # noqa: E402
from tests.support.orthanc import orthanc  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402
from triage.base.names import safe_name  # noqa: E402

SECRET = "bench-soak-webhook-secret-0123"
KILL_EVERY_S = (20.0, 90.0)
DOWN_FOR_S = (1.0, 5.0)
SR_MODALITY = "SR"


def write_studies(root: Path, count: int, matrix: int, slices: int) -> list[tuple[str, Path]]:
    """``count`` folders of one phantom, each written with new UIDs: (series UID, folder)."""
    phantom = make_phantom(replace(CASES["mismatch"], matrix=matrix, n_slices=slices, n_frames=40))
    studies = []
    for k in range(count):
        folder = root / f"study{k:02d}"
        first = write_dicom(phantom, folder)[0]
        studies.append((str(pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID), folder))
    return studies


class Killer(threading.Thread):
    """Kills one of ``targets`` (name -> process helper with ``kill9``/``start``) with SIGKILL
    every 20 to 90 s and starts it again 1 to 5 s later, until ``stop`` is set."""

    def __init__(self, targets: dict, rng: random.Random, started: float):
        super().__init__(daemon=True)
        self.targets, self.rng, self.started = targets, rng, started
        self.stop = threading.Event()
        self.kills: Counter[str] = Counter()

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(*KILL_EVERY_S)):
            name = self.rng.choice(sorted(self.targets))
            down_for = self.rng.uniform(*DOWN_FOR_S)
            self.targets[name].kill9()
            self.kills[name] += 1
            print(f"  {time.time() - self.started:7.1f} s: killed -9 {name}, restart in {down_for:.1f} s",
                  flush=True)
            time.sleep(down_for)
            self.targets[name].start()


def send_until_accepted(port: int, folder: Path, attempts: Counter, key: str) -> None:
    """storescu the whole folder again until one transfer succeeds (every image acknowledged)."""
    while True:
        attempts[key] += 1
        try:
            if peers.storescu(port, folder, calling="CT1", timeout=600).returncode == 0:
                return
        except subprocess.TimeoutExpired:   # a transfer cut by the kill may hang until then
            pass
        time.sleep(2.0)


def sr_count_per_study(pacs) -> Counter:
    """SR instances in the PACS per Study Instance UID."""
    counts: Counter[str] = Counter()
    for series in pacs.find("Series", {"Modality": SR_MODALITY}):
        found = pacs.get(f"/series/{series}")
        study = pacs.get(f"/studies/{found['ParentStudy']}")
        counts[study["MainDicomTags"]["StudyInstanceUID"]] += len(found["Instances"])
    return counts


def leftover_files(data: Path) -> list[Path]:
    """Files of unfinished work in the data directory: the spool's ``.incoming/*.part``, a
    result's hidden staging or announcement sibling (``.<generation>.…``), a result folder
    without ``result.json``."""
    incoming = list((data / "spool" / ".incoming").glob("*.part"))
    results = [g for g in (data / "results").glob("*/*") if g.is_dir()]
    hidden = [g for g in results if g.name.startswith(".")]
    unfinished = [g for g in results if not g.name.startswith(".") and not (g / "result.json").exists()]
    return incoming + hidden + unfinished


def leftover_processes(data: Path) -> list[str]:
    """Command lines of running processes that name ``data``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(w.decode(errors="replace") for w in words if w)
        if str(data) in line and int(cmdline.parent.name) != os.getpid():
            found.append(f"{cmdline.parent.name}: {line[:160]}")
    return found


def soak(args, root: Path) -> int:
    rng = random.Random(args.seed)
    studies = write_studies(root / "studies", args.studies, args.matrix, args.slices)
    print(f"{args.studies} studies of {args.matrix}² x {args.slices} slices x 40 time points over "
          f"{args.minutes:g} min, {'a hub with 2 workers' if args.hub else 'one machine'}; seed {args.seed}")
    data = root / "data"
    with ExitStack() as stack:
        pacs = stack.enter_context(orthanc(root / "pacs"))
        endpoint = stack.enter_context(Endpoint())
        (root / "secret").write_text(SECRET)
        lines = [f'data_dir = "{data}"', f'pacs = "{pacs.aet}@127.0.0.1:{pacs.dicom_port}"',
                 f'webhook = ["{endpoint.url()}"]', f'webhook_secret_file = "{root / "secret"}"',
                 f"max_associations = {args.studies + 2}"]
        workers = {}
        if args.hub:
            from tests.support.postgres import PostgresServer, binaries
            from tests.support.redis import RedisServer
            postgres = PostgresServer(binaries())
            stack.callback(postgres.stop)
            redis = stack.enter_context(RedisServer(root / "redis"))
            database = postgres.create_database("soak")
            lines += [f'queue = "{redis.url}"', f'database = "{database}"']
        (root / "soak.toml").write_text("\n".join(lines + [""]))
        node = NodeProcess(data, quiet_seconds=None, extra=("--config", str(root / "soak.toml"))).start()
        stack.callback(lambda: node.process.poll() is None and node.stop())
        if args.hub:
            for k in (1, 2):
                worker = workers[f"worker-{k}"] = WorkerProcess(
                    f"worker-{k}", data, queue=redis.url, database=database,
                    extra=("--config", str(root / "soak.toml"))).start()
                stack.callback(lambda w=worker: w.process.poll() is None and w.stop())
        started = time.time()
        killer = Killer({"node": node, **workers}, rng, started)
        killer.start()
        attempts: Counter[str] = Counter()
        senders = []
        interval = 60.0 * args.minutes / args.studies
        for k, (uid, folder) in enumerate(studies):
            time.sleep(max(0.0, started + k * interval - time.time()))
            sender = threading.Thread(target=send_until_accepted, args=(node.port, folder, attempts, uid))
            sender.start()
            senders.append(sender)
        for sender in senders:
            sender.join()
        print(f"  {time.time() - started:7.1f} s: every study sent; settling", flush=True)
        deadline = time.time() + 60.0 * args.settle_minutes
        wanted = {uid for uid, _ in studies}
        while time.time() < deadline:
            alerted = {json.loads(r.body)["study"]["series_uid"] for r in endpoint.requests
                       if json.loads(r.body)["kind"] == "result"}
            if wanted <= alerted and len(sr_count_per_study(pacs)) >= len(studies):
                break
            time.sleep(5.0)
        killer.stop.set()
        killer.join()
        node.stop()
        for worker in workers.values():
            worker.stop()
        time.sleep(2.0)     # analysis children notice their parent's end
        processes = leftover_processes(data)
        srs = sr_count_per_study(pacs)
    return report(studies, data, endpoint, srs, attempts, killer.kills, processes, time.time() - started)


def report(studies, data: Path, endpoint: Endpoint, srs: Counter, attempts: Counter, kills: Counter,
           processes: list[str], seconds: float) -> int:
    results = [json.loads(r.body) for r in endpoint.requests]
    result_alerts = [r for r in results if r["kind"] == "result"]
    received = Counter(r["study"]["series_uid"] for r in result_alerts)
    distinct = Counter(uid for uid, _ in {(r["study"]["series_uid"], r["idempotency_key"]) for r in result_alerts})
    study_of = {}
    bad = 0
    print("| study | transfers | analyses | result alerts (distinct) | SRs |")
    print("|---|---|---|---|---|")
    for k, (uid, folder) in enumerate(studies):
        first = next(folder.rglob("*.dcm"))
        study_of[uid] = str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)
        analyses = len(list((data / "results" / safe_name(uid)).glob("*/result.json")))
        sr = srs.get(study_of[uid], 0)
        ok = analyses == 1 and distinct[uid] == 1 and sr == 1
        bad += not ok
        print(f"| {k:2d} | {attempts[uid]} | {analyses} | {received[uid]} ({distinct[uid]}) | {sr} |"
              f"{'' if ok else ' <- not once'}")
    leftovers = leftover_files(data)
    print(f"kills: {dict(kills) or 'none'}; {seconds / 60:.1f} min")
    print(f"studies: {len(studies)}, each exactly once: {len(studies) - bad}; transfers: {sum(attempts.values())}; "
          f"result alerts received {len(result_alerts)}, distinct {sum(distinct.values())}; "
          f"other alerts {len(results) - len(result_alerts)}; SRs in the PACS {sum(srs.values())}")
    print(f"files left behind: {len(leftovers)}" + "".join(f"\n  {p}" for p in leftovers[:20]))
    print(f"processes left behind: {len(processes)}" + "".join(f"\n  {p}" for p in processes))
    return 1 if bad or leftovers or processes else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=20.0, help="the studies start over this long")
    parser.add_argument("--settle-minutes", type=float, default=10.0,
                        help="longest wait for the last alerts and SRs after the last transfer")
    parser.add_argument("--hub", action="store_true", help="PostgreSQL, Redis and two workers")
    parser.add_argument("--matrix", type=int, default=128)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1, help="of the kill times and targets")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return soak(args, args.keep)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        return soak(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
