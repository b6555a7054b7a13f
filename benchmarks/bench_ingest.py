"""Ingest throughput: DCMTK ``storescu`` sends a clinical-size CT perfusion series (1,280
images, 512 x 512, 32 slices x 40 time points) to DCMTK's ``storescp``, to a real Orthanc and to
our receiver, in one run.

Run from the repository root: ``python3 benchmarks/bench_ingest.py [--data DIR] [--repeat N]
[--quick]`` (``--quick``: Nagle off only, and only storescp, Orthanc, ours and the
pynetdicom no-op floor).

Each row is one association, or ``associations`` of them at once: the series split into that
many interleaved parts, each sent by its own ``storescu``, timed until the last exits. Orthanc
runs with its packaged defaults (its storage area synced to disk, ``SyncStorageArea``) and
DCMTK's ``TCP_NODELAY`` setting like the sender.

Each receiver runs in a process of its own on a loopback port (ours: ``python -m dicom_node.scp``,
which fsyncs every file and its directory before acknowledging it; ``storescp`` does not
fsync). The sender is timed from start to exit, twice per receiver: with Nagle's algorithm off
(``TCP_NODELAY=1`` in DCMTK's environment, sender and ``storescp`` alike) and left at DCMTK's
default. Our receiver is also run without its ``TCP_QUICKACK`` re-arming, to show what that
takes, and a pynetdicom receiver that acknowledges without storing shows the floor that
pynetdicom itself sets, once as it comes and once with its DUL reactor polling without the 1 ms
sleep between empty polls (a busy loop: the ceiling of pynetdicom's receive path, not a setting
a node can live with while other threads need the interpreter lock). Printed: seconds, images/s, MB/s (source file bytes), the ratio to
``storescp`` under the same sender setting, the receiver's CPU seconds, and the number of
files received (all of them; 0 for the no-op receiver) and the 1-minute load average after
the row (other work on the machine slows every row). With ``--repeat``
the fastest run of each row is kept (the machine is shared; slower runs are interference).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sample_data.phantom import CASES, make_phantom, write_dicom  # noqa: E402
from tests.support import orthanc, peers  # noqa: E402

SERIES = replace(CASES["mismatch"], matrix=512, n_slices=32, n_frames=40)


def series_files(data: Path | None, scratch: Path) -> tuple[list[Path], float]:
    """The series in ``data`` (``scratch/series`` when None), written there first when the
    folder is empty, and its size in MB."""
    data = data or scratch / "series"
    data.mkdir(parents=True, exist_ok=True)
    files = sorted(data.rglob("*.dcm"))
    if not files:
        start = time.perf_counter()
        files = write_dicom(make_phantom(SERIES), data)
        print(f"wrote {len(files)} files in {time.perf_counter() - start:.1f} s (setup)")
    return files, sum(p.stat().st_size for p in files) / 1e6


# pynetdicom receiving and acknowledging without storing: the floor of any pynetdicom receiver.
NO_OP_RECEIVER = """
import sys
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import CTImageStorage
from dicom_node.scp import MAXIMUM_PDU_BYTES, TRANSFER_SYNTAXES
_config.LOG_HANDLER_LEVEL = "none"
ae = AE("TRIAGE")
ae.maximum_pdu_size = MAXIMUM_PDU_BYTES
ae.add_supported_context(CTImageStorage, TRANSFER_SYNTAXES)
handlers = [(evt.EVT_C_STORE, lambda e: 0)]
if sys.argv[2:] == ["spin"]:   # the DUL reactor polls its socket without sleeping in between
    def spin(event):
        event.assoc.dul._run_loop_delay = 0
    handlers.append((evt.EVT_CONN_OPEN, spin))
ae.start_server(("127.0.0.1", int(sys.argv[1])), evt_handlers=handlers)
"""
RECEIVERS = (("storescp", 1), ("Orthanc", 1), ("ours", 1), ("pynetdicom no-op", 1),
             ("storescp", 4), ("Orthanc", 4), ("ours", 4), ("pynetdicom no-op", 4),
             ("ours, no quick-ACK", 1), ("no-op, DUL not sleeping", 1))
QUICK = RECEIVERS[:8]


def receiver(kind: str, out: Path, port: int, nodelay: bool) -> subprocess.Popen:
    """Start a receiver on ``port`` writing into ``out``."""
    if kind == "Orthanc":
        config = orthanc.configuration(out, peers.free_port(), port, {})
        out.mkdir(parents=True, exist_ok=True)
        (out / "orthanc.json").write_text(json.dumps(config))
        return subprocess.Popen([str(orthanc.ORTHANC), str(out / "orthanc.json")], cwd=out,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=peers.nodelay_env(nodelay))
    if kind == "storescp":
        command = [peers.dcmtk("storescp"), "-aet", "TRIAGE", "-od", str(out), str(port)]
    elif kind in ("pynetdicom no-op", "no-op, DUL not sleeping"):
        command = [sys.executable, "-c", NO_OP_RECEIVER, str(port)]
        if kind == "no-op, DUL not sleeping":
            command.append("spin")
    else:
        command = [sys.executable, "-m", "dicom_node.scp", "--spool", str(out),
                   "--port", str(port), "--host", "127.0.0.1"]
        if kind == "ours, no quick-ACK":
            command.append("--no-quick-ack")
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=peers.nodelay_env(nodelay))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send_once(kind: str, files: list[Path], scratch: Path, nodelay: bool,
              associations: int) -> tuple[float, float, int]:
    """Seconds for ``associations`` storescu at once to send the series (interleaved parts) to
    a fresh receiver, the receiver's CPU seconds meanwhile, and the files received."""
    out = scratch / "received"
    port = peers.free_port()
    process = receiver(kind, out, port, nodelay)
    try:
        peers.wait_for_port(port, timeout=60, process=process)
        cpu_start, start = cpu_seconds(process.pid), time.perf_counter()
        senders = [subprocess.Popen([peers.dcmtk("storescu"), "-aet", "MODALITY", "-aec", "TRIAGE", "127.0.0.1",
                                     str(port), *map(str, files[k::associations])],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=peers.nodelay_env(nodelay))
                   for k in range(associations)]
        failed = [sender.stderr.read().decode()[-300:] for sender in senders if sender.wait(1800) != 0]
        seconds = time.perf_counter() - start
        cpu = cpu_seconds(process.pid) - cpu_start
        if failed:
            raise RuntimeError(f"storescu to {kind} failed: {failed[0].strip()}")
    finally:
        peers.stop_process(process)
    received = sum(1 for p in out.rglob("*") if p.is_file() and not {".incoming", ".journal"} & set(p.parts)
                   and (kind != "Orthanc" or len(p.name) == 36))  # Orthanc: its UUID-named files
    shutil.rmtree(out)
    return seconds, cpu, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="series folder (written there if empty)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row, fastest kept")
    parser.add_argument("--quick", action="store_true",
                        help="Nagle off; storescp, Orthanc, ours and the no-op floor only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        files, megabytes = series_files(args.data, scratch)
        print(f"series: {len(files)} files, {megabytes:.0f} MB; sender DCMTK storescu, "
              f"best of {args.repeat}; load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} CPUs")
        print(f"{'sender Nagle':<13}{'receiver':<25}{'assoc.':>7}{'s':>7}{'images/s':>10}{'MB/s':>8}"
              f"{'vs storescp':>13}{'vs Orthanc':>12}{'receiver CPU s':>16}{'received':>10}{'load':>6}")
        for nodelay in ((True,) if args.quick else (True, False)):
            reference: dict[tuple[str, int], float] = {}
            for kind, associations in (QUICK if args.quick else RECEIVERS):
                runs = [send_once(kind, files, scratch, nodelay, associations) for _ in range(args.repeat)]
                seconds, cpu, received = min(runs)
                reference.setdefault((kind, associations), seconds)
                storescp = reference.get(("storescp", associations), reference[("storescp", 1)])
                against = reference.get(("Orthanc", associations))
                versus_orthanc = f"{against / seconds:11.0%}" if against else f"{'-':>11}"  # storescp's row comes first
                print(f"{'off' if nodelay else 'on (default)':<13}{kind:<25}{associations:>7}{seconds:7.1f}"
                      f"{len(files) / seconds:10.0f}{megabytes / seconds:8.0f}"
                      f"{storescp / seconds:12.0%}{versus_orthanc}"
                      f"{cpu:16.1f}{received:>10}{os.getloadavg()[0]:6.1f}", flush=True)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
