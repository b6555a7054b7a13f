"""Denoising: masked smoothing, the two-scale temporal split, the masked median."""

import numpy as np
from scipy import ndimage

from triage.denoise import median_within_mask, smooth_within_mask, split_scales
from triage.series import Geometry


def test_noise_reduced_and_outside_untouched():
    rng = np.random.default_rng(0)
    geometry = Geometry(spacing=(1.0, 1.0, 5.0), origin=(0, 0, 0))
    mask = np.zeros((2, 80, 80), bool)
    mask[:, 10:70, 10:40] = True
    data = np.full((5, 2, 80, 80), 20.0, np.float32)
    data[:, :, :, 40:] = 300.0  # a bright structure next to the mask: must not leak in
    data += rng.normal(0, 8, data.shape).astype(np.float32)
    before = data.copy()
    smooth_within_mask(data, mask, geometry, fwhm_mm=5.0)
    tissue = data[:, mask]
    assert abs(tissue.mean() - 20.0) < 0.5
    assert tissue.std() < 8.0 / 3
    assert np.array_equal(data[:, ~mask], before[:, ~mask])


def test_zero_fwhm_is_identity():
    data = np.random.default_rng(1).normal(size=(3, 2, 16, 16)).astype(np.float32)
    copy = data.copy()
    smooth_within_mask(data, np.ones((2, 16, 16), bool), Geometry((1, 1, 1), (0, 0, 0)), 0.0)
    assert np.array_equal(data, copy)


def _delayed_curves(times, delays):
    """Gamma-variate-like bolus curves (t, n) arriving at ``delays`` s, peak ~10 HU."""
    x = np.clip((times[:, None] - 8.0 - delays[None, :]) / 4.0, 0, None)
    return (10.0 * x**2 * np.exp(2.0 - 2.0 * x)).astype(np.float32)


def test_split_scales_keeps_rare_shapes_and_lowers_noise():
    """A small late-arriving region (3 % of the voxels) keeps its shape; noise drops well below
    what the fine smoothing alone gives."""
    rng = np.random.default_rng(2)
    geometry = Geometry(spacing=(1.0, 1.0, 5.0), origin=(0, 0, 0))
    times = np.arange(40) * 1.5
    mask = np.zeros((2, 128, 128), bool)
    mask[:, 8:120, 8:120] = True
    delay = np.zeros(mask.shape)
    yy, xx = np.mgrid[:128, :128]
    late = (yy - 64) ** 2 + (xx - 64) ** 2 < 12**2
    delay[:, late] = 8.0
    delay[:, :, :64] += 1.0  # a second, common arrival time
    clean = _delayed_curves(times, delay.ravel()).reshape(40, *mask.shape)
    noisy = clean + rng.normal(0, 4.0, clean.shape).astype(np.float32)
    fine_only = noisy.copy()
    smooth_within_mask(fine_only, mask, geometry, 3.0)
    before = noisy.copy()
    coarse = split_scales(noisy, mask, geometry, 3.0, 14.0)
    interior = ndimage.binary_erosion(late, iterations=8)[None] & mask
    error = noisy - clean
    assert np.sqrt(np.mean(error[:, mask] ** 2)) < 0.6 * np.sqrt(np.mean((fine_only - clean)[:, mask] ** 2))
    # The late region's mean curve still peaks 8 s after the rest: its shape survived.
    late_mean = noisy[:, interior].mean(axis=1)
    assert abs(times[late_mean.argmax()] - times[clean[:, interior].mean(axis=1).argmax()]) <= 1.5
    assert np.abs(late_mean - clean[:, interior].mean(axis=1)).max() < 1.0
    assert coarse.shape == (40, int(mask.sum())) and coarse.dtype == np.float32
    assert np.array_equal(noisy[:, ~mask], before[:, ~mask])


def test_split_scales_leaves_noise_free_curves_unchanged_without_smoothing():
    geometry = Geometry(spacing=(1.0, 1.0, 5.0), origin=(0, 0, 0))
    times = np.arange(30) * 2.0
    mask = np.ones((1, 40, 40), bool)
    delays = np.linspace(0, 10, mask.size)
    clean = _delayed_curves(times, delays).reshape(30, *mask.shape)
    data = clean.copy()
    split_scales(data, mask, geometry, 0.0, 14.0)
    np.testing.assert_allclose(data, clean, atol=1e-3)


def test_median_within_mask_ignores_outside_and_removes_outliers():
    volume = np.full((3, 30, 30), 2.0, np.float32)
    mask = np.zeros(volume.shape, bool)
    mask[:, 5:25, 5:15] = True
    volume[:, :, 15:] = 50.0  # outside the mask: must not pull the median
    volume[1, 10, 10] = 40.0  # isolated outlier inside
    filtered = median_within_mask(volume, mask, 5, 3)
    assert np.all(filtered[mask] == 2.0)
    assert np.array_equal(filtered[~mask], volume[~mask])
