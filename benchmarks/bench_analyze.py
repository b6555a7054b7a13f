"""Clinical-size benchmark: 512 x 512, 32 slices, 40 time points (1,280 DICOM files) to result.json.

Writes the phantom series once (or reuses ``--data DIR``), then runs ``triage analyze`` in a fresh
process and prints wall time, peak memory (max RSS of the analysing process), the per-stage
breakdown from result.json, and the volumes against the phantom's truth.

    python benchmarks/bench_analyze.py [--case mismatch] [--data DIR] [--runs 3]

Goal (issue 2): ≤ 10 s wall and ≤ 3 GB peak memory on a 2-core machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sample_data.phantom import CASES, make_phantom, write_dicom, write_truth  # noqa: E402


def prepare(data: Path, case: str) -> None:
    if (data / "truth.json").exists():
        return
    config = CASES[case]
    config = type(config)(**{**config.__dict__, "matrix": 512, "n_slices": 32, "n_frames": 40,
                             "noise_hu": 2 * config.noise_hu})
    start = time.perf_counter()
    phantom = make_phantom(config)
    write_dicom(phantom, data / "dicom")
    write_truth(phantom, data)
    print(f"wrote {len(list((data / 'dicom').rglob('*.dcm')))} files of 512 x 512 in {time.perf_counter() - start:.0f} s "
          f"(noise {config.noise_hu:g} HU per voxel at 512 x 512)")


def run_once(data: Path, out: Path) -> tuple[float, float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    script = ("import resource, sys; from triage.cli import main; rc = main(sys.argv[1:]); "
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", script, "analyze", str(data / "dicom"), "--out", str(out), "--quiet"],
                         cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"analysis failed: {run.stderr.strip()}")
    peak_gb = int(run.stderr.strip().splitlines()[-1]) / 1024**2
    return wall, peak_gb, json.loads((out / "result.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="mismatch", choices=sorted(CASES))
    parser.add_argument("--data", type=Path, help="directory to keep the generated series in (reused)")
    parser.add_argument("--runs", type=int, default=3, help="analyses to time (0: only write the data)")
    args = parser.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="bench-analyze-"))
    # In a process of its own: a forked analysis inherits the peak RSS of its parent, which
    # would count the phantom (1.8 GB) as the analysis' memory.
    writer = multiprocessing.get_context("spawn").Process(target=prepare, args=(data, args.case))
    writer.start()
    writer.join()
    if writer.exitcode != 0:
        sys.exit("writing the phantom failed")
    truth = json.loads((data / "truth.json").read_text())["volumes"]
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    for i in range(args.runs):
        wall, peak_gb, result = run_once(data, data / "out")
        stages = ", ".join(f"{k} {v:.2f}" for k, v in result["timings_s"].items())
        print(f"run {i + 1}: wall {wall:.2f} s (process start to exit), peak RSS {peak_gb:.2f} GB")
        print(f"  stages (s): {stages}")
    if args.runs >= 1:
        print("volumes (mL)   measured   truth")
        for key in ("core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml"):
            print(f"  {key:<12} {result[key]:8.1f} {truth[key]:8.1f}")
        print(f"  DEFUSE 3 imaging: {result['eligibility']['defuse3']}")
    if args.data is None:
        shutil.rmtree(data)


if __name__ == "__main__":
    main()
