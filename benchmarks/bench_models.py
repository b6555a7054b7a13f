"""Fit time and accuracy of the deconvolution models (a script, not a test).

Run from the repository root: ``PYTHONPATH=. python3 benchmarks/bench_models.py [n_voxels] [--no-accuracy]``.

* Timing: ``n_voxels`` (default 1 M) curves of 40 frames (uniform, 1.5 s) and of 80 frames
  (non-uniform: 0.5 s for 40 s, then 1.5 s).
* Accuracy: 2000 voxels per tissue at 0, 3 and 8 HU white noise per frame, frames every 1 s
  during the bolus (5-35 s) and every 3 s outside; curves from a 0.05 s convolution grid.
  Printed as median (bias %) and SD per map and tissue, and the share of voxels with Tmax > 6 s.
"""

import sys
import time

import numpy as np

from models import BlockCirculantSVDModel, ParametricResidueModel, TikhonovModel

MODELS = (ParametricResidueModel, BlockCirculantSVDModel, TikhonovModel)
RHO, K_H = 1.04, (1 - 0.45) / (1 - 0.25)
TISSUES = {"GM": (60, 4.0, 1.0), "WM": (25, 2.0, 1.0), "penumbra": (35, 4.5, 8.0), "core": (8, 1.5, 12.0)}
ACCURACY_TIMES = np.concatenate([[0.0, 3.0], np.arange(5.0, 36.0, 1.0), np.arange(38.0, 63.0, 3.0)])


def gamma_bolus(times, peak=350.0, start=6.0, rise=6.0, alpha=3.0):
    x = np.clip((times - start) / rise, 0, None)
    return peak * x**alpha * np.exp(alpha * (1 - x))


def tissue_curves(times, cbf, cbv, delay, noise, n, rng, step=0.05):
    fine = np.arange(0, times[-1] + step, step)
    convolved = np.convolve(gamma_bolus(fine - delay), np.exp(-fine * cbf / (60 * cbv)))[: fine.size] * step
    curve = np.interp(times, fine, (RHO / K_H) * (cbf / 6000) * convolved)
    return (curve[:, None] + rng.normal(0, noise, (times.size, n))).astype(np.float32)


def timing(n_voxels):
    rng = np.random.default_rng(0)
    schedules = {
        "40 frames, 1.5 s": np.arange(40) * 1.5,
        "80 frames, 0.5 s then 1.5 s": np.concatenate([np.arange(0, 40, 0.5), np.arange(41.5, 101, 1.5)])[:80],
    }
    for label, times in schedules.items():
        curves = tissue_curves(times, 35, 4.5, 3.0, 3.0, n_voxels, rng)
        for model_class in MODELS:
            model = model_class(gamma_bolus(times), times)
            start, start_cpu = time.perf_counter(), time.process_time()
            model.fit(curves)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            print(f"{model_class.__name__:24s} {label:28s} {n_voxels:>9d} voxels: {elapsed:6.2f} s wall, {cpu:6.2f} s CPU")


def accuracy(n_voxels=2000):
    rng = np.random.default_rng(1)
    print("model, noise HU, tissue: median (bias %) ± SD for CBF, CBV, MTT; Tmax median (error s) ± SD; % voxels Tmax > 6 s")
    for model_class in MODELS:
        model = model_class(gamma_bolus(ACCURACY_TIMES), ACCURACY_TIMES)
        for noise in (0.0, 3.0, 8.0):
            for tissue, (cbf, cbv, delay) in TISSUES.items():
                fit = model.fit(tissue_curves(ACCURACY_TIMES, cbf, cbv, delay, noise, n_voxels, rng))
                cells = []
                for name, truth in (("cbf", cbf), ("cbv", cbv), ("mtt", 60 * cbv / cbf)):
                    values = getattr(fit, name)
                    median = np.median(values)
                    cells.append(f"{name.upper()} {median:6.1f} ({100 * (median / truth - 1):+4.0f} %) ± {values.std():5.1f}")
                tmax = np.median(fit.tmax)
                cells.append(f"Tmax {tmax:5.1f} ({tmax - delay:+4.1f}) ± {fit.tmax.std():4.1f}")
                cells.append(f"Tmax>6 s {100 * np.mean(fit.tmax > 6):3.0f} %")
                print(f"{model_class.__name__:22s} {noise:3.0f} {tissue:9s} " + " | ".join(cells))


if __name__ == "__main__":
    timing(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
    if "--no-accuracy" not in sys.argv:
        accuracy()
