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


def smooth_within_mask(enhancement: np.ndarray, mask: np.ndarray, geometry: Geometry, fwhm_mm: float) -> None:
    """Smooth every frame of ``enhancement`` (t, z, y, x) in place, in-plane, within ``mask``.

    Voxels outside ``mask`` are left untouched. ``fwhm_mm`` is the full width at half maximum of
    the Gaussian kernel in mm (0 does nothing).
    """
    if fwhm_mm <= 0 or not mask.any():
        return
    sx, sy, _ = geometry.spacing
    sigma = (fwhm_mm / FWHM_PER_SIGMA / sy, fwhm_mm / FWHM_PER_SIGMA / sx)
    zs, ys, xs = (np.flatnonzero(mask.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    pad = int(np.ceil(3 * max(sigma)))
    box = (
        slice(zs[0], zs[-1] + 1),
        slice(max(ys[0] - pad, 0), ys[-1] + pad + 1),
        slice(max(xs[0] - pad, 0), xs[-1] + pad + 1),
    )
    weights = mask[box].astype(np.float32)
    norm = ndimage.gaussian_filter(weights, (0, *sigma), truncate=3.0)
    inside = mask[box]
    np.divide(1.0, norm, out=norm, where=inside)
    for frame in enhancement:
        region = frame[box]
        smoothed = ndimage.gaussian_filter(region * weights, (0, *sigma), truncate=3.0)
        smoothed *= norm
        region[inside] = smoothed[inside]
