"""Pipeline maps against the phantom's truth: noise-free accuracy per tissue, delay insensitivity."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from models.profiles import load_profile
from sample_data.phantom import CASES, make_phantom
from triage.imaging.pipeline import analyse
from triage.imaging.series import PerfusionSeries
from triage.settings import AnalysisSettings


def run_pipeline(config, settings):
    phantom = make_phantom(config)
    series = PerfusionSeries(
        data=phantom.hu.copy(), times=phantom.times, geometry=phantom.geometry,
        study_uid="1.2.3", series_uid="1.2.3.4",
    )
    analysis = analyse(series, settings, load_profile("rapid-like"))
    return phantom, analysis


def tissue_zones(truth, min_voxels=150):
    """Interior voxels of each truth zone in each tissue (GM, WM): zone masks.

    Grouped by ``truth.zones`` and ``truth.labels``, not by constant truth values: texture and
    partial volume at the zone edges make the truth vary within a zone.
    """
    zones = []
    for tissue in np.unique(truth.labels[truth.parenchyma]):
        for code in np.unique(truth.zones[truth.parenchyma]):
            zone = truth.parenchyma & (truth.labels == tissue) & (truth.zones == code)
            interior = ndimage.binary_erosion(zone, structure=np.ones((1, 3, 3), bool), iterations=2)
            if interior.sum() >= min_voxels:
                zones.append(interior)
    return zones


@pytest.fixture(scope="module")
def noise_free():
    """The pipeline's mechanics: noise-free tissue of the default model's own residue shape
    (gamma 2), so that what remains is discretisation, masks and AIF, not the shape assumption."""
    config = replace(CASES["mismatch"], noise_hu=0.0, residue="gamma2")
    return run_pipeline(config, AnalysisSettings(smoothing_fwhm_mm=0.0))


@pytest.fixture(scope="module")
def noise_free_default_residue():
    """The same on the phantom's default residue (lognormal transit times, not the model's)."""
    return run_pipeline(replace(CASES["mismatch"], noise_hu=0.0), AnalysisSettings(smoothing_fwhm_mm=0.0))


def zone_ratios(phantom, analysis, name):
    """Median estimate / truth of map ``name`` in every zone of :func:`tissue_zones`."""
    truth, estimate = getattr(phantom.truth, name), analysis.maps[name]
    zones = tissue_zones(phantom.truth)
    assert len(zones) >= 4  # GM, WM and lesion zones
    return [(float(np.median(truth[zone])), float(np.median(estimate[zone] / truth[zone]))) for zone in zones]


@pytest.mark.parametrize("name", ["cbf", "cbv", "mtt"])
def test_noise_free_maps_within_10_percent(noise_free, name):
    for truth, ratio in zone_ratios(*noise_free, name):
        assert ratio == pytest.approx(1.0, rel=0.10), (name, truth, ratio)


@pytest.mark.parametrize("name, tolerance", [("cbf", 0.20), ("cbv", 0.05), ("mtt", 0.20)])
def test_noise_free_maps_on_another_residue_shape(noise_free_default_residue, name, tolerance):
    """Lognormal transit times read with the gamma-2 residue: CBV is shape-free, CBF and MTT
    carry the shape assumption (measured up to +17 % / −19 % in the penumbra)."""
    for truth, ratio in zone_ratios(*noise_free_default_residue, name):
        assert ratio == pytest.approx(1.0, rel=tolerance), (name, truth, ratio)


def test_noise_free_tmax_within_one_interval(noise_free):
    phantom, analysis = noise_free
    interval = float(np.max(np.diff(phantom.times)))
    for zone in tissue_zones(phantom.truth):
        expected = float(np.median(phantom.truth.tmax[zone]))
        measured = float(np.median(analysis.maps["tmax"][zone]))
        assert abs(measured - expected) <= interval, (expected, measured)


@pytest.fixture(scope="module")
def delayed_runs():
    base = CASES["no_lesion"]
    runs = {}
    for delay in (0.0, 2.0, 4.0):
        config = type(base)(**{**base.__dict__, "tissue_delay_s": delay})
        runs[delay] = run_pipeline(config, AnalysisSettings())
    return runs


def test_delay_changes_normal_cbf_less_than_10_percent(delayed_runs):
    phantom0, analysis0 = delayed_runs[0.0]
    parenchyma = phantom0.truth.parenchyma & analysis0.tissue.parenchyma
    reference = float(np.median(analysis0.maps["cbf"][parenchyma]))
    for delay, (_, analysis) in delayed_runs.items():
        measured = float(np.median(analysis.maps["cbf"][parenchyma & analysis.tissue.parenchyma]))
        assert measured == pytest.approx(reference, rel=0.10), (delay, reference, measured)


def test_delay_shifts_tmax_by_the_delay(delayed_runs):
    phantom0, analysis0 = delayed_runs[0.0]
    interval = float(np.max(np.diff(phantom0.times)))
    parenchyma = phantom0.truth.parenchyma & analysis0.tissue.parenchyma
    tmax0 = float(np.median(analysis0.maps["tmax"][parenchyma]))
    for delay, (_, analysis) in delayed_runs.items():
        shift = float(np.median(analysis.maps["tmax"][parenchyma & analysis.tissue.parenchyma])) - tmax0
        assert abs(shift - delay) <= interval / 2, (delay, shift)


def test_moved_series_aif_is_an_artery_not_a_realigned_skull_edge():
    """Interpolating a moved frame puts bone into brain voxels for a few frames: a box-shaped
    'curve' that must not be taken for the AIF (it once was, and every volume came out 0)."""
    base = CASES["moved_noisy"]
    phantom, analysis = run_pipeline(type(base)(**{**base.__dict__, "noise_hu": 8.0}), AnalysisSettings())
    arteries = {tuple(v) for v in phantom.truth.artery_voxels.tolist()}
    voxels = [tuple(v) for v in analysis.arterial.aif_voxels.tolist()]
    assert sum(v in arteries for v in voxels) >= len(voxels) // 2, voxels
    truth = phantom.truth.volumes
    assert abs(analysis.lesion.volumes["tmax6_ml"] - truth["tmax6_ml"]) <= max(10.0, 0.10 * truth["tmax6_ml"])
    assert not analysis.implausible
