"""Denoising: masked smoothing, the edge-preserving (TIPS bilateral) curve filter, the masked median."""

import numpy as np
from scipy import ndimage

from triage.base.grid import Geometry
from triage.imaging.denoise import (
    bilateral_within_mask,
    denoise_curves,
    geometric_smooth_within_mask,
    median_within_mask,
    smooth_within_mask,
    temporal_basis,
)


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
    """Tissue-like bolus curves (t, n) arriving at ``delays`` s: peak 10 HU, FWHM about 12 s."""
    x = np.clip((times[:, None] - 8.0 - delays[None, :]) / 6.0, 0, None)
    return (10.0 * x**2 * np.exp(2.0 - 2.0 * x)).astype(np.float32)


def _two_region_phantom(seed, noise_hu=4.0):
    """128² × 2 slices: a late-arriving disc (8 s later, 3 % of the voxels) inside tissue whose
    left half arrives 1 s later than its right half; curves (t, z, y, x), 40 frames over 58.5 s."""
    rng = np.random.default_rng(seed)
    times = np.arange(40) * 1.5
    mask = np.zeros((2, 128, 128), bool)
    mask[:, 8:120, 8:120] = True
    yy, xx = np.mgrid[:128, :128]
    late = (yy - 64) ** 2 + (xx - 64) ** 2 < 12**2
    delay = np.zeros(mask.shape)
    delay[:, late] = 8.0
    delay[:, :, :64] += 1.0
    clean = _delayed_curves(times, delay.ravel()).reshape(40, *mask.shape)
    noisy = clean + rng.normal(0, noise_hu, clean.shape).astype(np.float32)
    return times, mask, late, clean, noisy


def test_denoise_curves_lowers_noise_keeps_rare_shapes_and_edges():
    """Noise falls well below what a 3 mm Gaussian gives; the small late region keeps its
    shape in its interior and, unlike a Gaussian of similar width, at its edge."""
    times, mask, late, clean, noisy = _two_region_phantom(2)
    geometry = Geometry(spacing=(1.0, 1.0, 5.0), origin=(0, 0, 0))
    gaussian_3mm, gaussian_8mm = noisy.copy(), noisy.copy()
    smooth_within_mask(gaussian_3mm, mask, geometry, 3.0)
    smooth_within_mask(gaussian_8mm, mask, geometry, 8.0)
    denoised = noisy.copy()
    guide = denoise_curves(denoised, mask, geometry, times, 12.0, 14.0)

    def rms(curves, where):
        return float(np.sqrt(np.mean((curves - clean)[:, where] ** 2)))

    assert rms(denoised, mask) < 0.6 * rms(gaussian_3mm, mask)
    interior = ndimage.binary_erosion(late, iterations=8)[None] & mask
    late_mean = denoised[:, interior].mean(axis=1)
    truth_mean = clean[:, interior].mean(axis=1)
    assert abs(times[late_mean.argmax()] - times[truth_mean.argmax()]) <= 1.5
    assert np.abs(late_mean - truth_mean).max() < 1.0
    edge = (late & ~ndimage.binary_erosion(late, iterations=3))[None] & mask  # 3 px inside the border
    assert rms(denoised, edge) < min(0.7 * rms(gaussian_8mm, edge), rms(gaussian_3mm, edge))
    assert guide.shape == (40, int(mask.sum())) and guide.dtype == np.float32


def test_denoise_curves_leaves_outside_untouched_and_handles_uneven_sampling():
    times, mask, _, clean, noisy = _two_region_phantom(3)
    mask[:, :, 100:] = False
    times = np.concatenate([np.arange(10) * 2.0, 20 + np.arange(20) * 1.0, 40 + np.arange(1, 11) * 2.0])
    clean = _delayed_curves(times, np.zeros(mask.size)).reshape(40, *mask.shape)
    noisy = clean + np.random.default_rng(4).normal(0, 4, clean.shape).astype(np.float32)
    before = noisy.copy()
    denoise_curves(noisy, mask, Geometry(spacing=(1.0, 1.0, 5.0), origin=(0, 0, 0)), times, 8.0, 14.0)
    assert np.array_equal(noisy[:, ~mask], before[:, ~mask])
    assert np.sqrt(np.mean((noisy - clean)[:, mask] ** 2)) < 1.0
    # no bias beyond the temporal basis' smoothing of the curve's sharp onset (< 8 % of the peak)
    assert np.abs(noisy[:, mask].mean(axis=1) - clean[:, mask].mean(axis=1)).max() < 0.8


def test_temporal_basis_is_orthonormal_and_holds_delayed_bolus_curves():
    times = np.arange(40) * 1.5
    basis = temporal_basis(times)
    np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-5)
    curves = _delayed_curves(times, np.linspace(0, 14, 50))
    residual = curves - basis @ (basis.T @ curves)
    assert np.abs(residual).max() < 0.1 * np.abs(curves).max()
    assert np.sqrt(np.mean(residual**2)) < 0.03 * np.abs(curves).max()
    assert basis.shape[1] <= times.size // 2


def test_bilateral_keeps_a_step_that_a_gaussian_blurs():
    """Range weights from a guide that differs across a step stop the averaging at the step."""
    mask = np.ones((1, 40, 40), bool)
    values = np.zeros((1, 1, 40, 40), np.float32)
    values[..., 20:] = 10.0
    noisy = values + np.random.default_rng(5).normal(0, 1, values.shape).astype(np.float32)
    [filtered] = bilateral_within_mask([(noisy, (3.0, 3.0))], values, mask, range_var=1.0, noise_distance=0.0)
    assert np.abs(filtered[0, 0, :, 19] - 0.0).max() < 1.0 and np.abs(filtered[0, 0, :, 20] - 10.0).max() < 1.0
    assert filtered[0, 0, 5:35, 5:15].std() < 0.5  # noise still averaged away on each side


def test_bilateral_groups_filter_as_separate_calls():
    """Several groups in one call (shared range weights) give what separate calls give."""
    rng = np.random.default_rng(9)
    mask = rng.random((2, 48, 40)) > 0.1
    guide = rng.normal(size=(3, 2, 48, 40)).astype(np.float32)
    fine, wide = (rng.normal(size=(n, 2, 48, 40)).astype(np.float32) for n in (2, 3))
    both = bilateral_within_mask([(fine, (2.0, 2.5)), (wide, (7.0, 6.5))], guide, mask, 2.0, 1.0)
    alone = [bilateral_within_mask([group], guide, mask, 2.0, 1.0)[0]
             for group in ((fine, (2.0, 2.5)), (wide, (7.0, 6.5)))]
    for together, separate in zip(both, alone):
        np.testing.assert_allclose(together, separate, rtol=1e-5, atol=1e-5)
    assert not np.allclose(both[1], wide)


def test_geometric_smoothing_stays_in_the_mask_and_averages_logs():
    geometry = Geometry(spacing=(1.0, 1.0, 5.0), origin=(0, 0, 0))
    mask = np.zeros((3, 30, 30), bool)
    mask[:, 5:25, 5:15] = True
    volume = np.where((np.indices(mask.shape).sum(axis=0) % 2) == 0, 2.0, 8.0).astype(np.float32)
    volume[~mask] = 1000.0  # outside the mask: no weight
    smoothed = geometric_smooth_within_mask(volume, mask, geometry, (6.0, 6.0, 10.0))
    np.testing.assert_allclose(smoothed[:, 10:20, 8:12], 4.0, rtol=0.02)  # geometric mean of 2 and 8
    assert np.all(smoothed[~mask] == 0) and np.all((smoothed[mask] > 2.0) & (smoothed[mask] < 8.0))
    constant = geometric_smooth_within_mask(np.full(mask.shape, 7.5, np.float32), mask, geometry, (16.0,) * 3)
    np.testing.assert_allclose(constant[mask], 7.5, rtol=1e-5)


def test_median_within_mask_ignores_outside_and_removes_outliers():
    volume = np.full((3, 30, 30), 2.0, np.float32)
    mask = np.zeros(volume.shape, bool)
    mask[:, 5:25, 5:15] = True
    volume[:, :, 15:] = 50.0  # outside the mask: must not pull the median
    volume[1, 10, 10] = 40.0  # isolated outlier inside
    filtered = median_within_mask(volume, mask, 5, 3)
    assert np.all(filtered[mask] == 2.0)
    assert np.array_equal(filtered[~mask], volume[~mask])


def test_mtt_guide_keeps_strong_regions_apart_and_smooths_weak_ones():
    """The guide returned by denoise_curves: at the border of a strongly enhancing late region it
    keeps that region's mean curve (a Gaussian of the same width averages the neighbours' in:
    a bias that, unlike noise, does not average out); in a weakly enhancing region (a core) it
    is the Gaussian smoothing of the denoised curves."""
    times, mask, late, clean, _ = _two_region_phantom(6)
    yy, xx = np.mgrid[:128, :128]
    weak = (yy - 30) ** 2 + (xx - 95) ** 2 < 14**2
    clean[:, :, weak] *= 0.25
    noisy = clean + np.random.default_rng(7).normal(0, 4.0, clean.shape).astype(np.float32)
    geometry = Geometry(spacing=(1.0, 1.0, 5.0), origin=(0, 0, 0))
    denoised = noisy.copy()
    guide = np.zeros_like(clean)
    guide[:, mask] = denoise_curves(denoised, mask, geometry, times, 12.0, 14.0)
    gaussian = denoised.copy()
    smooth_within_mask(gaussian, mask, geometry, 14.0, truncate=2.0)

    def bias(curves, where):
        return float(np.abs(curves[:, where].mean(axis=1) - clean[:, where].mean(axis=1)).max())

    border = (late & ~ndimage.binary_erosion(late, iterations=3))[None] & mask
    assert bias(guide, border) < 0.2 * bias(gaussian, border)
    weak_interior = ndimage.binary_erosion(weak, iterations=6)[None] & mask
    np.testing.assert_allclose(guide[:, weak_interior], gaussian[:, weak_interior], atol=1e-3)
    assert not np.allclose(guide[:, border], gaussian[:, border], atol=0.5)


def test_pre_contrast_image_keeps_a_thin_cortex_apart():
    """A 3 px ribbon of 'grey matter' (1.5 times the enhancement of the tissue around it, 12 HU
    brighter before contrast) keeps most of its enhancement when the pre-contrast image joins
    the filter's distance; without it, the filter averages in the lower curves around it."""
    rng = np.random.default_rng(7)
    times = np.arange(40) * 1.5
    mask = np.zeros((2, 96, 96), bool)
    mask[:, 8:88, 8:88] = True
    ribbon = np.zeros(mask.shape, bool)
    ribbon[:, 8:88, 46:49] = True
    clean = _delayed_curves(times, np.zeros(mask.size)).reshape(40, *mask.shape) * np.where(ribbon, 1.5, 1.0)
    noisy = (clean + rng.normal(0, 7.0, clean.shape)).astype(np.float32)
    baseline = (28.0 + 12.0 * ribbon + rng.normal(0, 7.0 / np.sqrt(5), mask.shape)).astype(np.float32)
    geometry = Geometry(spacing=(0.94, 0.94, 5.0), origin=(0, 0, 0))
    interior = ribbon & mask
    peak = int(np.argmax(clean[:, interior].mean(axis=1)))
    kept = {}
    for name, image in (("with", baseline), ("without", None)):
        denoised = noisy.copy()
        denoise_curves(denoised, mask, geometry, times, 12.0, 14.0, baseline=image)
        kept[name] = float(denoised[peak, interior].mean() / clean[peak, interior].mean())
    assert kept["with"] > 0.85, kept
    assert kept["with"] - kept["without"] > 0.1, kept
