"""AIF / VOF selection on synthetic series with known arteries (partial volume 0.7-0.8), venous
sinus, calcification and single-frame noise spikes."""

import numpy as np
import pytest
from scipy import ndimage

from tests.support.perfusion_curves import make_series, truncated_times, uniform_times, variable_times
from triage.base.errors import InputError
from triage.imaging.aif import select_arterial_input
from triage.imaging.bolus import analyse_bolus, baseline_image


def prepare(series):
    timing = analyse_bolus(series.hu, series.times, series.brain)
    return series.hu - baseline_image(series.hu, timing.n_baseline)


def select(series, enhancement=None, **kwargs):
    enhancement = prepare(series) if enhancement is None else enhancement
    return select_arterial_input(enhancement, series.times, series.brain, series.geometry,
                                 **kwargs)


def at(mask, voxels):
    return mask[tuple(np.asarray(voxels).T)]


@pytest.fixture(scope="module")
def normal():
    series = make_series(uniform_times())
    return series, prepare(series)


@pytest.fixture(scope="module")
def normal_result(normal):
    series, enhancement = normal
    return select(series, enhancement)


def test_aif_voxels_are_arteries(normal, normal_result):
    series, _ = normal
    voxels = normal_result.aif_voxels
    assert voxels.shape == (8, 3)
    assert at(series.artery, voxels).all()          # not the sinus, spikes or calcification
    assert np.corrcoef(normal_result.aif, series.aif)[0, 1] > 0.98
    q = normal_result.quality
    assert q["warnings"] == [] and not q["truncated"] and not q["manual"]
    assert abs(q["arrival_s"] - series.arrival_s) < 1.0
    assert abs(q["ttp_s"] - 14.0) <= 1.5
    assert 8.0 < q["fwhm_s"] < 12.0


def test_vof_voxels_are_in_the_sinus(normal, normal_result):
    series, _ = normal
    assert at(series.sinus, normal_result.vof_voxels).all()
    assert np.corrcoef(normal_result.vof, series.vof)[0, 1] > 0.98
    assert normal_result.quality["vof_ttp_s"] > normal_result.quality["ttp_s"] + 2.0


def test_scale_corrects_partial_volume(normal, normal_result):
    series, _ = normal
    t = series.times
    raw_ratio = np.trapezoid(normal_result.aif_raw, t) / np.trapezoid(series.aif, t)
    assert 0.7 <= raw_ratio <= 0.9       # partial volume 0.7-0.8, plus the tissue in the voxel
    assert normal_result.aif_scale == pytest.approx(1 / raw_ratio, rel=0.05)
    assert np.trapezoid(normal_result.aif, t) == pytest.approx(np.trapezoid(series.aif, t),
                                                               rel=0.05)
    np.testing.assert_allclose(normal_result.aif,
                               normal_result.aif_raw * normal_result.aif_scale, rtol=1e-5)


def test_variable_sampling():
    series = make_series(variable_times())
    result = select(series)
    t = series.times
    assert at(series.artery, result.aif_voxels).all()
    assert at(series.sinus, result.vof_voxels).all()
    assert np.corrcoef(result.aif, series.aif)[0, 1] > 0.98
    assert np.trapezoid(result.aif, t) == pytest.approx(np.trapezoid(series.aif, t), rel=0.05)


def test_override_on_an_artery(normal):
    series, enhancement = normal
    target = tuple(np.argwhere(series.artery)[5])
    result = select(series, enhancement, override_zyx=target)
    assert result.quality["manual"]
    assert (result.aif_voxels == target).all(axis=1).any()     # the given voxel is used
    assert np.abs(result.aif_voxels - target).max() <= 2
    assert at(series.artery, result.aif_voxels).all()
    assert not any("does not enhance like an artery" in w for w in result.quality["warnings"])
    assert np.corrcoef(result.aif, series.aif)[0, 1] > 0.98


def test_override_on_white_matter_is_used_with_a_warning(normal):
    series, enhancement = normal
    target = (2, 48, 48)
    assert series.white_matter[target]
    result = select(series, enhancement, override_zyx=target)
    assert np.abs(result.aif_voxels - target).max() <= 2
    assert not at(series.artery, result.aif_voxels).any()
    assert any("does not enhance like an artery" in w for w in result.quality["warnings"])
    assert any(w.startswith("low AIF peak") for w in result.quality["warnings"])


def test_override_on_the_sinus_warns(normal):
    series, enhancement = normal
    target = tuple(np.argwhere(series.sinus)[4])
    result = select(series, enhancement, override_zyx=target)
    assert any("does not enhance like an artery" in w for w in result.quality["warnings"])


def test_truncated_aif_is_flagged():
    series = make_series(truncated_times())
    result = select(series)
    assert result.quality["truncated"]
    assert any(w.startswith("AIF truncated") for w in result.quality["warnings"])
    assert at(series.artery, result.aif_voxels).all()


def test_missing_sinus_reports_vof_not_found():
    series = make_series(uniform_times(), with_sinus=False)
    result = select(series)
    assert result.vof is None and result.vof_voxels is None
    assert result.aif_scale == 1.0
    np.testing.assert_array_equal(result.aif, result.aif_raw)
    assert any(w.startswith("VOF not found") for w in result.quality["warnings"])


def test_low_aif_peak_warns():
    series = make_series(uniform_times(), peak_hu=110.0)
    result = select(series)
    assert at(series.artery, result.aif_voxels).all()
    assert any(w.startswith("low AIF peak") for w in result.quality["warnings"])
    assert not any(w.startswith("noisy AIF") for w in result.quality["warnings"])


def test_noisy_aif_warns():
    series = make_series(uniform_times(), peak_hu=110.0, noise_hu=25.0)
    result = select(series)
    assert at(series.artery, result.aif_voxels).all()
    assert any(w.startswith("noisy AIF") for w in result.quality["warnings"])


def test_implausible_area_ratio_warns(normal):
    series, enhancement = normal
    near_artery = ndimage.binary_dilation(series.artery, np.ones((1, 5, 5), bool))
    weakened = enhancement.copy()
    weakened[:, near_artery] *= 0.25                 # arteries at ~19 % partial volume
    result = select(series, weakened)
    assert at(near_artery, result.aif_voxels).all()  # faint arteries, but not the sinus
    assert result.quality["vof_aif_area_ratio"] > 3.0
    assert result.aif_scale == 1.0
    assert any(w.startswith("implausible VOF/AIF area ratio") for w in result.quality["warnings"])


@pytest.mark.parametrize("kwargs, reason", [
    ({"override_zyx": (99, 0, 0)}, "outside the volume"),
    ({"override_zyx": (0, -1, 0)}, "outside the volume"),
    ({"n_voxels": 0}, "n_voxels"),
])
def test_bad_arguments_raise_input_error(normal, kwargs, reason):
    series, enhancement = normal
    with pytest.raises(InputError, match=reason):
        select(series, enhancement, **kwargs)


def test_bad_shapes_raise_input_error(normal):
    series, enhancement = normal
    with pytest.raises(InputError):
        select_arterial_input(enhancement, series.times[:-1], series.brain, series.geometry)
    with pytest.raises(InputError):
        select_arterial_input(enhancement, series.times, series.brain[:-1], series.geometry)
    with pytest.raises(InputError, match="no arterial input"):
        select_arterial_input(np.zeros_like(enhancement), series.times, series.brain,
                              series.geometry)
