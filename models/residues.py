"""Residue functions of the parametric model: gamma-distributed transit times, dispersed.

A residue R(s) is the fraction of tracer still in the tissue a time s after it entered; it
is 1 at s = 0 and falls with the distribution of capillary transit times. With transit times
gamma-distributed with shape k and mean MTT (Mouridsen et al., NeuroImage 2006; Jespersen and
Østergaard, JCBFM 2012)

    R_k(s) = Q(k, k s / MTT),   Q the regularised upper incomplete gamma function,

k = 1 is the one-compartment exponential exp(−s/MTT); larger k mean less transit-time
heterogeneity and a flatter-topped residue (k → ∞: one transit time, the box residue). The
shape matters for the flow: for one tissue curve, a residue that is too peaked (k too small)
reads the curve's spread as a shorter MTT and so a higher CBF = CBV / MTT (an exponential fitted
to gamma-3 tissue over-reads CBF by half).

Dispersion of the bolus between the measured artery and the tissue (collateral flow) is an
exponential kernel g_τ(t) = exp(−t/τ)/τ (Calamante et al., MRM 2000), so the effective residue
is R_eff = g_τ ⊗ R_k, whose area is still MTT and whose maximum lies s* ≥ 0 after the onset:
Tmax, the time of the maximum of k(t) = F · R_eff, is the onset delay plus s*.

All functions work on a uniform lag grid (s) starting at 0.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaincc


def residue(lags: np.ndarray, mtt: float, shape: float) -> np.ndarray:
    """R_k(s) at ``lags`` (s ≥ 0) for mean transit time ``mtt`` (s) and gamma ``shape`` k ≥ 1."""
    if shape == 1.0:
        return np.exp(-lags / mtt)
    return gammaincc(shape, shape * lags / mtt)


def effective_residue(lags: np.ndarray, mtt: float, shape: float, dispersion: float) -> np.ndarray:
    """R_eff = g_τ ⊗ R_k at ``lags`` (uniform, from 0, s); ``dispersion`` τ in s (0: R_k).

    The convolution is the midpoint rule with the exact integral of g_τ over each lag
    interval, so R_eff(0) = 0 and the area of R_eff is that of R_k (MTT) to the grid's
    accuracy.
    """
    if dispersion <= 0:
        return residue(lags, mtt, shape)
    step = lags[1] - lags[0]
    edges = np.arange(lags.size + 1) * step
    kernel = -np.diff(np.exp(-edges / dispersion))  # ∫ g_τ over [i, i + 1) · step
    midpoints = residue(lags + step / 2, mtt, shape)  # R_k((m + ½) step)
    out = np.zeros(lags.size)
    out[1:] = np.convolve(kernel, midpoints)[: lags.size - 1]  # Σ_i g_i R_k((j − i − ½) step)
    return out


def peak_offset(lags: np.ndarray, values: np.ndarray) -> float:
    """Time (s) of the maximum of ``values`` sampled at ``lags``, refined by a parabola.

    The first of equal maxima is taken, so a residue that falls from s = 0 gives 0.
    """
    i = int(np.argmax(values))
    if i == 0 or i == values.size - 1:
        return float(lags[i])
    before, centre, after = values[i - 1], values[i], values[i + 1]
    curvature = before - 2.0 * centre + after
    offset = 0.5 * (before - after) / curvature if curvature < 0 else 0.0
    return float(lags[i] + np.clip(offset, -0.5, 0.5) * (lags[1] - lags[0]))
