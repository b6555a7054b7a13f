"""Spatial denoising of tissue enhancement curves that keeps tissue classes apart.

Clinical CTP has 7–12 HU noise per voxel and frame against 10–30 HU of tissue enhancement, so
curves are smoothed in-plane before deconvolution. All smoothing stays inside the parenchyma
mask (CSF, vessels and bone never leak into tissue curves), and the dominant temporal shapes
are smoothed with a bilateral filter on time-intensity-profile similarity (TIPS, Mendrik et al.,
IEEE TMI 2011), so tissue with another arrival time or flow is not averaged in.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from triage.base.grid import Geometry

FWHM_PER_SIGMA = 2.3548
COARSE_TRUNCATE = 2.0  # the coarse kernel is cut at 2 SD: its tails barely matter, its cost does
TEMPORAL_RESOLUTION_S = 4.0  # shortest half-period of the temporal basis of denoise_curves
DISTANCE_COMPONENTS = 4  # principal temporal components that set the profile distance (and are filtered)
DISTANCE_FWHM_MM = 7.0  # pre-smoothing of those components (distances only)
BASELINE_FWHM_MM = 2.0  # pre-smoothing of the pre-contrast image in the distances
BASELINE_NOISE_WEIGHT = 0.25  # its noise distance relative to that of the profiles (0.25: GM kept, core noise not raised at 15 HU)
NOISE_PAIR_OFFSET_PX = 4  # voxel pairs this far apart measure the noise part of profile distances
RANGE_FACTOR = 0.25  # width of the range kernel, in units of the expected noise distance
# Curve strength (relative to the median) below which the MTT guide is the coarse Gaussian
# smoothing, above which the edge-preserving denoised curve, linear between (see denoise_curves).
WEAK_CURVE_STRENGTH = (0.45, 0.75)
BILATERAL_MIN_SLAB = 4  # slices per thread of the bilateral filter
MEDIAN_CHUNK, MEDIAN_THREADS = 32768, 2  # voxels per partial sort (~10 MB of windows), threads
SMOOTH_THREADS = 2  # frames smoothed at once
OFFSETS_PER_SIGMA = 3  # the bilateral filter samples at least this many neighbour offsets per SD


def smooth_within_mask(enhancement: np.ndarray, mask: np.ndarray, geometry: Geometry, fwhm_mm: float,
                       *, truncate: float = 3.0) -> None:
    """Smooth every frame of ``enhancement`` (t, z, y, x) in place, in-plane, within ``mask``.

    Voxels outside ``mask`` are left untouched. ``fwhm_mm`` is the full width at half maximum of
    the Gaussian kernel in mm (0 does nothing), cut at ``truncate`` standard deviations.
    """
    if fwhm_mm <= 0 or not mask.any():
        return
    sx, sy, _ = geometry.spacing
    sigma = (fwhm_mm / FWHM_PER_SIGMA / sy, fwhm_mm / FWHM_PER_SIGMA / sx)
    zs, ys, xs = (np.flatnonzero(mask.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    pad = int(np.ceil(truncate * max(sigma)))
    box = (
        slice(zs[0], zs[-1] + 1),
        slice(max(ys[0] - pad, 0), ys[-1] + pad + 1),
        slice(max(xs[0] - pad, 0), xs[-1] + pad + 1),
    )
    weights = mask[box].astype(np.float32)
    norm = ndimage.gaussian_filter(weights, (0, *sigma), truncate=truncate)
    inside = mask[box]
    np.divide(1.0, norm, out=norm, where=inside)

    def smooth(frame: np.ndarray) -> None:
        region = frame[box]
        smoothed = ndimage.gaussian_filter(region * weights, (0, *sigma), truncate=truncate)
        smoothed *= norm
        np.copyto(region, smoothed, where=inside)

    # Frames are independent and SciPy's filters release the interpreter lock: both cores.
    with ThreadPoolExecutor(max_workers=SMOOTH_THREADS) as pool:
        for _ in pool.map(smooth, enhancement):
            pass


def denoise_curves(enhancement: np.ndarray, mask: np.ndarray, geometry: Geometry, times: np.ndarray,
                   spatial_fwhm_mm: float, coarse_fwhm_mm: float, *, baseline: np.ndarray | None = None) -> np.ndarray:
    """Denoise the curves of ``mask`` (t, z, y, x, ΔHU) in place without mixing tissue classes.

    1. The curves are projected on the slow cosines of :func:`temporal_basis` (bolus curves
       are smooth in time at any arrival delay; the faster components hold noise only and are
       dropped), rotated to their principal axes so the first ``DISTANCE_COMPONENTS`` carry
       the dominant shapes (arrival, width, amplitude).
    2. Those dominant components are filtered by :func:`bilateral_within_mask` (TIPS filter,
       Mendrik et al., IEEE TMI 2011): in-plane Gaussian of ``spatial_fwhm_mm``, range weights
       from the distance between the voxels' profiles in those components, pre-smoothed by
       ``DISTANCE_FWHM_MM`` so they are not dominated by noise. The noise part of the distance
       is measured on the data (:func:`_typical_distance`), not assumed: distances up to it
       count as 0, beyond it weights fall as ``exp(-excess / (RANGE_FACTOR · noise part))``.
       Tissue with another arrival time or flow is thus hardly averaged in, so Tmax keeps
       its edges. With ``baseline`` (the pre-contrast image, HU, z, y, x), its difference
       between the voxels joins the distance, lightly smoothed (``BASELINE_FWHM_MM``) and
       scaled so that its noise weighs ``BASELINE_NOISE_WEIGHT`` times the profiles' noise: grey and white matter
       (about 10 HU apart before contrast) are then kept apart even where the cortex is
       thinner than the pre-smoothing of the profiles, whose GM/WM contrast drowns in noise
       there (without it the cortex took in white matter's lower CBV: GM CBF −25 % at 7 HU).
    3. The weaker components (shapes of small regions, e.g. the core, below the noise of
       single voxels) are smoothed within the mask at ``coarse_fwhm_mm``: such regions are
       large compared with the kernel, their shape survives in their interior while the
       noise falls by the kernel's area.

    Returns
    -------
    ndarray, float32, (t, voxels of ``mask`` in ``np.flatnonzero`` order)
        A low-noise guide for the parameters that vary slowly in space (the MTT of
        ``models.ParametricResidueModel.fit``). Where the curves enhance well it is the
        denoised curve with its weak components filtered, instead, by the bilateral filter at
        ``coarse_fwhm_mm``: Gaussian smoothing of the penumbra mixes in the long MTT of the
        core and the early timing of the rim, which lengthens its MTT and so advances its
        fitted Tmax. Where the curves are weak (little enhancement: the core, whose shape is
        below the noise at any edge-preserving scale) it is the Gaussian smoothing of the
        denoised curves within the mask at ``coarse_fwhm_mm``. The two are blended by curve
        strength (:func:`_weak_curve_weight`).
    """
    n_frames = enhancement.shape[0]
    if not mask.any():
        return np.zeros((n_frames, 0), np.float32)
    box = _bounding_box(mask)
    enhancement, mask = enhancement[(slice(None), *box)], mask[box]  # views: writes go through
    curves = enhancement[:, mask]  # (t, voxels) copy
    basis = temporal_basis(times)
    scores = basis.T @ curves
    _, rotation = np.linalg.eigh((scores @ scores.T).astype(np.float64))
    rotation = rotation[:, ::-1].astype(np.float32)  # principal axes, strongest first
    basis, scores = basis @ rotation, rotation.T @ scores
    score_maps = np.zeros((basis.shape[1], *mask.shape), np.float32)
    score_maps[:, mask] = scores
    del scores, curves
    dominant = slice(0, DISTANCE_COMPONENTS)
    guide = score_maps[dominant].copy()
    smooth_within_mask(guide, mask, geometry, DISTANCE_FWHM_MM)
    if baseline is not None:
        guide = _with_baseline(guide, baseline[box], mask, geometry)
    noise_distance = _typical_distance(guide, mask, NOISE_PAIR_OFFSET_PX)
    range_var = max(RANGE_FACTOR * noise_distance, 1e-12)
    weak = slice(DISTANCE_COMPONENTS, None)
    score_maps[dominant], weak_kept_apart = bilateral_within_mask(
        [(score_maps[dominant], _sigma_px(geometry, spatial_fwhm_mm)),
         (score_maps[weak], _sigma_px(geometry, coarse_fwhm_mm))], guide, mask, range_var, noise_distance)
    weak_kept_apart = weak_kept_apart[:, mask]
    smooth_within_mask(score_maps[weak], mask, geometry, coarse_fwhm_mm, truncate=COARSE_TRUNCATE)
    for frame, weights in zip(enhancement, basis):  # faster than one boolean-index write
        np.copyto(frame, np.tensordot(weights, score_maps, axes=1), where=mask)
    kept_apart = basis[:, dominant] @ score_maps[dominant][:, mask] + basis[:, weak] @ weak_kept_apart
    smooth_within_mask(score_maps, mask, geometry, coarse_fwhm_mm, truncate=COARSE_TRUNCATE)
    coefficients = score_maps[:, mask]
    coarse = basis @ coefficients
    weight = _weak_curve_weight(coefficients, basis)
    coarse -= kept_apart
    coarse *= weight
    coarse += kept_apart
    return coarse


def _with_baseline(guide: np.ndarray, baseline: np.ndarray, mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """``guide`` (k, z, y, x) with the pre-contrast ``baseline`` (z, y, x, HU) as one more
    component: smoothed within ``mask`` at ``BASELINE_FWHM_MM`` and scaled so that its noise
    distance (:func:`_typical_distance`) equals that of the other components together."""
    channel = baseline.astype(np.float32)[None].copy()
    smooth_within_mask(channel, mask, geometry, BASELINE_FWHM_MM)
    channel[:, ~mask] = 0
    own = _typical_distance(channel, mask, NOISE_PAIR_OFFSET_PX)
    if own <= 0:
        return guide
    channel *= np.float32(np.sqrt(BASELINE_NOISE_WEIGHT * _typical_distance(guide, mask, NOISE_PAIR_OFFSET_PX) / own))
    return np.concatenate([guide, channel])


def _sigma_px(geometry: Geometry, fwhm_mm: float) -> tuple[float, float]:
    """In-plane (y, x) Gaussian SD in pixels of a kernel of ``fwhm_mm``."""
    sx, sy, _ = geometry.spacing
    return fwhm_mm / FWHM_PER_SIGMA / sy, fwhm_mm / FWHM_PER_SIGMA / sx


def _weak_curve_weight(coefficients: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Per curve ``basis @ coefficients`` (t, voxels), 1 where it is weak, 0 where strong,
    linear between.

    Strength is the length of the mean-removed curve relative to the median length over all
    curves (most of the parenchyma is normal): below ``WEAK_CURVE_STRENGTH[0]`` a curve is
    weak, above ``WEAK_CURVE_STRENGTH[1]`` strong. The core (CBV well below normal) is
    weak; penumbra and oligaemia (CBV normal or raised) are strong. ``basis`` has orthonormal
    columns, so the length comes from the coefficients: |c|² − t · mean², the mean being
    (column means of ``basis``) · c.
    """
    means = basis.mean(axis=0) @ coefficients
    strength = np.sqrt(np.maximum(np.einsum("kv,kv->v", coefficients, coefficients)
                                  - basis.shape[0] * means * means, 0.0))
    low, high = WEAK_CURVE_STRENGTH
    median = float(np.median(strength)) if strength.size else 0.0
    if median <= 0:
        return np.zeros(strength.shape, np.float32)
    return np.clip((high * median - strength) / ((high - low) * median), 0.0, 1.0).astype(np.float32)


def _typical_distance(guide: np.ndarray, mask: np.ndarray, offset: int) -> float:
    """Median ‖g_p − g_q‖² over the masked voxel pairs ``offset`` px apart along x.

    Nearly all such pairs lie in the same tissue, so this is the distance that noise alone
    produces (measured, since noise varies between components and with its spatial
    correlation: the pre-contrast baseline subtracted from every frame puts extra noise in
    the slow components).
    """
    pairs = mask[..., offset:] & mask[..., :-offset]
    distance = sum((component[..., offset:][pairs] - component[..., :-offset][pairs]) ** 2 for component in guide)
    return float(np.median(distance)) if distance.size else 0.0


def temporal_basis(times: np.ndarray) -> np.ndarray:
    """Orthonormal (frames, n) basis of the cosines cos(π k (t − t₀) / T), k < n, at ``times`` (s).

    T is the acquisition duration and k·``TEMPORAL_RESOLUTION_S`` ≤ T: half-periods down to
    that resolution, enough for bolus curves at any arrival delay, also when the sampling is
    uneven. At most half the frames are used, so some remain to hold the noise.
    """
    times = np.asarray(times, np.float64)
    duration = max(float(times[-1] - times[0]), 1e-9)
    n = min(int(duration / TEMPORAL_RESOLUTION_S) + 1, max(times.size // 2, 1))
    phase = np.pi * (times - times[0])[:, None] / duration
    return np.linalg.qr(np.cos(phase * np.arange(n)[None, :]))[0].astype(np.float32)


def bilateral_within_mask(groups: list[tuple[np.ndarray, tuple[float, float]]], guide: np.ndarray,
                          mask: np.ndarray, range_var: float, noise_distance: float) -> list[np.ndarray]:
    """Separable in-plane bilateral filter within ``mask`` of each group of maps in ``groups``.

    ``groups`` holds ``(values, sigma_px)`` pairs: maps (n, z, y, x) and their spatial SD in
    pixels (y, x). Along x, then along y, neighbour q of voxel p weighs
    ``exp(-d² / 2σ²) · exp(-max(‖g_p − g_q‖² − noise_distance, 0) / range_var)``, with d the
    offset in pixels (up to 2σ) and g the ``guide`` maps (k, z, y, x), the same in both passes
    and for every group (so the range weights are computed once for all groups). Voxels
    outside ``mask`` get no weight. This is the separable form of a joint bilateral filter: 4σ
    offsets instead of ~4πσ². Wide kernels sample their offsets every
    ``⌊σ / OFFSETS_PER_SIGMA⌋`` px (each sample weighted by that step): the Gaussian is smooth
    at that scale. Returns one float32 array per group, 0 outside ``mask``.
    """
    n_slices = mask.shape[0]
    if n_slices < 2 * BILATERAL_MIN_SLAB:
        return _bilateral_slab(groups, guide, mask, range_var, noise_distance)
    # In-plane: slabs of slices are independent, and the array work releases the GIL.
    slabs = [slice(0, n_slices // 2), slice(n_slices // 2, n_slices)]
    with ThreadPoolExecutor(len(slabs)) as pool:
        parts = list(pool.map(lambda z: _bilateral_slab([(values[:, z], sigma) for values, sigma in groups],
                                                        guide[:, z], mask[z], range_var, noise_distance), slabs))
    return [np.concatenate([part[g] for part in parts], axis=1) for g in range(len(groups))]


def _bilateral_slab(groups, guide, mask, range_var, noise_distance) -> list[np.ndarray]:
    """:func:`bilateral_within_mask` of one slab of slices."""
    weight_mask = mask.astype(np.float32)
    filtered = [values * weight_mask for values, _ in groups]
    for axis, which in ((3, 1), (2, 0)):
        sigmas = [sigma_px[which] for _, sigma_px in groups]
        filtered = _bilateral_pass(filtered, sigmas, guide, weight_mask, axis, range_var, noise_distance)
    return filtered


def _bilateral_pass(groups, sigmas, guide, weight_mask, axis, range_var, noise_distance):
    """One 1-D pass of :func:`bilateral_within_mask` along ``axis`` (2 = y, 3 = x) of the maps
    (n, z, y, x) of each group, with that group's SD ``sigmas`` (px)."""
    totals = [values.copy() for values in groups]  # the centre voxel, weight 1
    norms = [weight_mask.copy() for _ in groups]
    length = weight_mask.shape[axis - 1]
    scale = np.float32(-1.0 / range_var)
    steps = [max(1, int(sigma / OFFSETS_PER_SIGMA)) for sigma in sigmas]
    reach = [min(int(np.ceil(2 * sigma)), length - 1) for sigma in sigmas]
    for offset in range(1, max(reach, default=0) + 1):
        users = [g for g in range(len(groups)) if offset <= reach[g] and offset % steps[g] == 0]
        if not users:
            continue
        p, q = [slice(None)] * 3, [slice(None)] * 3
        p[axis - 1], q[axis - 1] = slice(0, length - offset), slice(offset, length)
        p, q = tuple(p), tuple(q)
        distance = np.zeros(weight_mask[p].shape, np.float32)
        for component in guide:
            difference = component[p] - component[q]
            difference *= difference
            distance += difference
        distance -= np.float32(noise_distance)
        np.maximum(distance, 0, out=distance)
        distance *= scale
        range_weight = np.exp(distance, out=distance)
        range_weight *= weight_mask[p]
        range_weight *= weight_mask[q]
        term = np.empty_like(range_weight)
        for g in users:
            weight = range_weight * np.float32(steps[g] * np.exp(-offset * offset / (2 * sigmas[g] ** 2)))
            norms[g][p] += weight
            norms[g][q] += weight
            for value, out in zip(groups[g], totals[g]):
                out[p] += np.multiply(value[q], weight, out=term)
                out[q] += np.multiply(value[p], weight, out=term)
    for total, norm in zip(totals, norms):
        total /= np.maximum(norm, np.float32(1e-12))
    return totals


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices of the smallest box holding every True voxel of ``mask`` (z, y, x)."""
    return tuple(slice(ix[0], ix[-1] + 1) for ix in
                 (np.flatnonzero(mask.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))))


def geometric_smooth_within_mask(volume: np.ndarray, mask: np.ndarray, geometry: Geometry,
                                 fwhm_mm: tuple[float, float, float], *, truncate: float = 2.0) -> np.ndarray:
    """Gaussian smoothing of ``log(volume)`` (z, y, x; positive in ``mask``) within ``mask``.

    ``fwhm_mm`` is the kernel's (x, y, z) full width at half maximum in mm; voxels outside the
    mask get no weight (normalised convolution), so the result in the mask is a weighted
    geometric mean of masked voxels only. For ratio-scale maps such as MTT, whose noise is
    multiplicative. Returns float32, 0 outside ``mask``.
    """
    out = np.zeros(volume.shape, np.float32)
    if not mask.any():
        return out
    box = _bounding_box(mask)
    inside = mask[box]
    sigma = tuple(f / FWHM_PER_SIGMA / s for f, s in zip(fwhm_mm[::-1], geometry.spacing[::-1]))
    weights = inside.astype(np.float32)
    logs = np.where(inside, np.log(np.where(inside, volume[box], 1.0)), 0.0).astype(np.float32)
    total = ndimage.gaussian_filter(logs, sigma, truncate=truncate)
    norm = ndimage.gaussian_filter(weights, sigma, truncate=truncate)
    out[box] = np.where(inside, np.exp(total / np.maximum(norm, 1e-6)), 0.0)
    return out


def median_within_mask(volume: np.ndarray, mask: np.ndarray, size: int, slices: int = 1) -> np.ndarray:
    """``slices`` × ``size`` × ``size`` median of ``volume`` (z, y, x) over the voxels of ``mask``.

    Returns a new float32 array equal to ``volume`` outside ``mask``. Voxels outside the mask
    enter the window as +∞ and −∞ in a checkerboard, so near the mask border they cancel out
    in pairs and the median is (to within one sample) that of the masked voxels only; the
    volume's edges are extended (nearest). Only the masked voxels' windows are sorted (partial
    sort, in ``MEDIAN_THREADS`` threads: a fraction of the time of a median filter of the
    whole bounding box).
    """
    if size * slices <= 1 or not mask.any():
        return volume.astype(np.float32, copy=True)
    box = _bounding_box(mask)
    inside = mask[box]
    zs, ys, xs = np.indices(inside.shape, sparse=True)
    fill = np.where((zs + ys + xs) % 2 == 0, np.float32(np.inf), np.float32(-np.inf))
    padded = np.pad(np.where(inside, volume[box], fill).astype(np.float32),
                    [(n // 2, n - 1 - n // 2) for n in (slices, size, size)], mode="edge")
    windows = sliding_window_view(padded, (slices, size, size))
    where = np.nonzero(inside)
    middle = slices * size * size // 2
    medians = np.empty(where[0].size, np.float32)

    def fill_part(part: slice) -> None:
        window = windows[where[0][part], where[1][part], where[2][part]].reshape(-1, slices * size * size)
        medians[part] = np.partition(window, middle, axis=1)[:, middle]

    parts = [slice(start, start + MEDIAN_CHUNK) for start in range(0, medians.size, MEDIAN_CHUNK)]
    with ThreadPoolExecutor(MEDIAN_THREADS) as pool:  # np.partition releases the GIL
        list(pool.map(fill_part, parts))
    out = volume.astype(np.float32, copy=True)
    out[box][inside] = medians
    return out
