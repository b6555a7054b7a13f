"""Arterial input function (AIF) and venous output function (VOF) selection.

Method
------
1. Pre-screen: the ``MAX_CANDIDATES`` voxels with the highest maximum enhancement inside the
   brain mask dilated by one voxel in-plane (vessels on the brain edge count). Only their curves
   are read; the 4D array is never copied.
2. Curve features (after a [1, 2, 1] / 4 temporal smoothing): peak, time to peak (TTP, from the
   first frame), full width at half maximum (FWHM) and area.
3. Guards: a single-frame spike loses much of its peak to the smoothing (smoothed peak must be
   >= 70 % of the raw peak); noise has no support around it (correlation with the mean curve of
   the 8 in-plane neighbours >= 0.6); bone edges and motion dip far below baseline (minimum
   >= -20 % of the peak); calcification does not enhance and is never a candidate.
4. AIF: only clear vessel voxels (smoothed peak >= max(50 HU, 4 x voxel noise)) peaking at
   most 3 s after the 5th earliest of them are eligible, which keeps tissue noise and veins out
   even when the arteries are much fainter than the sinus. Artery score = peak / (TTP x FWHM)
   favours early, high and narrow curves. The best voxel and the eligible voxels that peak
   within 1.5 s of it with smoothed curves correlating > 0.8 with its own are ranked by score;
   the mean of the best ``n_voxels`` is the AIF.
5. VOF: among valid voxels peaking at least 2 s after the AIF, the ``n_voxels`` whose 3 x 3
   in-plane neighbourhood has the largest area (the centre of the largest late vessel, the
   venous sinus). Found when its peak is at least half the measured AIF peak.
6. Partial volume: AIF and VOF areas over windows of equal length aligned on their peaks
   (AIF from the first frame to the end minus the VOF delay, VOF from the delay to the end), so
   both hold the same first pass and recirculation. When the VOF is itself still above 30 % of
   its peak at the end, the areas of gamma variates fitted to the first passes (from just
   before arrival to the first frame below 50 % of the peak) are used instead, which
   extrapolates the missing tail. When 1 < VOF area / AIF area <= 3 the AIF is multiplied by
   that ratio; outside 0.7-3 a warning is given, above 3 the AIF is left alone.
7. Manual override: the given voxel and the best ``n_voxels - 1`` valid voxels within 2 voxels
   of it (the spike and dip guards apply, not the neighbour one); a warning when their mean
   does not look arterial (peak < 100 HU, TTP >= 3 s after the automatic AIF or score < half
   of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from triage.base.errors import InputError
from triage.base.grid import Geometry
from triage.base.language import Text
from triage.imaging.bolus import fit_first_pass

MAX_CANDIDATES = 3000
LOW_PEAK_HU = 100.0
TRUNCATED_TAIL = 0.3          # AIF at the last frame / peak above which it is truncated
NOISY_FRACTION = 0.08         # AIF noise / peak above which it is called noisy
RATIO_RANGE = (0.7, 3.0)      # plausible VOF / AIF first-pass area ratio
OVERRIDE_RADIUS = 2
VESSEL_HU = 50.0              # smoothed peak above which a voxel is a clear vessel
NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


@dataclass
class ArterialInput:
    """Arterial input and venous output curves (ΔHU on the frame times) and how they were found."""

    aif: np.ndarray
    aif_raw: np.ndarray
    vof: np.ndarray | None
    aif_voxels: np.ndarray
    vof_voxels: np.ndarray | None
    aif_scale: float
    quality: dict = field(default_factory=dict)


@dataclass
class _Candidates:
    zyx: np.ndarray           # (k, 3) int
    curves: np.ndarray        # (t, k) float64 ΔHU
    smooth: np.ndarray        # (t, k)
    peak: np.ndarray
    ttp: np.ndarray
    score: np.ndarray
    valid: np.ndarray


def _smooth(curves: np.ndarray) -> np.ndarray:
    out = curves.copy()
    out[1:-1] = (curves[:-2] + 2 * curves[1:-1] + curves[2:]) / 4
    return out


def _fwhm(smooth: np.ndarray, times: np.ndarray, i_peak: np.ndarray) -> np.ndarray:
    """Full width at half maximum (s), half-max crossings linearly interpolated; an unfinished
    side extends to the first or last frame."""
    n_t, k = smooth.shape
    cols = np.arange(k)
    half = smooth[i_peak, cols] / 2
    idx = np.arange(n_t)[:, None]
    below = smooth < half
    left = np.where(below & (idx < i_peak), idx, -1).max(axis=0)
    right = np.where(below & (idx > i_peak), idx, n_t).min(axis=0)

    def crossing(i0):
        i0 = np.clip(i0, 0, n_t - 2)
        y0, y1 = smooth[i0, cols], smooth[i0 + 1, cols]
        frac = np.clip((half - y0) / np.where(y1 != y0, y1 - y0, 1.0), 0.0, 1.0)
        return times[i0] + frac * (times[i0 + 1] - times[i0])

    t_left = np.where(left >= 0, crossing(left), times[0])
    t_right = np.where(right < n_t, crossing(right - 1), times[-1])
    return t_right - t_left


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation over time, column by column (b may be one curve)."""
    b = b.reshape(b.shape[0], -1)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    norm = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    return (a * b).sum(axis=0) / np.where(norm > 0, norm, np.inf)


def _neighbour_mean(enhancement: np.ndarray, zyx: np.ndarray) -> np.ndarray:
    """Mean curve of the 8 in-plane neighbours of each voxel, (t, k)."""
    _, _, ny, nx = enhancement.shape
    z, y, x = zyx.T
    total = np.zeros((enhancement.shape[0], len(zyx)))
    for dy, dx in NEIGHBOURS:
        total += enhancement[:, z, np.clip(y + dy, 0, ny - 1), np.clip(x + dx, 0, nx - 1)]
    return total / len(NEIGHBOURS)


def _features(enhancement: np.ndarray, times: np.ndarray, zyx: np.ndarray,
              with_neighbours: bool = True) -> _Candidates:
    z, y, x = zyx.T
    curves = enhancement[:, z, y, x].astype(np.float64)
    smooth = _smooth(curves)
    i_peak = smooth.argmax(axis=0)
    peak = smooth[i_peak, np.arange(len(zyx))]
    ttp = times[i_peak]
    fwhm = _fwhm(smooth, times, i_peak)
    step = float(np.min(np.diff(times)))
    score = peak / (np.maximum(ttp, step) * np.maximum(fwhm, step))
    valid = (peak > 0) & (peak >= 0.7 * curves.max(axis=0)) & (smooth.min(axis=0) >= -0.2 * peak)
    if with_neighbours:
        valid &= _correlation(curves, _neighbour_mean(enhancement, zyx)) >= 0.6
    return _Candidates(zyx, curves, smooth, peak, ttp, score, valid)


def _prescreen(peak: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """(k, 3) voxels of highest maximum enhancement in the brain mask and its in-plane edge."""
    search = ndimage.binary_dilation(brain, structure=np.ones((1, 3, 3), bool))
    inside = np.flatnonzero(search)
    values = peak.ravel()[inside]
    k = min(MAX_CANDIDATES, inside.size)
    flat = inside[np.argpartition(values, -k)[-k:]]
    return np.column_stack(np.unravel_index(flat, brain.shape))


def _early_vessels(c: _Candidates) -> np.ndarray:
    """Clear vessel voxels (all valid voxels if fewer than 3) peaking no later than 3 s after
    the 5th earliest of them."""
    d2 = np.diff(c.curves, 2, axis=0)
    noise = 1.4826 * float(np.median(np.abs(d2 - np.median(d2, axis=0)))) / np.sqrt(6)
    vessel = c.valid & (c.peak >= max(VESSEL_HU, 4 * noise))
    if vessel.sum() < 3:
        return c.valid
    return vessel & (c.ttp <= np.sort(c.ttp[vessel])[min(4, vessel.sum() - 1)] + 3.0)


def _coherent_best(c: _Candidates, eligible: np.ndarray, n: int) -> np.ndarray:
    """Indices of the best-scoring eligible voxels that move together with the best one."""
    pool = np.flatnonzero(eligible)
    if pool.size == 0:
        return pool
    best = pool[np.argmax(c.score[pool])]
    same = (np.abs(c.ttp[pool] - c.ttp[best]) <= 1.5) & (
        _correlation(c.smooth[:, pool], c.smooth[:, best]) > 0.8)
    group = pool[same]
    return group[np.argsort(-c.score[group])[:n]]


def _select_vof(enhancement, c: _Candidates, times, aif_ttp: float, aif_peak: float, n: int):
    late = c.valid & (c.ttp >= aif_ttp + 2.0)
    pool = np.flatnonzero(late)
    if pool.size == 0:
        return None
    local = (c.curves[:, pool] + 8 * _neighbour_mean(enhancement, c.zyx[pool])) / 9
    area = np.trapezoid(local, times, axis=0)
    order = pool[np.argsort(-area)]
    best = order[0]
    chosen = order[np.abs(c.ttp[order] - c.ttp[best]) <= 3.0][:n]
    vof = c.curves[:, chosen].mean(axis=1)
    if vof.max() < 0.5 * aif_peak:
        return None
    return vof, c.zyx[chosen]


def _arrival_frame(curve: np.ndarray) -> int:
    """Last frame before the peak still below 10 % of the peak (searching back from the peak,
    so noise before the bolus does not matter)."""
    i_peak = int(np.argmax(curve))
    before = np.flatnonzero(curve[:i_peak] < 0.1 * curve[i_peak])
    return int(before[-1]) if before.size else 0


def _onset_frame(curve: np.ndarray) -> int:
    """One frame before the arrival frame: where a first-pass fit or area starts."""
    return max(_arrival_frame(curve) - 1, 0)


def _window_area(curve: np.ndarray, times: np.ndarray, start: float, stop: float) -> float:
    """Trapezoid area (ΔHU s) of the linearly interpolated curve between two times."""
    inside = times[(times > start) & (times < stop)]
    t = np.concatenate([[start], inside, [stop]])
    return float(np.trapezoid(np.interp(t, times, curve), t))


def _area_ratio(aif: np.ndarray, vof: np.ndarray, times: np.ndarray, aif_ttp: float,
                vof_ttp: float, vof_tail: float) -> tuple[float, str]:
    """VOF area / AIF area and the method used (see the module docstring, step 6)."""
    if vof_tail > TRUNCATED_TAIL:
        fits = [fit_first_pass(c, times, _onset_frame(c)) for c in (aif, vof)]
        if all(f is not None for f in fits):
            return fits[1].area / fits[0].area, "gamma-variate first pass (VOF truncated)"
    shift = vof_ttp - aif_ttp
    start = times[_onset_frame(aif)]
    aif_area = _window_area(aif, times, start, times[-1] - shift)
    vof_area = _window_area(vof, times, start + shift, times[-1])
    ratio = vof_area / aif_area if aif_area > 0 else float("inf")
    return ratio, "peak-aligned windows"


def _describe(curve: np.ndarray, times: np.ndarray) -> dict:
    """Peak (HU), arrival, TTP and FWHM (s), tail fraction, noise (HU, from second differences)
    and artery score of one curve."""
    smooth = _smooth(curve[:, None])
    i_peak = int(smooth[:, 0].argmax())
    peak = float(smooth[i_peak, 0])
    fwhm = float(_fwhm(smooth, times, np.array([i_peak]))[0])
    ttp = float(times[i_peak])
    tail = float(curve[-2:].mean() / peak) if peak > 0 else 1.0
    d2 = np.diff(curve, 2)
    noise = float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / np.sqrt(6))
    step = float(np.min(np.diff(times)))
    return {"peak_hu": peak, "arrival_s": float(times[_arrival_frame(curve)]), "ttp_s": ttp,
            "fwhm_s": fwhm, "tail_fraction": tail, "noise_hu": noise,
            "score": peak / (max(ttp, step) * max(fwhm, step))}


def _validate(enhancement, times, brain, override_zyx, n_voxels) -> None:
    if enhancement.ndim != 4:
        raise InputError(f"expected a 4D (t, z, y, x) enhancement series, got {enhancement.ndim} "
                         "dimensions")
    if times.shape != (enhancement.shape[0],) or enhancement.shape[0] < 5:
        raise InputError(f"{times.size} frame times for {enhancement.shape[0]} frames "
                         "(at least 5 needed)")
    if brain.shape != enhancement.shape[1:] or not brain.any():
        raise InputError("the brain mask is empty or does not match the series")
    if n_voxels < 1:
        raise InputError(f"n_voxels must be at least 1, got {n_voxels}")
    if override_zyx is not None:
        if len(override_zyx) != 3 or not all(
                0 <= int(v) < s for v, s in zip(override_zyx, brain.shape)):
            raise InputError(f"manual AIF location {tuple(override_zyx)} is outside the volume "
                             f"{brain.shape} (z, y, x)")


def _override_voxels(enhancement, times, zyx: tuple[int, int, int], n: int) -> np.ndarray:
    """The given voxel and the best-scoring valid voxels within OVERRIDE_RADIUS of it, (m, 3)."""
    lo = np.maximum(np.asarray(zyx) - OVERRIDE_RADIUS, 0)
    hi = np.minimum(np.asarray(zyx) + OVERRIDE_RADIUS + 1, enhancement.shape[1:])
    box = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
    c = _features(enhancement, times, box.reshape(-1, 3), with_neighbours=False)
    others = np.flatnonzero(c.valid & np.any(c.zyx != zyx, axis=1))
    others = others[np.argsort(-c.score[others])[:n - 1]]
    return np.vstack([np.asarray([zyx]), c.zyx[others]])


def _override_warning(stats: dict, auto: dict | None, zyx: tuple[int, int, int]) -> list[str]:
    """Warning when a manual AIF does not look arterial next to the automatic one."""
    late = auto is not None and stats["ttp_s"] >= auto["ttp_s"] + 3.0
    weak = auto is not None and stats["score"] < 0.5 * auto["score"]
    if stats["peak_hu"] >= LOW_PEAK_HU and not late and not weak:
        return []
    found = {"zyx": str(tuple(int(v) for v in zyx)), "peak_hu": stats["peak_hu"], "ttp_s": stats["ttp_s"]}
    if auto is None:
        return [Text("aif.manual_not_arterial", **found)]
    return [Text("aif.manual_not_arterial_auto", **found, auto_peak_hu=auto["peak_hu"], auto_ttp_s=auto["ttp_s"])]


def _curve_warnings(stats: dict, times: np.ndarray) -> list[str]:
    warnings = []
    if stats["peak_hu"] < LOW_PEAK_HU:
        warnings.append(Text("aif.low_peak", peak_hu=stats["peak_hu"]))
    if stats["tail_fraction"] > TRUNCATED_TAIL:
        warnings.append(Text("aif.truncated", percent=100 * stats["tail_fraction"], end_s=times[-1]))
    if stats["noise_hu"] > NOISY_FRACTION * stats["peak_hu"]:
        warnings.append(Text("aif.noisy", noise_hu=stats["noise_hu"], peak_hu=stats["peak_hu"]))
    return warnings


def select_arterial_input(enhancement: np.ndarray, times: np.ndarray, brain: np.ndarray,
                          geometry: Geometry, *,
                          override_zyx: tuple[int, int, int] | None = None,
                          n_voxels: int = 8, peak: np.ndarray | None = None) -> ArterialInput:
    """Select the AIF (and VOF for partial-volume correction) from a perfusion series.

    Parameters
    ----------
    enhancement : (t, z, y, x) float32 ΔHU (HU minus the baseline image). Not modified or copied.
    times : (t,) s from the first frame.
    brain : (z, y, x) bool intracranial mask.
    geometry : grid of the series (kept for the interface; selection works in voxels).
    override_zyx : manual AIF location (z, y, x) in voxels; its best neighbours within 2 voxels
        are averaged with it.
    n_voxels : number of voxels averaged into the AIF and the VOF.
    peak : (z, y, x) maximum enhancement used to pre-screen candidates (default: the maximum
        over all frames). The pipeline passes the maximum over frames not resampled for motion,
        so skull edges interpolated into a realigned frame cannot pass for an artery.

    Returns
    -------
    ArterialInput; ``quality`` holds peak_hu (of the corrected AIF), raw_peak_hu, arrival_s
    (last frame below 10 % of the peak before it), ttp_s, fwhm_s (None when truncated),
    truncated, score (peak / (TTP x FWHM)), noise_hu, vof_peak_hu, vof_ttp_s,
    vof_aif_area_ratio, area_method (None without VOF), manual, n_candidates and warnings.

    Raises
    ------
    InputError
        Inconsistent input, or no voxel enhances like an artery (without an override).
    """
    times = np.asarray(times, dtype=float)
    brain = np.asarray(brain, dtype=bool)
    _validate(enhancement, times, brain, override_zyx, n_voxels)
    peak = enhancement.max(axis=0) if peak is None else peak
    cand = _features(enhancement, times, _prescreen(peak, brain))
    auto = _coherent_best(cand, _early_vessels(cand), n_voxels)
    if override_zyx is not None:
        override_zyx = tuple(int(v) for v in override_zyx)
        aif_voxels = _override_voxels(enhancement, times, override_zyx, n_voxels)
    elif auto.size:
        aif_voxels = cand.zyx[auto]
    else:
        raise InputError("no arterial input found: no voxel in the brain enhances like an artery")
    z, y, x = aif_voxels.T
    aif_raw = enhancement[:, z, y, x].astype(np.float64).mean(axis=1)
    stats = _describe(aif_raw, times)
    warnings = []
    if override_zyx is not None:
        auto_stats = _describe(cand.curves[:, auto].mean(axis=1), times) if auto.size else None
        warnings += _override_warning(stats, auto_stats, override_zyx)
    venous = _venous_output(enhancement, cand, times, aif_raw, stats, n_voxels)
    warnings += venous.warnings + _curve_warnings(stats, times)
    quality = {**_aif_quality(stats, venous), "manual": override_zyx is not None,
               "n_candidates": int(len(cand.zyx)), "warnings": warnings}
    return ArterialInput(
        aif=(aif_raw * venous.scale).astype(np.float32), aif_raw=aif_raw.astype(np.float32),
        vof=None if venous.vof is None else venous.vof.astype(np.float32), aif_voxels=aif_voxels.astype(int),
        vof_voxels=None if venous.voxels is None else venous.voxels.astype(int),
        aif_scale=venous.scale, quality=quality)


@dataclass
class _VenousOutput:
    """The VOF and the partial-volume correction of the AIF it gives (module docstring, 5-6).

    vof : (t,) ΔHU or None when not found; voxels : (n, 3) z, y, x or None; stats : its
    :func:`_describe` or None; ratio : VOF / AIF first-pass area ratio or None; method : how
    the areas were measured or None; scale : factor applied to the AIF (1 without correction);
    warnings : lines for the result.
    """

    vof: np.ndarray | None = None
    voxels: np.ndarray | None = None
    stats: dict | None = None
    ratio: float | None = None
    method: str | None = None
    scale: float = 1.0
    warnings: list[str] = field(default_factory=list)


def _venous_output(enhancement: np.ndarray, cand: _Candidates, times: np.ndarray, aif_raw: np.ndarray,
                   stats: dict, n_voxels: int) -> _VenousOutput:
    """Find the VOF among the candidates and the AIF's partial-volume scale from the area
    ratio: applied when 1 < ratio <= RATIO_RANGE[1], a warning outside RATIO_RANGE."""
    found = _select_vof(enhancement, cand, times, stats["ttp_s"], stats["peak_hu"], n_voxels)
    if found is None:
        return _VenousOutput(warnings=["VOF not found: AIF not corrected for partial volume"])
    vof, voxels = found
    vof_stats = _describe(vof, times)
    ratio, method = _area_ratio(aif_raw, vof, times, stats["ttp_s"], vof_stats["ttp_s"], vof_stats["tail_fraction"])
    venous = _VenousOutput(vof, voxels, vof_stats, ratio, method)
    if not RATIO_RANGE[0] <= ratio <= RATIO_RANGE[1]:
        venous.warnings.append(Text("aif.vof_ratio", ratio=ratio, low=RATIO_RANGE[0], high=RATIO_RANGE[1]))
    if 1.0 < ratio <= RATIO_RANGE[1]:
        venous.scale = float(ratio)
    return venous


def _aif_quality(stats: dict, venous: _VenousOutput) -> dict:
    """The curve part of ``ArterialInput.quality``: the AIF's features (peak in HU after the
    partial-volume scale, times in s), its VOF's and the area ratio."""
    truncated = stats["tail_fraction"] > TRUNCATED_TAIL
    vof_stats = venous.stats
    return {
        "peak_hu": stats["peak_hu"] * venous.scale, "raw_peak_hu": stats["peak_hu"],
        "arrival_s": stats["arrival_s"], "ttp_s": stats["ttp_s"],
        "fwhm_s": None if truncated else stats["fwhm_s"], "truncated": bool(truncated),
        "score": stats["score"], "noise_hu": stats["noise_hu"],
        "vof_peak_hu": vof_stats["peak_hu"] if vof_stats else None,
        "vof_ttp_s": vof_stats["ttp_s"] if vof_stats else None,
        "vof_aif_area_ratio": None if venous.ratio is None else float(venous.ratio), "area_method": venous.method,
    }
