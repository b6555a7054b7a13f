"""Twin curves: for a phantom tissue curve, the closest curve of another hypothesis.

A tissue curve (``sample_data.curves``: fine-grid convolution with the phantom's AIF, sampled
every 1.5 s over 60 s) is matched by least squares with an undispersed residue of a chosen shape,
onset (s), MTT (s) and CBF (mL/100 g/min) free. Where the twin differs from the curve by less
than the curves' noise, no estimator can be right under both hypotheses: used by
``tests/test_identifiability.py`` and ``benchmarks/bench_identifiability.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from sample_data import curves

TIMES = np.arange(0.0, 60.0, 1.5)  # s
FINE = curves.fine_times()
AIF_FINE = curves.arterial_curve(FINE)


def sampled(shape: str, cbf: float, mtt: float, onset: float, tau: float) -> np.ndarray:
    """Enhancement (HU) at ``TIMES`` of one tissue: residue ``shape``, CBF mL/100 g/min, MTT s,
    onset s after the AIF, dispersion time constant ``tau`` s."""
    residue = curves.residue(FINE, mtt, onset, tau, shape)
    return np.interp(TIMES, FINE, curves.tissue_curve(AIF_FINE, residue, cbf))


@dataclass(frozen=True)
class Twin:
    """The closest undispersed curve: its CBF (mL/100 g/min), MTT (s), onset (= its Tmax, s)
    and the RMS difference from the target curve (HU)."""

    cbf: float
    mtt: float
    onset: float
    rms: float

    def distinguishable_below(self) -> float:
        """White noise SD per frame (HU) below which one curve tells the two apart at 2 SD of
        the likelihood ratio (|Δ|² / σ² = 4, |Δ|² = frames · RMS²)."""
        return self.rms * np.sqrt(TIMES.size) / 2.0


def twin(target: np.ndarray, shape: str, cbf: float, mtt: float, onset: float) -> Twin:
    """The undispersed curve of residue ``shape`` closest to ``target`` (HU at ``TIMES``),
    searched from (``cbf``, ``mtt``, ``onset``) and from onsets 2 s either side."""
    def difference(p):
        return sampled(shape, p[0], p[1], p[2], 0.0) - target

    best = None
    for shift in (-2.0, 0.0, 2.0):
        start = (cbf, mtt, max(onset + shift, 0.0))
        fit = least_squares(difference, start, bounds=([1.0, 0.5, 0.0], [300.0, 60.0, 30.0]), diff_step=1e-3)
        if best is None or fit.cost < best.cost:
            best = fit
    return Twin(float(best.x[0]), float(best.x[1]), float(best.x[2]), float(np.sqrt(np.mean(best.fun**2))))
