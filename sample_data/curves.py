"""Arterial, venous and tissue enhancement curves of the phantom (HU above baseline).

Every curve is computed on a fine time grid (``FINE_DT_S``) that extends far past the
acquisition so the bolus and the tissue tails return to zero, then sampled at the frame times by
linear interpolation. The tissue model follows docs/conventions.md:
C(t) = (rho / k_H) * F * (C_a conv R)(t), F = CBF / 6000 mL/g/s, R(t) = exp(-(t - d) / MTT) for
t >= d, or another distribution of transit times (:data:`RESIDUE_SHAPES`). The fine-grid
convolution is not the frame-rate discretisation a deconvolution uses.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve
from scipy.special import gammainc, gammaincc, ndtr

RHO = 1.04                        # brain density, g/mL
K_H = (1.0 - 0.45) / (1.0 - 0.25)  # hematocrit correction, ~0.733
FINE_DT_S = 0.02
FINE_SPAN_S = 320.0               # fine grid length: the longest tissue tail is < 100 s

AIF_PEAK_HU = 320.0
AIF_ARRIVAL_S, AIF_ALPHA, AIF_BETA_S = 7.0, 3.0, 2.5          # peak at 7 + 3 * 2.5 = 14.5 s
RECIRC_FRACTION, RECIRC_ARRIVAL_S, RECIRC_ALPHA, RECIRC_BETA_S = 0.12, 19.0, 3.0, 3.5
VOF_DELAY_S, VOF_DISPERSION_S = 5.0, 2.0


def fine_times() -> np.ndarray:
    """The fine time grid (s from the first frame)."""
    return np.arange(0.0, FINE_SPAN_S, FINE_DT_S)


def _gamma_bump(t, arrival, alpha, beta):
    """Gamma variate with maximum 1 at ``arrival + alpha * beta``; 0 before ``arrival``."""
    x = np.clip((t - arrival) / beta, 0.0, None)
    return (x / alpha) ** alpha * np.exp(alpha - x)


def arterial_curve(t: np.ndarray, peak_hu: float = AIF_PEAK_HU, width: float = 1.0) -> np.ndarray:
    """True arterial enhancement (HU) at times ``t`` (s): bolus plus a small recirculation.

    ``peak_hu`` is the first-pass maximum (HU); ``width`` scales both gamma variates' beta, so
    the first pass peaks at ``7 + 7.5 * width`` s and is ``width`` times wider (same arrival).
    """
    return peak_hu * (_gamma_bump(t, AIF_ARRIVAL_S, AIF_ALPHA, AIF_BETA_S * width)
                      + RECIRC_FRACTION * _gamma_bump(t, RECIRC_ARRIVAL_S, RECIRC_ALPHA,
                                                      RECIRC_BETA_S * width))


def exponential_kernel(tau_s: float, n: int) -> np.ndarray:
    """Unit-sum exponential kernel exp(-t / tau) / tau on the fine grid (cell averages)."""
    edges = np.arange(n + 1) * FINE_DT_S
    return -np.diff(np.exp(-edges / tau_s))


def _convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return fftconvolve(a, b)[: a.size]


def venous_curve(t_fine: np.ndarray, aif_fine: np.ndarray) -> np.ndarray:
    """Venous output: the AIF delayed by VOF_DELAY_S and dispersed, with the same area."""
    shift = int(round(VOF_DELAY_S / FINE_DT_S))
    delayed = np.concatenate([np.zeros(shift), aif_fine[: aif_fine.size - shift]])
    return _convolve(delayed, exponential_kernel(VOF_DISPERSION_S, t_fine.size))


LOGNORMAL_CV = 0.7  # coefficient of variation of the lognormal transit times
RESIDUE_SHAPES = ("exponential", "gamma2", "gamma3", "gamma5", "linear", "box", "lognormal")
"""Transit-time distributions of the residue, by name (see :func:`residue`)."""


def _gamma_cumulative(shape: float):
    def cumulative(x, mtt):
        theta = mtt / shape
        return x * gammaincc(shape, x / theta) + mtt * gammainc(shape + 1.0, x / theta)
    return cumulative


def _lognormal_cumulative(x, mtt):
    sigma = np.sqrt(np.log1p(LOGNORMAL_CV**2))
    mu = np.log(mtt) - sigma**2 / 2
    with np.errstate(divide="ignore"):
        log_x = np.log(np.maximum(x, 1e-300))
    return x * ndtr(-(log_x - mu) / sigma) + mtt * ndtr((log_x - mu - sigma**2) / sigma)


# ∫_0^x R(s) ds for a residue of mean transit time ``mtt`` (s), x ≥ 0 (s).
_CUMULATIVE = {
    "exponential": lambda x, mtt: mtt * -np.expm1(-x / mtt),
    "gamma2": _gamma_cumulative(2.0),
    "gamma3": _gamma_cumulative(3.0),
    "gamma5": _gamma_cumulative(5.0),
    "linear": lambda x, mtt: np.where(x < 2 * mtt, x - x**2 / (4 * mtt), mtt),
    "box": lambda x, mtt: np.minimum(x, mtt),
    "lognormal": _lognormal_cumulative,
}


def residue(t_fine: np.ndarray, mtt_s: float, delay_s: float, dispersion_s: float,
            shape: str = "exponential") -> np.ndarray:
    """Effective residue R_eff = h conv R as cell averages over the fine grid.

    R(s) = P(transit time > s), s = t - delay >= 0, is the fraction of tracer still in tissue
    for a distribution of transit times with mean MTT (s), named by ``shape``
    (:data:`RESIDUE_SHAPES`):

    * ``exponential``: R = exp(-s / MTT) (one well-mixed compartment);
    * ``gamma2``, ``gamma3``, ``gamma5``: gamma-distributed transit times of that shape
      parameter (less capillary transit-time heterogeneity, a flatter-topped residue);
    * ``linear``: R = 1 - s / (2 MTT) up to 2 MTT (uniform transit times, Kudo et al. 2013);
    * ``box``: R = 1 up to MTT (a single transit time, plug flow; Kudo et al. 2013);
    * ``lognormal``: lognormal transit times with coefficient of variation ``LOGNORMAL_CV``.

    h is an exponential dispersion kernel with time constant ``dispersion_s`` (none when 0).
    Cell averages (exact integrals of R over each fine cell) keep the area exact (= MTT).
    """
    if shape not in _CUMULATIVE:
        raise ValueError(f"unknown residue shape {shape!r}; known: {', '.join(RESIDUE_SHAPES)}")
    x = np.clip(np.append(t_fine, t_fine[-1] + FINE_DT_S) - delay_s, 0.0, None)
    r = np.diff(_CUMULATIVE[shape](x, mtt_s)) / FINE_DT_S
    if dispersion_s > 0:
        r = _convolve(r, exponential_kernel(dispersion_s, r.size))
    return r


def tissue_curve(aif_fine: np.ndarray, r_fine: np.ndarray, cbf: float) -> np.ndarray:
    """C(t) = (rho / k_H) * F * (C_a conv R)(t) on the fine grid, HU."""
    flow = cbf / 6000.0
    return (RHO / K_H) * flow * FINE_DT_S * _convolve(aif_fine, r_fine)


def tmax_of(r_fine: np.ndarray, t_fine: np.ndarray) -> float:
    """Time (s) of the maximum of the residue function (cell centre): the first cell within
    1e-9 of the maximum, so that a flat top (box residue) gives its start."""
    first = int(np.argmax(r_fine >= r_fine.max() * (1.0 - 1e-9)))
    return float(t_fine[first] + FINE_DT_S / 2.0)


def dispersed_offset(mtt_s: float, dispersion_s: float, shape: str) -> float:
    """Time (s) from the onset of the residue to the maximum of R_eff (0 without dispersion)."""
    if dispersion_s == 0:
        return 0.0
    t = fine_times()
    return tmax_of(residue(t, mtt_s, 0.0, dispersion_s, shape), t) - FINE_DT_S / 2.0


def onset_for_tmax(tmax_s: float, mtt_s: float, dispersion_s: float,
                   shape: str) -> tuple[float, float]:
    """Arrival delay (s) that puts the maximum of R_eff at ``tmax_s``, and the dispersion used.

    The delay is ``tmax_s`` minus the dispersed residue's offset (:func:`dispersed_offset`).
    Tissue cannot enhance before its artery, so where that delay would be negative the
    dispersion is reduced (bisection to 0.01 s) to the largest time constant (s) that keeps it
    >= 0: e.g. the 3.5 s oligaemic rim with 3 s dispersion, or a box residue whose dispersed
    maximum sits at the end of the box (one MTT).
    """
    if dispersed_offset(mtt_s, dispersion_s, shape) > tmax_s:
        low, high = 0.0, dispersion_s
        while high - low > 0.01:
            mid = (low + high) / 2.0
            low, high = (mid, high) if dispersed_offset(mtt_s, mid, shape) <= tmax_s else (low, mid)
        dispersion_s = low
    return tmax_s - dispersed_offset(mtt_s, dispersion_s, shape), dispersion_s
