"""Masked smoothing: lowers noise, keeps means, never mixes in tissue from outside the mask."""

import numpy as np

from triage.denoise import smooth_within_mask
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
