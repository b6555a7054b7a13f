"""Bolus timing: pre-contrast baseline frames, arrival, peak and truncation of the acquisition.

Method
------
* Arrival. The brain voxels with the highest 3-frame mean rise over the first frames (0.5 % of
  the brain, 50-2000 voxels: the large arteries and veins; a spike in one frame does not count)
  are timed one by one: the last frame before the peak where the rise is still below
  max(3 sigma, 10 % of the voxel's peak), sigma = voxel noise from the difference of the first
  two frames; their mean peak rise must reach 20 HU (else there is no bolus). The 10th
  percentile of these frames (the arteries, which come before the veins) is the arrival frame
  and ``arrival_s`` its time: contrast reaches the intracranial arteries between it and the
  next frame; brain tissue starts to enhance at the same time and rises more slowly.
* Baseline. The frames before the arrival frame, less one frame of margin (at least one frame):
  ``n_baseline = max(1, i_arrival - 1)``. Fewer than 3 frames gives a "short baseline" warning.
* Truncation. ``truncated`` is set when the whole-brain mean enhancement at the last frame is
  still above 50 % of its peak, or when a gamma variate fitted to the first pass of that curve
  (from arrival to the first frame below 50 % of peak after it) puts more than 25 % of its
  area after the last frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import curve_fit
from scipy.special import gammainc, gammaln

from triage.base.errors import InputError
from triage.base.language import Text, counted

TAIL_LIMIT = 0.5              # last-frame enhancement / peak above which the bolus is truncated
MISSING_AREA_LIMIT = 0.25     # fitted first-pass area after the last frame above which truncated
SHORT_BASELINE_FRAMES = 3
MIN_VESSEL_HU = 20.0          # mean peak rise of those voxels below which there is no bolus
VESSEL_VOXELS = (50, 2000)    # range of the number of vessel voxels timed (0.5 % of the brain)


@dataclass
class BolusTiming:
    """Timing of the contrast bolus in one acquisition (times in s from the first frame)."""

    n_baseline: int
    arrival_s: float
    peak_s: float
    truncated: bool
    tail_fraction: float
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GammaVariate:
    """Gamma variate y(t) = peak * x**alpha * exp(alpha * (1 - x)), x = (t - t0) / (t_peak - t0)."""

    t0: float
    t_peak: float
    peak: float
    alpha: float

    def __call__(self, t) -> np.ndarray:
        return _gamma_model(np.asarray(t, dtype=float), self.t0, self.t_peak - self.t0,
                            self.peak, self.alpha)

    @property
    def area(self) -> float:
        """Integral over all time (curve units x s)."""
        a, rise = self.alpha, self.t_peak - self.t0
        return float(self.peak * rise * np.exp(a - (a + 1) * np.log(a) + gammaln(a + 1)))

    def fraction_before(self, t: float) -> float:
        """Fraction of the area before time ``t``."""
        x = max(t - self.t0, 0.0) * self.alpha / (self.t_peak - self.t0)
        return float(gammainc(self.alpha + 1, x))


def _gamma_model(t, t0, rise, peak, alpha):
    x = np.clip((t - t0) / rise, 0.0, None)
    return peak * x**alpha * np.exp(alpha * (1.0 - x))


def fit_first_pass(curve: np.ndarray, times: np.ndarray, start: int = 0,
                   drop: float = 0.5) -> GammaVariate | None:
    """Fit a gamma variate to the first pass of an enhancement curve.

    Parameters
    ----------
    curve : (t,) enhancement (ΔHU); times : (t,) s.
    start : first frame used (the last pre-contrast frame).
    drop : the fit stops at the first frame after the peak below ``drop`` x peak, which keeps
        recirculation out of the fit.

    Returns None when there are fewer than 4 frames to fit or the fit fails.
    """
    curve = np.asarray(curve, dtype=float)
    i_peak = start + int(np.argmax(curve[start:]))
    peak = curve[i_peak]
    below = np.flatnonzero(curve[i_peak:] < drop * peak)
    stop = i_peak + (int(below[0]) if below.size else curve.size - 1 - i_peak)
    t, y = times[start:stop + 1], curve[start:stop + 1]
    if t.size < 4 or peak <= 0:
        return None
    t_first = times[start]
    p0 = (t_first, max(times[i_peak] - t_first, 0.5), peak, 3.0)
    lower = (times[max(start - 1, 0)], 0.3, 0.2 * peak, 0.25)
    upper = (times[i_peak], 60.0, 3.0 * peak, 20.0)
    p0 = np.clip(p0, np.add(lower, 1e-6), np.subtract(upper, 1e-6))
    try:
        (t0, rise, amp, alpha), _ = curve_fit(_gamma_model, t, y, p0=p0, bounds=(lower, upper),
                                              maxfev=2000)
    except (RuntimeError, ValueError):
        return None
    return GammaVariate(float(t0), float(t0 + rise), float(amp), float(alpha))


def _validate(hu: np.ndarray, times: np.ndarray, brain: np.ndarray) -> None:
    if hu.ndim != 4:
        raise InputError(f"expected a 4D (t, z, y, x) series, got {hu.ndim} dimensions")
    if times.shape != (hu.shape[0],):
        raise InputError(f"{times.size} frame times for {hu.shape[0]} frames")
    if hu.shape[0] < 5:
        raise InputError(f"only {hu.shape[0]} time frames; at least 5 are needed")
    if np.any(np.diff(times) <= 0):
        raise InputError("frame times are not strictly increasing")
    if brain.shape != hu.shape[1:]:
        raise InputError(f"brain mask shape {brain.shape} does not match the series {hu.shape[1:]}")
    if not brain.any():
        raise InputError("the brain mask is empty")


def _vessel_curves(hu: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """(t, n) curves of the brain voxels with the highest 3-frame mean rise over the first frame:
    the large arteries and veins (a spike in one frame does not make a voxel a vessel)."""
    rise = np.full(brain.shape, -np.inf, dtype=np.float32)
    for i in range(1, hu.shape[0] - 1):
        np.maximum(rise, hu[i - 1] + hu[i] + hu[i + 1], out=rise)
    inside = np.flatnonzero(brain)
    values = rise.ravel()[inside] / 3 - hu[0].ravel()[inside]
    n_vessel = int(np.clip(inside.size // 200, min(VESSEL_VOXELS), max(VESSEL_VOXELS)))
    n_vessel = min(n_vessel, inside.size)
    flat = inside[np.argpartition(values, -n_vessel)[-n_vessel:]]
    return hu.reshape(hu.shape[0], -1)[:, flat].astype(np.float64)


def _arrival_frame(vessels: np.ndarray, sigma: float) -> int:
    """Frame at which the earliest vessels (10th percentile) are last at baseline."""
    rise = vessels - vessels[:2].mean(axis=0)
    smooth = rise.copy()
    smooth[1:-1] = (rise[:-2] + rise[1:-1] + rise[2:]) / 3
    i_peak = smooth.argmax(axis=0)
    peak = smooth[i_peak, np.arange(rise.shape[1])]
    mean_peak = smooth.mean(axis=1).max()
    if mean_peak < MIN_VESSEL_HU:
        raise InputError(f"no contrast bolus found: the brightest vessels enhance by "
                         f"{mean_peak:.0f} HU on average")
    frames = np.arange(rise.shape[0])[:, None]
    quiet = (rise < np.maximum(3 * sigma, 0.1 * peak)) & (frames < i_peak)
    last_quiet = np.where(quiet, frames, 0).max(axis=0)
    return int(np.percentile(last_quiet, 10, method="lower"))


def _truncation(enh: np.ndarray, times: np.ndarray, i_arrival: int) -> tuple[bool, list[str]]:
    peak = enh.max()
    tail = enh[-1] / peak
    t_end = times[-1]
    if tail > TAIL_LIMIT:
        return True, [Text("bolus.truncated_tail", percent=100 * tail, end_s=t_end)]
    fit = fit_first_pass(enh, times, i_arrival)
    if fit is not None:
        missing = 1.0 - fit.fraction_before(t_end)
        if missing > MISSING_AREA_LIMIT:
            return True, [Text("bolus.truncated_fit", percent=100 * missing, end_s=t_end)]
    return False, []


def analyse_bolus(hu: np.ndarray, times: np.ndarray, brain: np.ndarray) -> BolusTiming:
    """Find the baseline frames, bolus arrival and peak, and whether the bolus was cut off.

    Parameters
    ----------
    hu : (t, z, y, x) float32 attenuation in HU.
    times : (t,) float s from the first frame, strictly increasing.
    brain : (z, y, x) bool intracranial mask.

    Raises
    ------
    InputError
        Inconsistent shapes or times, fewer than 5 frames, empty mask, or no contrast bolus.
    """
    times = np.asarray(times, dtype=float)
    brain = np.asarray(brain, dtype=bool)
    _validate(hu, times, brain)
    n_t = hu.shape[0]
    flat = hu.reshape(n_t, -1)
    in_brain = brain.ravel()
    frame_noise = np.diff(flat[:2][:, in_brain], axis=0).ravel()
    spread = np.median(np.abs(frame_noise - np.median(frame_noise)))
    voxel_sigma = 1.4826 * float(spread) / np.sqrt(2)
    i_arrival = _arrival_frame(_vessel_curves(hu, brain), voxel_sigma)
    n_baseline = max(1, i_arrival - 1)

    whole_brain = (flat @ in_brain.astype(np.float32)).astype(float) / in_brain.sum()
    enh = whole_brain - whole_brain[:n_baseline].mean()
    i_peak = int(np.argmax(enh))
    warnings = []
    if enh[i_peak] <= 0:
        raise InputError("no contrast enhancement of the brain found")
    if n_baseline < SHORT_BASELINE_FRAMES:
        warnings.append(counted("bolus.short_baseline", n_baseline, arrival_s=times[i_arrival]))
    truncated, why = _truncation(enh, times, i_arrival)
    return BolusTiming(n_baseline=n_baseline, arrival_s=float(times[i_arrival]),
                       peak_s=float(times[i_peak]), truncated=truncated,
                       tail_fraction=float(enh[-1] / enh[i_peak]), warnings=warnings + why)


def baseline_image(hu: np.ndarray, n_baseline: int) -> np.ndarray:
    """Mean of the first ``n_baseline`` frames, (z, y, x) float32 HU."""
    if not 1 <= n_baseline <= hu.shape[0]:
        raise InputError(f"baseline of {n_baseline} frames for a series of {hu.shape[0]}")
    return hu[:n_baseline].mean(axis=0, dtype=np.float64).astype(np.float32)
