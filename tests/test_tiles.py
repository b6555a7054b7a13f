"""Tests of the Kudo-style tile phantom (sample_data.tiles) against what it must be."""

from __future__ import annotations

import numpy as np
import pytest

from sample_data import curves
from sample_data.tiles import TILE_CBV, TILE_MTT_S, TileConfig, make_tiles, tile_medians
from triage.base.errors import InputError

# Long, fine acquisition: every tile curve returns to baseline before the last frame.
COVERING = dict(noise_hu=0.0, n_frames=401, duration_s=200.0, n_slices=1)


def test_truth_cbf_is_60_cbv_over_mtt_over_the_kudo_range():
    tiles = make_tiles(TileConfig(noise_hu=0.0, n_slices=1))
    assert tiles.n_tiles == len(TILE_CBV) * len(TILE_MTT_S)
    np.testing.assert_allclose(tiles.cbf, 60.0 * tiles.cbv / tiles.mtt)
    assert tiles.cbf.min() == pytest.approx(2.5, abs=0.01)
    assert tiles.cbf.max() == pytest.approx(87.5, abs=0.1)
    assert sorted(set(tiles.cbv)) == list(TILE_CBV) and sorted(set(tiles.mtt)) == list(TILE_MTT_S)


def test_layout_tiles_interiors_and_broadcast_curves():
    config = TileConfig(noise_hu=0.0)
    tiles = make_tiles(config)
    tile_px = round(config.tile_mm / config.pixel_mm)
    inner_px = tile_px - 2 * round(config.interior_margin_mm / config.pixel_mm)
    for k in range(tiles.n_tiles):
        assert (tiles.labels == k).sum() == tile_px**2 * config.n_slices
        assert (tiles.interior == k).sum() == inner_px**2 * config.n_slices
        assert np.all(tiles.labels[tiles.interior == k] == k)
        np.testing.assert_allclose(tiles.enhancement[:, tiles.labels == k],
                                   np.repeat(tiles.curves[:, [k]], tile_px**2 * config.n_slices, 1),
                                   rtol=1e-6, atol=1e-4)
    assert np.array_equal(tiles.mask, tiles.labels >= 0)
    assert np.all(tiles.enhancement[:, ~tiles.mask] == 0)
    assert inner_px * config.pixel_mm >= 15.0  # the interior is >= 15 mm wide
    np.testing.assert_allclose(tile_medians(tiles, tiles.enhancement.max(axis=0)),
                               tiles.curves.max(axis=0), rtol=1e-5)


@pytest.mark.parametrize("shape, delay, dispersion", [
    ("exponential", 0.0, 0.0), ("box", 12.0, 3.0), ("linear", 6.0, 1.5), ("lognormal", 3.0, 0.0),
    ("gamma3", 12.0, 1.5),
])
def test_area_ratio_gives_cbv_within_2_percent(shape, delay, dispersion):
    tiles = make_tiles(TileConfig(residue=shape, delay_s=delay, dispersion_s=dispersion, **COVERING))
    area_aif = np.trapezoid(tiles.aif_true, tiles.times)
    area = np.trapezoid(tiles.curves, tiles.times, axis=0)
    cbv = (curves.K_H / curves.RHO) * 100.0 * area / area_aif
    np.testing.assert_allclose(cbv, tiles.cbv, rtol=0.02)


def test_delay_shifts_every_tile_curve():
    early = make_tiles(TileConfig(delay_s=0.0, **COVERING))
    late = make_tiles(TileConfig(delay_s=3.0, **COVERING))
    t = early.times
    for k in range(early.n_tiles):
        shifted = np.interp(t - 3.0, t, early.curves[:, k], left=0.0)
        peak = early.curves[:, k].max()
        assert np.abs(late.curves[:, k] - shifted).max() < 0.01 * peak
        assert np.abs(late.curves[:, k] - early.curves[:, k]).max() > 0.1 * peak
    np.testing.assert_allclose(late.tmax, 3.0)
    np.testing.assert_allclose(late.aif_true, early.aif_true)


def _argmax_offset(shape, mtt, tau):
    """Analytic argmax of R conv exp(-t/tau)/tau for three residues."""
    if shape == "exponential":
        return np.log(mtt / tau) * mtt * tau / (mtt - tau)
    if shape == "linear":
        return tau * np.log(1.0 + 2.0 * mtt / tau)
    return mtt  # box: rises until the plug leaves, then falls


@pytest.mark.parametrize("shape", ["exponential", "linear", "box"])
def test_dispersion_moves_truth_tmax_by_the_argmax_offset(shape):
    delay, tau = 6.0, 1.5
    plain = make_tiles(TileConfig(residue=shape, delay_s=delay, noise_hu=0.0, n_slices=1))
    dispersed = make_tiles(TileConfig(residue=shape, delay_s=delay, dispersion_s=tau, noise_hu=0.0,
                                      n_slices=1))
    np.testing.assert_allclose(plain.tmax, delay)
    expected = delay + _argmax_offset(shape, dispersed.mtt, tau)
    np.testing.assert_allclose(dispersed.tmax, expected, atol=0.05)
    assert np.all(dispersed.tmax > delay + 1.0)


def test_noise_sd_and_correlation_are_as_configured():
    config = TileConfig(noise_hu=7.0, n_frames=60, seed=3)
    noisy = make_tiles(config)
    clean = make_tiles(TileConfig(noise_hu=0.0, n_frames=60))
    noise = noisy.enhancement - clean.enhancement
    assert noise.std() == pytest.approx(7.0, rel=0.03)
    assert noise[:, noisy.mask].std() == pytest.approx(7.0, rel=0.03)
    neighbour = np.corrcoef(noise[..., :-1].ravel(), noise[..., 1:].ravel())[0, 1]
    assert 0.3 < neighbour < 0.9  # spatially correlated, FWHM 1.5 px
    aif_noise = noisy.aif - noisy.aif_true
    assert 0.5 < aif_noise.std() < 4.0  # the mean of a few arterial voxels
    again = make_tiles(config)
    assert np.array_equal(again.enhancement, noisy.enhancement)


def test_variable_sampling_and_aif_options():
    tiles = make_tiles(TileConfig(noise_hu=0.0, variable_sampling=True, aif_peak_hu=400.0,
                                  aif_width_scale=1.5, n_slices=1))
    assert np.diff(tiles.times).min() < np.diff(tiles.times).max() / 2
    fine = curves.fine_times()
    base = curves.arterial_curve(fine)
    assert tiles.aif_true.max() <= 400.0 + 1e-6
    assert tiles.aif_true.max() > 0.95 * 400.0
    peak_time = tiles.times[np.argmax(tiles.aif_true)]
    base_peak = fine[np.argmax(base)]
    stretched = curves.AIF_ARRIVAL_S + 1.5 * (base_peak - curves.AIF_ARRIVAL_S)
    assert abs(peak_time - stretched) < 1.5


@pytest.mark.parametrize("change", [dict(delay_s=13.0), dict(dispersion_s=-1.0), dict(residue="cubic"),
                                    dict(tile_mm=10.0)])
def test_out_of_range_configurations_are_refused(change):
    with pytest.raises(InputError):
        make_tiles(TileConfig(**change))
