"""A hub under a burst: studies per hour and time to the last alert, for 1 and 2 workers
(and, as the baseline, one machine without a hub).

Run from the repository root: ``python3 benchmarks/bench_hub.py [--studies 10] [--workers 0,1,2]``.

For each worker count, fresh processes on loopback ports: a throw-away PostgreSQL cluster (the
job store), ``redis-server`` (the queue), DCMTK ``storescp`` (the PACS), an HTTP endpoint (the
stroke team's webhook), one ``triage serve --queue --database`` (the listener) and N ``triage
worker`` processes (one task at a time each); with 0 workers, ``triage serve`` alone as on one
machine (SQLite, one analysis at a time). The burst: ``--studies`` phantom studies (one
phantom written with new UIDs each time; ``--matrix`` x ``--matrix``, ``--slices`` x 40 time
points) sent at once, one DCMTK ``storescu`` each (Nagle off). Printed per worker count: the
burst's transfer time, the first and the last result alert after the last image was
acknowledged, and studies per hour = studies / (last alert - burst start).

The machine matters: on the project's 2-core machine an analysis already uses both cores, so a
second worker on the same machine adds little; workers on more machines share the data
directory (README, "A hub").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sample_data.phantom import CASES, make_phantom, write_dicom  # noqa: E402
from tests.support import peers  # noqa: E402
from tests.support.endpoint import Endpoint  # noqa: E402
from tests.support.node import NodeProcess  # noqa: E402
from tests.support.postgres import PostgresServer, binaries  # noqa: E402
from tests.support.redis import RedisServer  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402

SECRET = "bench-hub-webhook-secret-0123"
TIMEOUT_S = 1800.0


def write_studies(root: Path, count: int, matrix: int, slices: int) -> list[Path]:
    phantom = make_phantom(replace(CASES["mismatch"], matrix=matrix, n_slices=slices, n_frames=40))
    folders = []
    for k in range(count):
        folder = root / f"study{k:02d}"
        write_dicom(phantom, folder)
        folders.append(folder)
    return folders


def burst(port: int, folders: list[Path]) -> float:
    """Send every folder at once (one storescu each); when the last one finished (s since the epoch)."""
    results = [None] * len(folders)

    def send(k):
        results[k] = peers.storescu(port, folders[k], calling="CT1", timeout=TIMEOUT_S)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(len(folders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [r.stderr[-300:] for r in results if r.returncode != 0]
    if failed:
        raise SystemExit(f"storescu failed: {failed[0]}")
    return time.time()


def run(folders: list[Path], n_workers: int, work: Path) -> dict:
    with ExitStack() as stack:
        postgres = PostgresServer(binaries())
        stack.callback(postgres.stop)
        redis = stack.enter_context(RedisServer(work / "redis"))
        endpoint = stack.enter_context(Endpoint())
        pacs_port, _ = stack.enter_context(peers.storescp(work / "pacs", ae_title="PACS"))
        database = postgres.create_database("bench")
        data = work / "data"
        (work / "secret").write_text(SECRET)
        config = work / "hub.toml"
        hub = [f'queue = "{redis.url}"', f'database = "{database}"'] if n_workers else []
        config.write_text("\n".join([f'data_dir = "{data}"', *hub, f'pacs = "PACS@127.0.0.1:{pacs_port}"',
                                     f'webhook = ["{endpoint.url()}"]', f'webhook_secret_file = "{work / "secret"}"',
                                     "max_jobs = 1", f"max_associations = {len(folders) + 2}", ""]))
        node = NodeProcess(data, quiet_seconds=None, extra=("--config", str(config)))
        node.start()
        stack.callback(node.stop)
        for k in range(n_workers):
            worker = WorkerProcess(f"worker-{k + 1}", data, queue=redis.url, database=database,
                                   extra=("--config", str(config))).start()
            stack.callback(worker.stop)
        started = time.time()
        last_image = burst(node.port, folders)
        endpoint.wait_for(len(folders), timeout=TIMEOUT_S, log=node.log)
        arrivals = sorted(r.received_at for r in endpoint.requests)
        kinds = [json.loads(r.body)["kind"] for r in endpoint.requests]
        return {"workers": n_workers, "transfer_s": last_image - started, "first_alert_s": arrivals[0] - last_image,
                "last_alert_s": arrivals[-1] - last_image, "results": kinds.count("result"),
                "per_hour": 3600.0 * len(folders) / (arrivals[-1] - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--workers", default="0,1,2",
                        help="comma-separated worker counts (0: one machine, no hub, one analysis at a time)")
    parser.add_argument("--matrix", type=int, default=256)
    parser.add_argument("--slices", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmp:
        root = Path(tmp)
        folders = write_studies(root / "studies", args.studies, args.matrix, args.slices)
        print(f"burst of {args.studies} studies of {args.matrix}² x {args.slices} slices x 40 time points "
              f"({args.slices * 40} images each)")
        print("| workers | burst transfer s | last image -> first alert s | -> last alert s | result alerts | studies/hour |")
        print("|---|---|---|---|---|---|")
        for k, n in enumerate(int(v) for v in args.workers.split(",")):
            row = run(folders, n, root / f"run{k}")
            print(f"| {row['workers'] or 'none (one machine)'} | {row['transfer_s']:.1f} | {row['first_alert_s']:.1f} | "
                  f"{row['last_alert_s']:.1f} | {row['results']} | {row['per_hour']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
