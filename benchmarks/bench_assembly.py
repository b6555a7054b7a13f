"""Time scan + assemble of a 1,280-file CT perfusion series (32 slices x 40 frames, 512 x 512).

Run from the repository root: ``python3 benchmarks/bench_assembly.py [--keep DIR]``.
Prints the time to write the files (not part of the measured path), to scan their headers and
to assemble the reduced (40, 32, 256, 256) float32 array, and the peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.dicom_factory import ct_instance, slice_positions  # noqa: E402
from triage.imaging.assembly import assemble, scan, select  # noqa: E402

N_SLICES, N_FRAMES, MATRIX = 32, 40, 512


def write_series(root: Path) -> None:
    """1,280 single-frame 512 x 512 int16 files with shuffled names in two folders."""
    rng = np.random.default_rng(0)
    base = rng.integers(900, 1200, (MATRIX, MATRIX)).astype(np.int16)
    study_uid, series_uid = generate_uid(), generate_uid()
    positions = slice_positions(N_SLICES, 5.0, first=(-128.0, -128.0, 0.0))
    names = rng.permutation(N_SLICES * N_FRAMES)
    for t in range(N_FRAMES):
        for z in range(N_SLICES):
            number = names[t * N_SLICES + z]
            ct_instance(root / f"d{number % 2}" / f"{number:05d}", base + np.int16(t + z),
                        position=positions[z], time_s=36000.0 + 1.5 * t + 0.01 * z,
                        study_uid=study_uid, series_uid=series_uid, pixel_spacing=(0.45, 0.45))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="write (or reuse) the files in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        if not any(root.rglob("*")):
            start = time.perf_counter()
            write_series(root)
            print(f"write    {time.perf_counter() - start:6.2f} s (setup, not measured)")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        clock = [(time.perf_counter(), time.process_time())]
        found = scan(root)
        clock.append((time.perf_counter(), time.process_time()))
        series = assemble(select(found)[0])
        clock.append((time.perf_counter(), time.process_time()))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        (wall0, cpu0), (wall1, cpu1), (wall2, cpu2) = clock
        print(f"scan     {wall1 - wall0:6.2f} s wall, {cpu1 - cpu0:5.2f} s CPU "
              f"({len(found.candidates[0].files)} files)")
        print(f"assemble {wall2 - wall1:6.2f} s wall, {cpu2 - cpu1:5.2f} s CPU -> "
              f"{series.data.shape} {series.data.dtype}")
        print(f"total    {wall2 - wall0:6.2f} s wall; peak RSS {peak:.0f} MB "
              f"(before reading {rss_before:.0f} MB)")
        expected = 1024 + np.arange(N_FRAMES)[:, None] + np.arange(N_SLICES)[None, :]
        assert np.allclose(series.data[:, :, 0, 0] - series.data[0, 0, 0, 0],
                           expected - expected[0, 0])


if __name__ == "__main__":
    main()
