"""Tests of the synthetic CT perfusion phantom: physics, truth, noise, motion, DICOM output."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from sample_data import curves
from sample_data.__main__ import main
from sample_data.anatomy import ARTERY, CORE, CSF, GM, NORMAL, VEIN, WM
from sample_data.dicom_writer import VARIANTS, DicomVariant, parse_variant, read_hu, write_dicom
from sample_data.phantom import (
    CASES,
    PhantomConfig,
    design_margin_violations,
    make_phantom,
    truth_summary,
    write_truth,
)
from triage.base.errors import InputError

SMALL = dict(matrix=128, noise_hu=0.0)


@pytest.fixture(scope="module")
def phantoms():
    """Noise-free phantoms of the main cases at 128 x 128 x 16 x 40 (256 layout in mm)."""
    names = ("mismatch", "large_core", "no_lesion", "delayed", "dispersed", "right_side",
             "sharp_uniform", "low_wide_bolus")
    return {name: make_phantom(replace(CASES[name], **SMALL)) for name in names}


def test_truth_maps_are_consistent(phantoms):
    truth = phantoms["mismatch"].truth
    p = truth.parenchyma
    assert np.allclose(truth.cbv[p], truth.cbf[p] * truth.mtt[p] / 60.0, rtol=1e-5)
    for name in ("cbf", "cbv", "mtt", "tmax"):
        assert np.all(getattr(truth, name)[~p] == 0)
        assert np.all(getattr(truth, name)[p] > 0)
    for mask in (truth.core, truth.hypoperfused, truth.severe):
        assert not np.any(mask & ~p)
    assert np.all(truth.severe <= truth.hypoperfused)
    assert np.all(truth.core <= truth.hypoperfused)
    assert np.allclose(np.unique(truth.tmax[p]), [0.6, 1.0, 3.5, 8.0, 12.0, 14.0])


@pytest.mark.parametrize("name", list(CASES))
def test_design_margins_hold(name):
    config = replace(CASES[name], matrix=96, n_frames=3, noise_hu=0.0, motion=False)
    truth = make_phantom(config).truth
    assert design_margin_violations(truth, 2.0 - config.tissue_delay_s) == []
    # white matter majority of the reference tissue; texture raises it by a few per cent
    assert truth.reference_cbf == pytest.approx(25.0, rel=0.05)
    pure_core = truth.core & ~truth.mixed
    assert truth.core.sum() == 0 or truth.cbf[pure_core].max() <= 0.25 * truth.reference_cbf
    design = np.array([0.6, 1.0, 3.5, 8.0, 12.0, 14.0]) + config.tissue_delay_s
    assert np.abs(truth.tmax[truth.parenchyma][:, None] - design).min(axis=1).max() < 1e-5


def test_margin_check_catches_a_core_too_close_to_the_threshold(phantoms):
    truth = phantoms["mismatch"].truth
    assert design_margin_violations(truth) == []
    pure_core = truth.core & ~truth.mixed
    truth = replace(truth, cbf=np.where(pure_core, 0.27 * truth.reference_cbf, truth.cbf))
    assert design_margin_violations(truth) == [
        f"core CBF > 0.25 x reference: {int(pure_core.sum())} voxels"]


def test_reference_tissue_is_clearly_white_matter(phantoms):
    truth = phantoms["mismatch"].truth
    x_left = np.arange(truth.labels.shape[2]) > truth.labels.shape[2] / 2
    reference = truth.parenchyma & ~x_left[None, None, :] & (truth.tmax < 4)
    wm_fraction = (truth.labels[reference] == WM).mean()
    assert wm_fraction > 0.65


@pytest.mark.parametrize("name,core,tmax6,hir,eligible", [
    ("mismatch", (15, 25), (80, 130), (0.3, 0.5), True),
    ("large_core", (80, 110), (150, 220), (0.3, 1.0), False),
])
def test_volumes_in_target_ranges(phantoms, name, core, tmax6, hir, eligible):
    phantom = phantoms[name]
    v = phantom.truth.volumes
    assert core[0] <= v["core_ml"] <= core[1]
    assert tmax6[0] <= v["tmax6_ml"] <= tmax6[1]
    assert hir[0] <= v["hir"] <= hir[1]
    assert v["mismatch_ml"] == pytest.approx(v["tmax6_ml"] - v["core_ml"])
    assert v["mismatch_ratio"] == pytest.approx(v["tmax6_ml"] / v["core_ml"])
    assert truth_summary(phantom)["defuse3_imaging_eligible"] is eligible


def test_no_lesion_has_zero_volumes(phantoms):
    truth = phantoms["no_lesion"].truth
    v = truth.volumes
    assert v["core_ml"] == v["tmax6_ml"] == v["tmax10_ml"] == v["mismatch_ml"] == 0
    assert v["mismatch_ratio"] is None and v["hir"] is None
    assert truth.lesion_side is None and not truth.zones.any()


def test_volumes_do_not_depend_on_matrix(phantoms):
    fine = make_phantom(replace(CASES["mismatch"], matrix=256, noise_hu=0.0, n_frames=4))
    coarse = phantoms["mismatch"].truth.volumes
    for key in ("core_ml", "tmax6_ml", "tmax10_ml"):
        assert fine.truth.volumes[key] == pytest.approx(coarse[key], rel=0.06)


def test_tissue_delay_shifts_tmax(phantoms):
    base, delayed = phantoms["mismatch"].truth, phantoms["delayed"].truth
    p = base.parenchyma
    assert np.allclose(delayed.tmax[p], base.tmax[p] + 1.0)
    assert np.array_equal(delayed.core, base.core)
    late = delayed.parenchyma & (delayed.zones == NORMAL)
    aif_peak = np.argmax(phantoms["delayed"].truth.aif)
    base_hu, delayed_hu = phantoms["mismatch"].hu, phantoms["delayed"].hu
    # delayed tissue rises later: lower enhancement on the upslope of the tissue curve
    assert delayed_hu[aif_peak][late].mean() < base_hu[aif_peak][late].mean()


@pytest.mark.parametrize("residue", ["lognormal", "exponential", "gamma3", "linear"])
def test_dispersion_keeps_the_design_tmax_with_an_earlier_onset(residue):
    """For tau = 0 ... 3 s the maximum of every zone's dispersed residue (recomputed from the
    recorded arrival delay and dispersion) is its design Tmax; in the lesion the onset is
    earlier than Tmax by the dispersed offset, the requested tau is used wherever the onset
    can stay >= 0, and normal tissue is not dispersed."""
    t = curves.fine_times()
    base = None
    for tau in (0.0, 1.0, 2.0, 3.0):
        config = replace(CASES["mismatch"], matrix=64, n_frames=3, residue=residue,
                         dispersion_s=tau)
        phantom = make_phantom(config)
        if base is None:
            base = phantom.truth
        assert np.array_equal(phantom.truth.tmax, base.tmax)
        assert design_margin_violations(phantom.truth) == []
        for z in phantom.truth.zone_parameters:
            r = curves.residue(t, z["mtt"], z["arrival_delay_s"], z["dispersion_s"], residue)
            assert curves.tmax_of(r, t) == pytest.approx(z["tmax"], abs=1.5 * curves.FINE_DT_S), z
            assert z["arrival_delay_s"] >= 0.0
            if z["zone"] == "normal" or tau == 0:
                assert z["dispersion_s"] == 0 and z["arrival_delay_s"] == z["tmax"]
                continue
            assert z["arrival_delay_s"] < z["tmax"] - 0.5 * z["dispersion_s"], z
            if z["zone"] != "oligaemic_rim":
                assert z["dispersion_s"] == tau, z
            else:
                assert z["dispersion_s"] == tau or z["arrival_delay_s"] < 0.05, z


def test_dispersion_changes_lesion_curves_only(phantoms):
    base, dispersed = phantoms["mismatch"], phantoms["dispersed"]
    p = base.truth.parenchyma & ~base.truth.mixed
    lesion, normal = p & (base.truth.zones != NORMAL), p & (base.truth.zones == NORMAL)
    difference = np.abs(dispersed.hu - base.hu).max(axis=0)
    assert difference[lesion].min() > 0.05 and difference[normal].max() == 0
    assert np.array_equal(dispersed.truth.cbf, base.truth.cbf)
    assert np.array_equal(dispersed.truth.cbv, base.truth.cbv)


def test_area_ratio_gives_cbv_on_noise_free_curves():
    t = curves.fine_times()
    aif = curves.arterial_curve(t)
    for cbf, cbv, delay, dispersion in [(60, 4.0, 0.6, 0), (25, 2.0, 1.0, 0), (4.5, 1.6, 14, 0),
                                        (16.25, 2.1, 12, 0), (42, 4.4, 8, 2.0)]:
        r = curves.residue(t, 60.0 * cbv / cbf, delay, dispersion)
        tissue = curves.tissue_curve(aif, r, cbf)
        measured = 100.0 * (curves.K_H / curves.RHO) * np.trapezoid(tissue, t) / np.trapezoid(
            aif, t)
        assert measured == pytest.approx(cbv, rel=2e-3)
        if dispersion == 0:
            assert curves.tmax_of(r, t) == pytest.approx(delay, abs=curves.FINE_DT_S)


@pytest.mark.parametrize("name", ["mismatch", "low_wide_bolus"])
def test_phantom_voxels_follow_the_model(phantoms, name):
    """Voxel curves are the default lognormal residue (not the exponential the default model
    fits) convolved with the AIF, scaled by the voxel's textured truth CBF."""
    phantom = phantoms[name]
    truth, hu = phantom.truth, phantom.hu
    assert phantom.config.residue == "lognormal" and phantom.config.texture > 0
    t = curves.fine_times()
    aif = curves.arterial_curve(t, phantom.config.aif_peak_hu, phantom.config.bolus_width)
    peaks = {}
    for zone, tissue in [(NORMAL, GM), (NORMAL, WM), (CORE, WM)]:
        voxel = tuple(np.argwhere((truth.zones == zone) & (truth.labels == tissue)
                                  & ~truth.mixed)[0])
        r = curves.residue(t, truth.mtt[voxel], truth.tmax[voxel], 0.0, "lognormal")
        expected = np.interp(phantom.times, t, curves.tissue_curve(aif, r, truth.cbf[voxel]))
        measured = hu[(slice(None), *voxel)] - hu[(0, *voxel)]
        assert np.allclose(measured, expected - expected[0], atol=1e-3)
        peaks[zone, tissue] = measured.max()
        exponential = curves.residue(t, truth.mtt[voxel], truth.tmax[voxel], 0.0)
        other = np.interp(phantom.times, t, curves.tissue_curve(aif, exponential, truth.cbf[voxel]))
        assert np.abs(other - expected).max() > 0.02 * expected.max()   # not the model's residue
    if name == "low_wide_bolus":
        return
    assert 10.0 < peaks[NORMAL, GM] < 30.0 and 4.0 < peaks[NORMAL, WM] < 15.0
    assert peaks[CORE, WM] < 0.25 * peaks[NORMAL, WM]


def test_aif_vof_and_vessels(phantoms):
    phantom = phantoms["mismatch"]
    truth, times = phantom.truth, phantom.times
    t = curves.fine_times()
    aif = curves.arterial_curve(t)
    vof = curves.venous_curve(t, aif)
    assert 6.0 <= t[np.argmax(aif > 1.0)] <= 8.0
    assert 250 <= aif.max() <= 400 and 13 <= t[np.argmax(aif)] <= 16
    assert np.trapezoid(vof, t) == pytest.approx(np.trapezoid(aif, t), rel=1e-3)
    assert 4.0 <= t[np.argmax(vof)] - t[np.argmax(aif)] <= 8.0
    assert np.allclose(truth.aif, np.interp(times, t, aif))
    enhancement = phantom.hu - phantom.hu[0]
    peak = np.argmax(truth.aif)
    art = enhancement[peak][tuple(truth.artery_voxels.T)] / truth.aif[peak]
    assert 0.68 <= np.median(art) <= 0.8 and art.max() <= 1.0 + 1e-4
    assert np.all(truth.labels[tuple(truth.artery_voxels.T)] == ARTERY)
    assert np.all(truth.labels[tuple(truth.vein_voxels.T)] == VEIN)
    vein = enhancement[:, truth.vein_voxels[:, 0], truth.vein_voxels[:, 1], truth.vein_voxels[:, 2]]
    assert np.allclose(vein, truth.vof[:, None] - truth.vof[0], atol=1e-3)
    pixel_mm2 = phantom.geometry.spacing[0] * phantom.geometry.spacing[1]
    per_slice = np.bincount(truth.vein_voxels[:, 0], minlength=truth.labels.shape[0])
    assert per_slice.min() * pixel_mm2 >= np.pi * 3.0 ** 2   # sinus >= 6 mm across everywhere


def test_baseline_attenuation(phantoms):
    phantom = phantoms["mismatch"]
    labels, frame0 = phantom.truth.labels, phantom.hu[0]
    assert np.all(frame0[labels == GM] == 40.0) and np.all(frame0[labels == WM] == 28.0)
    assert frame0[labels == 0].max() == -1000.0
    bone = frame0[labels == 2]
    assert 650 <= bone.min() and bone.max() <= 1250


def test_noise_level_and_correlation():
    config = replace(CASES["mismatch"], matrix=128, n_slices=8, n_frames=6, noise_hu=10.0)
    noisy = make_phantom(config).hu
    clean = make_phantom(replace(config, noise_hu=0.0)).hu
    noise = (noisy - clean).astype(np.float64)
    assert noise.std() == pytest.approx(10.0, rel=0.05)
    corr_x = np.corrcoef(noise[..., 1:].ravel(), noise[..., :-1].ravel())[0, 1]
    corr_y = np.corrcoef(noise[..., 1:, :].ravel(), noise[..., :-1, :].ravel())[0, 1]
    corr_t = np.corrcoef(noise[1:].ravel(), noise[:-1].ravel())[0, 1]
    assert corr_x > 0.3 and corr_y > 0.3 and abs(corr_t) < 0.02


def test_lesion_on_requested_patient_side(phantoms):
    for name, sign in (("mismatch", 1.0), ("right_side", -1.0)):
        phantom = phantoms[name]
        geometry = phantom.geometry
        x_mm = geometry.origin[0] + geometry.spacing[0] * np.argwhere(phantom.truth.zones)[:, 2]
        assert np.all(sign * x_mm > 0)           # LPS: +x is patient left = high column index
        assert phantom.truth.lesion_side == ("left" if sign > 0 else "right")


def test_motion_truth_only_in_moved_frames():
    config = replace(CASES["moved_noisy"], matrix=96, n_slices=8, noise_hu=0.0)
    moved = make_phantom(config)
    still = make_phantom(replace(config, motion=False))
    d = moved.truth.displacement_mm
    assert d[0] == 0.0 and np.all(still.truth.displacement_mm == 0)
    moving = d > 0
    assert 3 <= moving.sum() <= 8 and d.max() > 10.0
    assert 1.0 <= np.sort(d[moving])[0] and np.sort(d[moving])[-2] < 8.0
    differs = np.abs(moved.hu - still.hu).reshape(len(d), -1).max(axis=1) > 1.0
    assert np.array_equal(differs, moving)
    assert np.array_equal(moved.truth.labels, still.truth.labels)


def test_frame_times():
    uniform = make_phantom(replace(CASES["truncated"], **SMALL, n_slices=2)).times
    assert uniform[0] == 0 and uniform[-1] == 25.0 and len(uniform) == 26
    variable = make_phantom(replace(CASES["variable_sampling"], **SMALL, n_slices=2)).times
    assert variable[0] == 0 and variable[-1] == 60.0 and len(variable) == 40
    step = np.diff(variable)
    mid = (variable[:-1] > 8) & (variable[:-1] < 28)
    assert step[mid].max() < step[variable[:-1] < 4].min() < step[variable[:-1] > 32].min()


def test_non_square_pixels_keep_the_anatomy_in_mm(tmp_path):
    """Rows 2.1 mm apart, columns 1.5 mm: the DICOM says so, the head keeps its size in mm (the
    volumes are those of square pixels) and a grid too small for the head is refused."""
    config = replace(CASES["mismatch"], matrix=128, n_slices=8, n_frames=4, noise_hu=0.0)
    square, stretched = make_phantom(config), make_phantom(replace(config, pixel_spacing_mm=(2.1, 1.5)))
    assert stretched.geometry.spacing == (1.5, 2.1, 5.0)
    ds = pydicom.dcmread(write_dicom(stretched, tmp_path)[0])
    assert [float(v) for v in ds.PixelSpacing] == [2.1, 1.5] and (ds.Rows, ds.Columns) == (128, 128)
    for key in ("core_ml", "tmax6_ml", "tmax10_ml"):
        assert stretched.truth.volumes[key] == pytest.approx(square.truth.volumes[key], rel=0.06)
    head_mm = [float(np.ptp(np.nonzero(p.truth.parenchyma.any(axis=0))[axis]) * p.geometry.spacing[1 - axis])
               for p in (square, stretched) for axis in (0, 1)]  # (y, x) extent of the brain, mm
    assert head_mm[2:] == pytest.approx(head_mm[:2], abs=4.0)
    with pytest.raises(InputError, match="pixel_spacing_mm .* head"):
        make_phantom(replace(config, pixel_spacing_mm=(1.0, 1.5)))  # 128 mm along y: the head is 190 mm


def test_invalid_configs_raise_input_error():
    for bad in (dict(case="tiny"), dict(matrix=4), dict(lesion_side="up"), dict(n_frames=1),
                dict(noise_hu=-1.0), dict(dispersion_s=3.5), dict(texture=0.3),
                dict(edge_blur_mm=-1.0), dict(bolus_width=3.0), dict(aif_peak_hu=10.0),
                dict(residue="cubic")):
        with pytest.raises(InputError):
            make_phantom(PhantomConfig(**bad))
    with pytest.raises(InputError):
        DicomVariant(rescale="sometimes")
    with pytest.raises(InputError):
        parse_variant("nonsense")
    assert parse_variant("rescale=per_instance,shuffle=true") == DicomVariant(
        rescale="per_instance", shuffle=True)


@pytest.fixture(scope="module")
def tiny():
    return make_phantom(replace(CASES["moved_noisy"], matrix=48, n_slices=3, n_frames=5))


@pytest.mark.parametrize("name", ["standard", "acquisition_time", "content_time",
                                  "constant_acquisition_number", "per_instance_rescale",
                                  "implicit", "rle", "jpeg2000", "messy"])
def test_dicom_round_trip(tiny, tmp_path, name):
    variant = VARIANTS[name]
    paths = write_dicom(tiny, tmp_path, variant=variant)
    n_t, n_z = tiny.hu.shape[:2]
    assert len(paths) == n_t * n_z + (n_z if variant.extra_series else 0)
    assert all(p.is_file() for p in paths)
    seen, rescales, study = set(), set(), set()
    for path in paths:
        ds, hu = read_hu(path)
        study.add(ds.StudyInstanceUID)
        assert ds.SOPClassUID == pydicom.uid.CTImageStorage and ds.Modality == "CT"
        assert ds.file_meta.TransferSyntaxUID == {
            "explicit": pydicom.uid.ExplicitVRLittleEndian,
            "implicit": pydicom.uid.ImplicitVRLittleEndian, "rle": pydicom.uid.RLELossless,
            "jpeg2000_lossless": pydicom.uid.JPEG2000Lossless}[variant.transfer_syntax]
        assert ds.PatientAge == "072Y" and ds.PatientName == "PHANTOM^CTP"
        assert list(ds.ImageOrientationPatient) == [1, 0, 0, 0, 1, 0]
        z = round((ds.ImagePositionPatient[2] - tiny.geometry.origin[2]) / ds.SliceThickness)
        if ds.SeriesNumber != 4:
            assert "NCCT" in ds.SeriesDescription
            continue
        assert ds.SeriesDescription == "CT PERFUSION PHANTOM (synthetic, research use)"
        assert ("AcquisitionTime" in ds) == (variant.time_source != "content")
        assert ("ContentTime" in ds) == (variant.time_source != "acquisition")
        frame = ds.TemporalPositionIdentifier - 1
        assert ds.AcquisitionNumber == (frame + 1 if variant.acquisition_number == "per_frame"
                                        else 1)
        tm = ds.get("AcquisitionTime") or ds.ContentTime
        seconds = int(tm[:2]) * 3600 + int(tm[2:4]) * 60 + float(tm[4:])
        assert seconds - (10 * 3600 + 15 * 60) == pytest.approx(tiny.times[frame], abs=1e-6)
        expected = tiny.hu[frame, z]
        if variant.rescale == "per_instance":
            expected = np.maximum(expected, float(ds.RescaleIntercept))
            rescales.add((float(ds.RescaleSlope), float(ds.RescaleIntercept)))
        assert np.abs(hu - expected).max() <= 0.51
        seen.add((frame, z))
    assert len(seen) == n_t * n_z and len(study) == 1
    if variant.rescale == "per_instance":
        assert len(rescales) > 1
    if variant.file_names == "random":
        assert len({p.parent for p in paths}) > 3 and not any(p.suffix for p in paths)


def test_patient_left_is_high_column_in_dicom(tmp_path):
    phantom = make_phantom(replace(CASES["noise_free"], matrix=64, n_slices=8, n_frames=3))
    path = write_dicom(phantom, tmp_path)[4]
    ds = pydicom.dcmread(path)
    z = round((ds.ImagePositionPatient[2] - phantom.geometry.origin[2]) / ds.SliceThickness)
    columns = np.nonzero(phantom.truth.zones[z].any(axis=0))[0]
    assert columns.size and np.all(
        ds.ImagePositionPatient[0] + columns * ds.PixelSpacing[1] > 0)   # LPS +x = left


def test_write_truth_files(tmp_path, phantoms):
    phantom = phantoms["mismatch"]
    write_truth(phantom, tmp_path)
    summary = json.loads((tmp_path / "truth.json").read_text())
    assert summary["volumes"]["core_ml"] == pytest.approx(phantom.truth.volumes["core_ml"])
    assert summary["reference_cbf"] == pytest.approx(phantom.truth.reference_cbf)
    assert summary["lesion_side"] == "left"
    assert summary["variations"]["residue"] == "lognormal"
    assert summary["variations"]["mixed_voxel_count"] == int(phantom.truth.mixed.sum()) > 0
    assert {z["zone"] for z in summary["zones"]} >= {"core", "oligaemic_rim"}
    assert all({"tmax", "arrival_delay_s", "dispersion_s"} <= set(z) for z in summary["zones"])
    image = sitk.ReadImage(str(tmp_path / "truth_cbf.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(image), phantom.truth.cbf)
    assert image.GetSpacing() == pytest.approx(phantom.geometry.spacing)
    assert image.GetOrigin() == pytest.approx(phantom.geometry.origin, abs=1e-4)
    core = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "truth_core.nii.gz")))
    assert core.sum() == phantom.truth.core.sum()


def test_cli(tmp_path, capsys):
    code = main(["--case", "mismatch", "--out", str(tmp_path), "--matrix", "32", "--slices",
                 "2", "--frames", "4", "--variant", "rle"])
    assert code == 0
    assert len(list((tmp_path / "dicom").rglob("*.dcm"))) == 8
    assert (tmp_path / "truth.json").is_file()
    assert "core" in capsys.readouterr().out
    out = tmp_path / "variations"
    assert main(["--case", "mismatch", "--out", str(out), "--matrix", "32", "--slices", "2",
                 "--frames", "3", "--residue", "box", "--dispersion", "1.5", "--texture", "0.1",
                 "--edge-blur", "0", "--aif-peak", "200", "--bolus-width", "1.3"]) == 0
    config = json.loads((out / "truth.json").read_text())["config"]
    assert (config["residue"], config["dispersion_s"], config["texture"], config["edge_blur_mm"],
            config["aif_peak_hu"], config["bolus_width"]) == ("box", 1.5, 0.1, 0.0, 200.0, 1.3)
    capsys.readouterr()
    assert main(["--case", "nope", "--out", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


def test_residue_shapes():
    """Every shape keeps area MTT, R(delay) = 1 and R falling; the exponential is exp(-s/MTT);
    the flatter shapes hold more tracer early; box and linear end at MTT and 2 MTT."""
    from sample_data import curves

    t = curves.fine_times()
    exponential = curves.residue(t, 4.0, 1.0, 0.0, "exponential")
    centres = t + curves.FINE_DT_S / 2 - 1.0
    assert np.allclose(exponential[t >= 1.0], np.exp(-centres[t >= 1.0] / 4.0), atol=3e-3)
    at_2s = int(2.0 / curves.FINE_DT_S)
    for shape in curves.RESIDUE_SHAPES:
        r = curves.residue(t, 4.0, 1.0, 0.0, shape)
        assert r.sum() * curves.FINE_DT_S == pytest.approx(4.0, rel=1e-4), shape
        assert r.max() == pytest.approx(1.0, abs=3e-3) and curves.tmax_of(r, t) == pytest.approx(1.0, abs=0.03)
        assert np.all(np.diff(r[t >= 1.0]) <= 1e-9), shape
        if shape != "exponential":
            assert r[at_2s] > exponential[at_2s], shape  # flatter top
    box = curves.residue(t, 4.0, 1.0, 0.0, "box")
    linear = curves.residue(t, 4.0, 1.0, 0.0, "linear")
    assert box[int(4.9 / curves.FINE_DT_S)] == pytest.approx(1.0, abs=1e-9) and box[int(5.1 / curves.FINE_DT_S)] == pytest.approx(0, abs=1e-9)
    assert linear[int(8.9 / curves.FINE_DT_S)] > 0 and linear[int(9.1 / curves.FINE_DT_S)] == 0
    with pytest.raises(ValueError, match="unknown residue shape"):
        curves.residue(t, 4.0, 1.0, 0.0, "cubic")


def test_default_is_not_the_default_models_residue():
    assert PhantomConfig().residue == "lognormal" and CASES["mismatch"].residue == "lognormal"
    assert {c.residue for c in CASES.values()} == set(curves.RESIDUE_SHAPES)


def _pure_zone(truth, zone, tissue):
    return (truth.zones == zone) & (truth.labels == tissue) & ~truth.mixed


def test_texture_scales_cbf_and_cbv_smoothly(phantoms):
    """Within a zone, truth CBF and CBV vary together by about +-texture (MTT constant), the
    variation is smooth (10 mm FWHM), and each voxel's curve is the untextured one times
    (1 + f); the noise of a seed does not change with the texture."""
    textured, flat = phantoms["mismatch"], phantoms["sharp_uniform"]
    texture = textured.config.texture
    for zone, tissue in [(NORMAL, GM), (NORMAL, WM), (CORE, WM)]:
        voxels = _pure_zone(textured.truth, zone, tissue) & _pure_zone(flat.truth, zone, tissue)
        f = textured.truth.cbf[voxels] / flat.truth.cbf[voxels] - 1.0
        assert np.allclose(textured.truth.cbv[voxels] / flat.truth.cbv[voxels] - 1.0, f, atol=1e-5)
        assert np.ptp(textured.truth.mtt[voxels]) < 1e-4
        assert -texture - 1e-5 <= f.min() and f.max() <= texture + 1e-5
        if zone == NORMAL:
            assert f.min() < -0.6 * texture and f.max() > 0.6 * texture
            assert 0.3 * texture < 2 * f.std() < 1.3 * texture
        scale = textured.hu[:, voxels] - textured.hu[0, voxels]
        plain = flat.hu[:, voxels] - flat.hu[0, voxels]
        assert np.allclose(scale, plain * (1.0 + f), atol=1e-3)
    field = np.where(textured.truth.parenchyma, textured.truth.cbf / np.where(
        flat.truth.cbf > 0, flat.truth.cbf, 1.0) - 1.0, np.nan)
    pairs = ~np.isnan(field[..., 1:]) & ~np.isnan(field[..., :-1]) & ~textured.truth.mixed[..., 1:]
    pairs &= ~textured.truth.mixed[..., :-1]
    step = np.abs(field[..., 1:] - field[..., :-1])[pairs]      # 1.875 mm apart
    assert np.median(step) < 0.1 * texture
    config = replace(CASES["mismatch"], matrix=64, n_slices=4, n_frames=4)
    noise = [make_phantom(replace(config, texture=a)).hu - make_phantom(
        replace(config, texture=a, noise_hu=0.0)).hu for a in (0.0, 0.2)]
    assert np.allclose(noise[0], noise[1], atol=1e-3)
    other_seed = make_phantom(replace(config, seed=1, noise_hu=0.0)).truth.cbf
    assert not np.allclose(other_seed, make_phantom(replace(config, noise_hu=0.0)).truth.cbf)


def test_edge_blur_mixes_zones_only_at_their_edges():
    """Partial volume: mixed voxels lie within a few mm of a zone edge of their own tissue and
    cover it, truth CBF there lies between the zones' values, the curve is the mixture, the
    truth volumes equal the sharp ones, and tissue boundaries are not blurred further."""
    config = replace(CASES["mismatch"], matrix=192, n_frames=20, noise_hu=0.0, texture=0.0)
    blurred, sharp = make_phantom(config), make_phantom(replace(config, edge_blur_mm=0.0))
    tb, ts = blurred.truth, sharp.truth
    assert not ts.mixed.any() and tb.mixed.any()
    assert tb.volumes == ts.volumes and np.array_equal(tb.core, ts.core)
    assert np.array_equal(tb.tmax, ts.tmax)
    pixel = blurred.geometry.spacing[0]
    reach = int(np.ceil(3.0 / pixel))            # 3 mm: > 3.5 sigma of a 2 mm FWHM
    footprint = np.ones((1, 2 * reach + 1, 2 * reach + 1), bool)
    edge = np.zeros_like(tb.mixed)
    for tissue in (GM, WM):
        zones = np.where(tb.labels == tissue, tb.zones.astype(int), -1)
        high = ndimage.maximum_filter(zones, footprint=footprint)
        low = ndimage.minimum_filter(np.where(zones < 0, 99, zones), footprint=footprint)
        edge |= (tb.labels == tissue) & ((high != zones) | (low != zones))
    assert not np.any(tb.mixed & ~edge)
    touching = np.zeros_like(tb.mixed)
    for tissue in (GM, WM):
        zones = np.where(tb.labels == tissue, tb.zones.astype(int), -1)
        for axis in (1, 2):
            for shift in (1, -1):
                other = np.roll(zones, shift, axis=axis)
                touching |= (zones >= 0) & (other >= 0) & (other != zones)
    assert tb.mixed[touching].mean() > 0.95
    assert not np.any(tb.mixed & ~tb.parenchyma)
    unmixed = tb.parenchyma & ~tb.mixed
    assert np.array_equal(tb.cbf[unmixed], ts.cbf[unmixed])
    assert np.array_equal(blurred.hu[:, unmixed], sharp.hu[:, unmixed])
    low_cbf = ndimage.minimum_filter(np.where(tb.parenchyma, ts.cbf, np.inf), size=(1, 9, 9))
    high_cbf = ndimage.maximum_filter(ts.cbf, size=(1, 9, 9))
    mixed = tb.mixed
    assert np.all(tb.cbf[mixed] >= low_cbf[mixed] - 1e-4)
    assert np.all(tb.cbf[mixed] <= high_cbf[mixed] + 1e-4)
    assert np.any(tb.cbf[mixed] != ts.cbf[mixed])
    core_wm = (tb.zones == CORE) & (tb.labels == WM)
    assert tb.cbf[core_wm & mixed].max() > 1.5 * ts.cbf[core_wm].max()
    for tissue in (GM, WM):   # symmetric mixing: the flow of each tissue is kept (within 1 %)
        inside = tb.labels == tissue
        assert tb.cbf[inside].sum() == pytest.approx(ts.cbf[inside].sum(), rel=0.01)
    # a mixed voxel's curve is the truth-CBV-weighted mixture of its zones': its area follows
    area_b = (blurred.hu - blurred.hu[0])[:, mixed].sum(axis=0)
    area_s = (sharp.hu - sharp.hu[0])[:, mixed].sum(axis=0)
    assert np.corrcoef(area_b / area_s, tb.cbv[mixed] / ts.cbv[mixed])[0, 1] > 0.9
    assert not np.any(tb.mixed & (ndimage.binary_dilation(tb.labels == CSF) & (tb.zones == NORMAL)
                                  & ~edge))


def test_truncated_case_ends_before_the_brain_washes_out():
    phantom = make_phantom(replace(CASES["truncated"], matrix=64, noise_hu=0.0))
    brain = (phantom.hu - phantom.hu[0])[:, phantom.truth.parenchyma].mean(axis=1)
    assert brain[-1] > 0.6 * brain.max()


def test_low_wide_bolus():
    """aif_peak_hu sets the first-pass peak; bolus_width widens it (and moves the peak) by its
    factor (its rise from arrival to half the peak, before the recirculation, is 1.6 x longer);
    the wide bolus has passed well before the default 60 s ends."""
    t = curves.fine_times()
    peaks = {}
    for width in (1.0, 1.6):
        aif = curves.arterial_curve(t, 160.0, width)
        rise = t[np.argmax(aif >= aif.max() / 2)] - curves.AIF_ARRIVAL_S   # before recirculation
        peaks[width] = t[np.argmax(aif)], rise
        assert aif.max() == pytest.approx(160.0, rel=0.02)
        assert 6.9 <= t[np.argmax(aif > 1.0)] <= 8.5      # same arrival
    assert peaks[1.6][0] == pytest.approx(7.0 + 1.6 * 7.5, abs=0.3)
    assert peaks[1.6][1] / peaks[1.0][1] == pytest.approx(1.6, rel=0.03)
    phantom = make_phantom(replace(CASES["low_wide_bolus"], matrix=96, noise_hu=0.0))
    assert phantom.truth.aif.max() == pytest.approx(160.0, rel=0.02)
    assert phantom.truth.aif[-1] < 0.1 * phantom.truth.aif.max()
    brain = (phantom.hu - phantom.hu[0])[:, phantom.truth.parenchyma].mean(axis=1)
    assert brain[-1] < 0.4 * brain.max()
    assert design_margin_violations(phantom.truth) == []


@pytest.mark.parametrize("name", ["noise_5", "noise_15"])
def test_noise_cases(name):
    config = replace(CASES[name], matrix=96, n_slices=4, n_frames=5)
    noise = make_phantom(config).hu - make_phantom(replace(config, noise_hu=0.0)).hu
    assert noise.std() == pytest.approx(config.noise_hu, rel=0.05)
    assert config.noise_hu == {"noise_5": 5.0, "noise_15": 15.0}[name]
