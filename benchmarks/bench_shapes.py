"""How the assumed residue shape sets the flow read from one clean curve (a script, not a test).

Run from the repository root: ``PYTHONPATH=. python benchmarks/bench_shapes.py [--noise HU]``.

Tissue curves of every phantom residue shape (``sample_data.curves.RESIDUE_SHAPES``, fine-grid
convolution with the phantom's AIF, 40 frames over 60 s) for four tissues, fitted one curve at a
time without a guide by the parametric models. Printed: measured / true CBF per tissue, and
per model the range over shapes. With ``--noise`` (HU, white), the median of 200 noisy copies.
"""

import argparse
import time

import numpy as np

from models import make_model
from sample_data import curves

MODELS = ("gamma", "exponential", "gamma-shapes")
# (CBF mL/100 g/min, CBV mL/100 g, onset delay s)
TISSUES = {"GM": (60.0, 4.0, 0.6), "WM": (25.0, 2.0, 1.0), "penumbra": (35.0, 4.5, 8.0), "core": (4.0, 1.6, 14.0)}
TIMES = np.round(np.linspace(0.0, 60.0, 40), 3)


def tissue_curve(shape: str, cbf: float, cbv: float, delay: float) -> np.ndarray:
    """Enhancement (t,) ΔHU at ``TIMES`` of one tissue with the residue ``shape``."""
    fine = curves.fine_times()
    aif = curves.arterial_curve(fine)
    residue = curves.residue(fine, 60.0 * cbv / cbf, delay, 0.0, shape)
    return np.interp(TIMES, fine, curves.tissue_curve(aif, residue, cbf))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, default=0.0, help="white noise SD, HU (0: the clean curve)")
    args = parser.parse_args()
    aif = np.interp(TIMES, curves.fine_times(), curves.arterial_curve(curves.fine_times()))
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    print(f"measured / true CBF, noise {args.noise:g} HU; tissues {', '.join(TISSUES)}")
    for name in MODELS:
        model = make_model(name, aif, TIMES)
        ratios = []
        for shape in curves.RESIDUE_SHAPES:
            row = []
            for cbf, cbv, delay in TISSUES.values():
                copies = 1 if args.noise == 0 else 200
                curve = tissue_curve(shape, cbf, cbv, delay)[:, None]
                noisy = curve + rng.normal(0.0, args.noise, (TIMES.size, copies))
                row.append(float(np.median(model.fit(noisy.astype(np.float32)).cbf)) / cbf)
            ratios += row
            print(f"  {name:13s} {shape:12s} " + "  ".join(f"{r:5.2f}" for r in row))
        print(f"  {name:13s} range over shapes and tissues: {min(ratios):.2f} to {max(ratios):.2f}")
    print(f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
