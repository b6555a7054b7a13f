"""Fit time of the deconvolution models for 1 M voxels (a script, not a test).

Run from the repository root: ``PYTHONPATH=. python3 benchmarks/bench_models.py [n_voxels]``.
Curves are random enhancement around a gamma-variate bolus; only the timing matters.
"""

import sys
import time

import numpy as np

from models import BlockCirculantSVDModel, TikhonovModel


def gamma_bolus(times, peak=350.0, start=6.0, rise=6.0, alpha=3.0):
    x = np.clip((times - start) / rise, 0, None)
    return peak * x**alpha * np.exp(alpha * (1 - x))


def main(n_voxels=1_000_000):
    rng = np.random.default_rng(0)
    schedules = {
        "40 frames, 1.5 s": np.arange(40) * 1.5,
        "80 frames, non-uniform 0.5/1.5 s": np.concatenate([np.arange(0, 40, 0.5), np.arange(41.5, 101, 1.5)])[:80],
    }
    for label, times in schedules.items():
        aif = gamma_bolus(times)
        curves = (0.05 * gamma_bolus(times - 2.0)[:, None] + rng.normal(0, 3, (times.size, n_voxels))).astype(np.float32)
        for model_class in (BlockCirculantSVDModel, TikhonovModel):
            model = model_class(aif, times)
            start = time.perf_counter()
            model.fit(curves)
            elapsed = time.perf_counter() - start
            print(f"{model_class.__name__:24s} {label:34s} {n_voxels:>9d} voxels: {elapsed:.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
