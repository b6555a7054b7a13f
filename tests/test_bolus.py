"""Bolus timing on synthetic series with known arrival (7 s) and known truncation."""

import numpy as np
import pytest

from tests.support.perfusion_curves import make_series, truncated_times, uniform_times, variable_times
from triage.base.errors import InputError
from triage.imaging.bolus import GammaVariate, analyse_bolus, baseline_image, fit_first_pass


@pytest.fixture(scope="module")
def normal():
    return make_series(uniform_times())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_uniform_sampling_baseline_and_arrival(seed):
    normal = make_series(uniform_times(), seed=seed)
    timing = analyse_bolus(normal.hu, normal.times, normal.brain)
    # arrival 7 s, frames every 1.5 s: 0, 1.5, 3, 4.5, 6 precede it; one frame of margin
    assert timing.n_baseline == 4
    assert normal.times[timing.n_baseline - 1] < normal.arrival_s
    assert 6.0 <= timing.arrival_s <= 8.5
    true_peak = normal.times[np.argmax(normal.tissue_gm)]
    assert abs(timing.peak_s - true_peak) <= 1.5
    assert not timing.truncated
    assert timing.tail_fraction < 0.1
    assert timing.warnings == []


def test_variable_sampling_baseline_and_arrival():
    series = make_series(variable_times())
    timing = analyse_bolus(series.hu, series.times, series.brain)
    assert timing.n_baseline >= 3
    assert series.times[timing.n_baseline - 1] < series.arrival_s   # no contrast in the baseline
    assert abs(timing.arrival_s - series.arrival_s) <= 1.5
    assert not timing.truncated


def test_late_arrival_gives_longer_baseline():
    series = make_series(uniform_times(), arrival_s=13.0)
    timing = analyse_bolus(series.hu, series.times, series.brain)
    assert timing.n_baseline in (7, 8)          # 9 frames before 13 s, less the margin
    assert series.times[timing.n_baseline - 1] < 13.0


def test_early_arrival_warns_short_baseline():
    series = make_series(uniform_times(), arrival_s=2.5)
    timing = analyse_bolus(series.hu, series.times, series.brain)
    assert timing.n_baseline == 1
    assert any(w.startswith("short baseline: 1 frame") for w in timing.warnings)


def test_truncated_acquisition_is_flagged():
    series = make_series(truncated_times())
    timing = analyse_bolus(series.hu, series.times, series.brain)
    assert timing.truncated
    assert timing.tail_fraction > 0.5
    assert any(w.startswith("bolus truncated") and "24 s" in w for w in timing.warnings)
    assert timing.n_baseline == 4


def test_fitted_first_pass_catches_truncation_below_half_peak():
    """A skewed tissue curve cut at 42 % of its peak, with 27 % of its area still to come."""
    series = make_series(truncated_times())
    tissue = GammaVariate(7.0, 10.0, 15.0, 0.3)(series.times)
    assert 0.4 < tissue[-1] / tissue.max() < 0.5
    hu = series.hu.copy()
    tissue_mask = series.brain & ~series.artery & ~series.sinus
    noise = np.random.default_rng(1).normal(0.0, 8.0, (tissue.size, int(tissue_mask.sum())))
    hu[:, tissue_mask] = 35.0 + tissue[:, None] + noise
    timing = analyse_bolus(hu, series.times, series.brain)
    assert timing.truncated and timing.tail_fraction < 0.5
    assert any("gamma-variate fit" in w for w in timing.warnings)


def test_baseline_image_is_mean_of_first_frames(normal):
    image = baseline_image(normal.hu, 4)
    assert image.dtype == np.float32 and image.shape == normal.hu.shape[1:]
    np.testing.assert_allclose(image, normal.hu[:4].astype(np.float64).mean(axis=0), atol=1e-4)
    # baseline noise: 8 HU / sqrt(4) around the 35 HU grey matter
    grey = normal.brain & ~normal.white_matter & ~normal.artery & ~normal.sinus
    assert abs(np.median(image[grey]) - 35.0) < 1.0


def test_first_pass_fit_ignores_recirculation():
    times = 1.5 * np.arange(40)
    first_pass = GammaVariate(7.0, 14.0, 320.0, 3.0)
    recirculation = GammaVariate(18.0, 26.0, 40.0, 3.0)(times)
    noise = np.random.default_rng(0).normal(0.0, 3.0, times.size)
    fit = fit_first_pass(first_pass(times) + recirculation + noise, times, start=3)
    assert fit.area == pytest.approx(first_pass.area, rel=0.05)
    assert abs(fit.t_peak - 14.0) < 0.5 and abs(fit.t0 - 7.0) < 1.0


def test_gamma_variate_area_matches_numeric_integral():
    g = GammaVariate(3.0, 9.0, 100.0, 2.5)
    t = np.linspace(0, 200, 200001)
    assert g.area == pytest.approx(np.trapezoid(g(t), t), rel=1e-4)
    assert g.fraction_before(9.0) == pytest.approx(np.trapezoid(g(t[t <= 9.0]), t[t <= 9.0])
                                                   / g.area, rel=1e-3)


@pytest.mark.parametrize("change, reason", [
    (lambda s: (s.hu[0], s.times, s.brain), "4D"),
    (lambda s: (s.hu, s.times[:-1], s.brain), "frame times"),
    (lambda s: (s.hu, s.times[::-1].copy(), s.brain), "increasing"),
    (lambda s: (s.hu, s.times, s.brain[:, :-1]), "brain mask shape"),
    (lambda s: (s.hu, s.times, np.zeros_like(s.brain)), "empty"),
    (lambda s: (s.hu[:4], s.times[:4], s.brain), "at least 5"),
    (lambda s: (np.zeros_like(s.hu), s.times, s.brain), "no contrast"),
])
def test_bad_input_raises_input_error(normal, change, reason):
    with pytest.raises(InputError, match=reason):
        analyse_bolus(*change(normal))


def test_baseline_image_rejects_bad_count(normal):
    with pytest.raises(InputError):
        baseline_image(normal.hu, 0)
