"""Spatial denoising of tissue enhancement curves that keeps tissue classes apart.

Clinical CTP has 7–12 HU noise per voxel and frame against 10–30 HU of tissue enhancement, so
curves are smoothed in-plane before deconvolution. Smoothing is a normalised convolution inside
the parenchyma mask: CSF, vessels and bone outside the mask never leak into tissue curves.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from triage.series import Geometry

FWHM_PER_SIGMA = 2.3548
NOISE_MARGIN = 1.5  # eigenvalue / noise floor above which a temporal component is signal
MIN_VOXELS_PER_FRAME = 50  # fewer masked voxels leave the noise floor poorly defined
COARSE_TRUNCATE = 2.0  # the coarse kernel is cut at 2 SD: its tails barely matter, its cost does
EIGEN_TOLERANCE = 1e-7  # relative to the largest eigenvalue: numerical zero (noise-free data)


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
    for frame in enhancement:
        region = frame[box]
        smoothed = ndimage.gaussian_filter(region * weights, (0, *sigma), truncate=truncate)
        smoothed *= norm
        np.copyto(region, smoothed, where=inside)


def split_scales(enhancement: np.ndarray, mask: np.ndarray, geometry: Geometry, fine_fwhm_mm: float,
                 coarse_fwhm_mm: float, *, noise_margin: float = NOISE_MARGIN) -> np.ndarray:
    """Denoise the curves of ``mask`` in place, keeping the dominant temporal shapes at fine scale.

    1. Every frame is smoothed within the mask with ``fine_fwhm_mm`` (:func:`smooth_within_mask`).
    2. Tissue curves are smooth mixtures of a few shapes (arrival, width), so across all masked
       voxels most of their energy lies in a few temporal dimensions, while noise spreads
       evenly over all of them. One eigen-decomposition of the t × t second-moment matrix of
       the masked curves (uncentred: enhancement starts at 0) finds them: noise eigenvalues
       cluster at the noise variance (Marchenko–Pastur, with far more voxels than frames),
       estimated by the median eigenvalue; components above ``noise_margin`` × that floor are
       dominant and keep the fine scale.
    3. Shapes found only in a small region (e.g. the ischaemic core) carry too little energy to
       stand out from the noise, so the residual is not discarded but smoothed within the mask
       with ``coarse_fwhm_mm``: such regions are large compared with the kernel, their shape
       survives in their interior while the residual noise falls by the kernel's area.

    Returns
    -------
    ndarray, float32, (t, voxels of ``mask`` in ``np.flatnonzero`` order)
        The curves with every component at the coarse scale: a low-noise guide for the
        parameters that vary slowly in space (see ``models.ExponentialResidueModel.fit``).
    """
    smooth_within_mask(enhancement, mask, geometry, fine_fwhm_mm)
    n_frames = enhancement.shape[0]
    if not mask.any():
        return np.zeros((n_frames, 0), np.float32)
    box = _bounding_box(mask)
    enhancement, mask = enhancement[(slice(None), *box)], mask[box]  # views: writes go through
    curves = enhancement[:, mask]  # (t, voxels) copy
    if curves.shape[1] < MIN_VOXELS_PER_FRAME * n_frames:
        return curves
    moments = (curves @ curves.T).astype(np.float64) / curves.shape[1]
    eigenvalues, eigenvectors = np.linalg.eigh(moments)  # ascending
    floor = float(np.median(eigenvalues))
    kept = eigenvalues > max(noise_margin * floor, EIGEN_TOLERANCE * eigenvalues[-1])
    basis = eigenvectors[:, kept].astype(np.float32)  # (t, k)
    scores = basis.T @ curves  # (k, voxels)
    curves -= basis @ scores  # residual
    enhancement[:, mask] = curves
    del curves
    smooth_within_mask(enhancement, mask, geometry, coarse_fwhm_mm, truncate=COARSE_TRUNCATE)
    coarse_residual = enhancement[:, mask]
    enhancement[:, mask] = coarse_residual + basis @ scores
    score_maps = np.zeros((scores.shape[0], *mask.shape), np.float32)
    score_maps[:, mask] = scores
    smooth_within_mask(score_maps, mask, geometry, coarse_fwhm_mm, truncate=COARSE_TRUNCATE)
    coarse_residual += basis @ score_maps[:, mask]
    return coarse_residual


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices of the smallest box holding every True voxel of ``mask`` (z, y, x)."""
    return tuple(slice(ix[0], ix[-1] + 1) for ix in
                 (np.flatnonzero(mask.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))))


def median_within_mask(volume: np.ndarray, mask: np.ndarray, size: int, slices: int = 1) -> np.ndarray:
    """``slices`` × ``size`` × ``size`` median of ``volume`` (z, y, x) over the voxels of ``mask``.

    Returns a new float32 array equal to ``volume`` outside ``mask``. Voxels outside the mask
    enter the window as +∞ and −∞ in a checkerboard, so near the mask border they cancel out
    in pairs and the median is (to within one sample) that of the masked voxels only.
    """
    if size * slices <= 1 or not mask.any():
        return volume.astype(np.float32, copy=True)
    box = _bounding_box(mask)
    zs, ys, xs = np.indices(mask[box].shape, sparse=True)
    fill = np.where((zs + ys + xs) % 2 == 0, np.float32(np.inf), np.float32(-np.inf))
    padded = np.where(mask[box], volume[box], fill).astype(np.float32)
    filtered = ndimage.median_filter(padded, size=(slices, size, size), mode="nearest")
    out = volume.astype(np.float32, copy=True)
    out[box] = np.where(mask[box], filtered, volume[box])
    return out
