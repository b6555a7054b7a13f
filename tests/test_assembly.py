"""Scan, selection and 4D assembly of CT perfusion series from synthetic DICOM files."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from tests.support.dicom_factory import (
    AXIAL,
    COMPRESSED,
    TRANSFER_SYNTAXES,
    ct_instance,
    enhanced_ct_frame_object,
    slice_positions,
    write_perfusion_series,
)
from triage.base.errors import InputError
from triage.imaging.assembly import assemble, scan, select

TIMES = np.array([0.0, 1.0, 2.0, 3.5, 6.0])


def random_hu(shape, seed=0, even=False):
    """Integer HU (t, z, y, x) in [-100, 300); even values when ``even``."""
    hu = np.random.default_rng(seed).integers(-50, 150, shape) * (2 if even else 1)
    return hu.astype(np.float64)


def assemble_only(root, **kwargs):
    """Scan ``root`` and assemble its single perfusion series."""
    (candidate,) = select(scan(root))
    return assemble(candidate, **kwargs)


def one_line_error(call, *args, match: str, **kwargs) -> str:
    with pytest.raises(InputError, match=match) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and message
    return message


# ----------------------------------------------------------------------------- positive cases

def test_shuffled_nested_names_with_other_series(tmp_path):
    hu = random_hu((5, 4, 32, 32))
    rng = np.random.default_rng(1)
    names = {}

    def shuffled_name(t, z):
        names[t, z] = f"{rng.integers(10)}/{rng.integers(10)}/{generate_uid()[-12:]}"
        return names[t, z]

    _, uids, series_uid = write_perfusion_series(tmp_path / "in", hu, TIMES, name=shuffled_name)
    write_perfusion_series(tmp_path / "ncct", hu[:1], TIMES[:1], description="NCCT")
    ct_instance(tmp_path / "mr" / "x", np.zeros((32, 32), np.int16), position=(0, 0, 0),
                time_s=0.0, study_uid="1.2.3", series_uid=generate_uid(), modality="MR",
                description="MR DWI")
    (tmp_path / "notes.txt").write_text("not dicom")

    found = scan(tmp_path)
    assert [p.name for p, _ in found.ignored] == ["notes.txt"]
    reasons = {c.description: c.reason for c in found.candidates}
    assert reasons["NCCT"] == "one time point per position"
    assert reasons["CT PERFUSION"] == "slice positions repeated over 5 time points"
    assert reasons["MR DWI"] == "modality MR"
    (candidate,) = select(found)
    assert (candidate.series_uid, candidate.n_positions, candidate.n_frames) == (series_uid, 4, 5)

    series = assemble(candidate)
    assert series.data.dtype == np.float32 and series.data.shape == (5, 4, 32, 32)
    np.testing.assert_array_equal(series.data, hu)
    np.testing.assert_allclose(series.times, TIMES, atol=1e-6)
    np.testing.assert_array_equal(series.attributes["SOPInstanceUIDs"], uids)
    assert series.geometry.spacing == (0.5, 0.5, 5.0)
    assert series.geometry.origin == (-16.0, -16.0, 0.0)
    assert series.acquisition_geometry is None and series.acquisition_shape is None
    assert series.patient_age == 72.0
    assert series.attributes["PatientID"] == "TEST001"
    assert float(series.attributes["KVP"]) == 80.0
    assert series.warnings == []
    assert "FrameNumbers" not in series.attributes


def test_per_instance_rescale_and_unsigned_pixels(tmp_path):
    hu = random_hu((4, 3, 16, 16), even=True)
    slopes = np.random.default_rng(2).choice([0.5, 1.0, 2.0], size=(4, 3))
    write_perfusion_series(tmp_path / "signed", hu, TIMES[:4], slopes=slopes)
    np.testing.assert_array_equal(assemble_only(tmp_path / "signed").data, hu)

    study, series_uid = generate_uid(), generate_uid()
    for t in range(4):
        for z, position in enumerate(slice_positions(3)):
            stored = (hu[t, z] + 2048).astype(np.uint16)        # intercept -2048, unsigned
            ct_instance(tmp_path / "unsigned" / f"{t}{z}", stored, position=position,
                        time_s=100.0 + t, study_uid=study, series_uid=series_uid,
                        intercept=-2048.0)
    np.testing.assert_array_equal(assemble_only(tmp_path / "unsigned").data, hu)


def test_content_time_only_and_variable_sampling(tmp_path):
    times = np.array([0.0, 2.0, 3.0, 3.5, 4.0, 7.0, 12.0])
    hu = random_hu((7, 2, 8, 8))
    write_perfusion_series(tmp_path, hu, times, time_tag="ContentTime")
    series = assemble_only(tmp_path)
    np.testing.assert_allclose(series.times, times, atol=1e-6)
    np.testing.assert_array_equal(series.data, hu)
    assert series.attributes["time_source"] == "ContentTime"
    assert any("ContentTime" in w for w in series.warnings)


def test_midnight_wrap(tmp_path):
    hu = random_hu((5, 2, 8, 8))
    write_perfusion_series(tmp_path, hu, TIMES, start_s=86400.0 - 2.5)
    series = assemble_only(tmp_path)
    np.testing.assert_allclose(series.times, TIMES, atol=1e-6)
    np.testing.assert_array_equal(series.data, hu)


@pytest.mark.parametrize("syntax", sorted(TRANSFER_SYNTAXES))
def test_compressed_and_implicit_instances_decode_to_same_hu(tmp_path, syntax):
    hu = random_hu((3, 2, 32, 32), seed=3)
    paths, _, _ = write_perfusion_series(tmp_path, hu, TIMES[:3],
                                         transfer_syntax=TRANSFER_SYNTAXES[syntax])
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[syntax]
    np.testing.assert_array_equal(assemble_only(tmp_path, max_matrix=16).data,
                                  hu.reshape(3, 2, 16, 2, 16, 2).mean(axis=(3, 5)))
    np.testing.assert_array_equal(assemble_only(tmp_path).data, hu)


def test_in_plane_reduction_block_means_and_geometry(tmp_path):
    angle = math.radians(30)
    orientation = (math.cos(angle), math.sin(angle), 0.0, 0.0, 0.0, -1.0)   # oblique, coronal-ish
    pixel_spacing = (0.8, 0.6)                                                # (row, column)
    hu = random_hu((3, 3, 128, 128), seed=4)
    write_perfusion_series(tmp_path, hu, TIMES[:3], orientation=orientation,
                           pixel_spacing=pixel_spacing, first=(10.0, -20.0, 30.0),
                           slice_spacing=4.0)
    series = assemble_only(tmp_path, max_matrix=64)

    expected = hu.reshape(3, 3, 64, 2, 64, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(series.data, expected, atol=1e-4)
    assert series.acquisition_shape == (3, 128, 128)
    assert series.acquisition_geometry.spacing == pytest.approx((0.6, 0.8, 4.0))
    assert series.geometry.spacing == pytest.approx((1.2, 1.6, 4.0))

    row_dir, col_dir = np.array(orientation[:3]), np.array(orientation[3:])
    positions = slice_positions(3, 4.0, orientation, (10.0, -20.0, 30.0))
    image = sitk.Image(64, 64, 3, sitk.sitkFloat32)
    image.SetSpacing(series.geometry.spacing)
    image.SetOrigin(series.geometry.origin)
    image.SetDirection(series.geometry.direction)
    for x, y, z in [(0, 0, 0), (5, 17, 2), (63, 40, 1)]:
        # centre of the 2 x 2 source block (columns 2x, 2x+1; rows 2y, 2y+1) in DICOM terms
        centre = (positions[z] + (2 * x + 0.5) * pixel_spacing[1] * row_dir
                  + (2 * y + 0.5) * pixel_spacing[0] * col_dir)
        np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((x, y, z)), centre,
                                   atol=1e-6)


def test_enhanced_ct_one_object_per_time_point(tmp_path):
    hu = random_hu((4, 3, 16, 16), seed=5)
    study, series_uid = generate_uid(), generate_uid()
    stored_order = [2, 0, 1]                                  # frames not in slice order
    for t in np.random.default_rng(0).permutation(4):
        enhanced_ct_frame_object(tmp_path / f"{generate_uid()}.dcm",
                                 (hu[t, stored_order] + 1024).astype(np.int16),
                                 positions=slice_positions(3)[stored_order],
                                 time_s=500.0 + TIMES[t], temporal_index=int(t) + 1,
                                 study_uid=study, series_uid=series_uid)
    series = assemble_only(tmp_path)
    np.testing.assert_array_equal(series.data, hu)
    np.testing.assert_allclose(series.times, TIMES[:4], atol=1e-6)
    assert series.attributes["SOPInstanceUIDs"].shape == (4, 3)
    np.testing.assert_array_equal(series.attributes["FrameNumbers"],
                                  np.tile([2, 3, 1], (4, 1)))     # slice z is frame 1 + [1, 2, 0]
    assert series.geometry.spacing == (0.5, 0.5, 5.0)


def test_multiple_perfusion_series_and_selection_by_uid(tmp_path):
    hu = random_hu((3, 2, 8, 8))
    _, _, first = write_perfusion_series(tmp_path / "a", hu, TIMES[:3])
    _, _, second = write_perfusion_series(tmp_path / "b", hu, TIMES[:3])
    found = scan(tmp_path)
    assert {c.series_uid for c in select(found)} == {first, second}
    assert [c.series_uid for c in select(found, second)] == [second]
    one_line_error(select, found, "1.2.3.4", match="series 1.2.3.4 not found; found 2 series")


def test_exact_duplicates_dropped(tmp_path):
    hu = random_hu((3, 2, 8, 8))
    paths, _, _ = write_perfusion_series(tmp_path, hu, TIMES[:3])
    shutil.copy(paths[0], tmp_path / "copy_of_first")
    series = assemble_only(tmp_path)
    np.testing.assert_array_equal(series.data, hu)
    assert any("duplicate" in w for w in series.warnings)


# ----------------------------------------------------------------------------- aborted scans

def write_without(root, hu, missing, times=TIMES):
    """Write ``hu`` (t, z, y, x) leaving out the (t, z) images in ``missing``; the UIDs (t, z)."""
    paths, uids, _ = write_perfusion_series(root, hu, times[:hu.shape[0]])
    for t, z in missing:
        paths[t * hu.shape[1] + z].unlink()
    return uids


@pytest.mark.parametrize("missing, kept, warning", [
    ({(4, 2), (4, 3)}, 4,
     "last time point incomplete (2 of 4 slices): 1 time point left out (aborted scan?)"),
    ({(3, 3), (4, 1), (4, 2), (4, 3)}, 3,
     "last 2 time points incomplete (3, 1 of 4 slices): 2 time points left out (aborted scan?)"),
])
def test_incomplete_end_dropped_on_request_with_a_warning(tmp_path, missing, kept, warning):
    hu = random_hu((5, 4, 8, 8))
    uids = write_without(tmp_path, hu, missing)
    one_line_error(assemble_only, tmp_path,
                   match=r"^\d of 4 slice positions are incomplete \(fewer than 5 time points\)$")
    series = assemble_only(tmp_path, drop_incomplete_end=True)
    np.testing.assert_array_equal(series.data, hu[:kept])
    np.testing.assert_allclose(series.times, TIMES[:kept], atol=1e-6)
    np.testing.assert_array_equal(series.attributes["SOPInstanceUIDs"], uids[:kept])
    assert series.frames_left_out == 5 - kept
    assert series.warnings == [warning]


@pytest.mark.parametrize("missing", [{(2, 1)}, {(0, 3)}, {(1, 0), (4, 2)}])
def test_missing_image_before_the_end_is_refused_even_on_request(tmp_path, missing):
    """A gap in the middle, at the start, or in the middle besides an incomplete end."""
    write_without(tmp_path, random_hu((5, 4, 8, 8)), missing)
    message = one_line_error(assemble_only, tmp_path, drop_incomplete_end=True,
                             match=r"of 4 slice positions are incomplete \(fewer than 5 time")
    assert "left out" not in message


def test_gap_hidden_by_staggered_slice_times_is_refused(tmp_path):
    """Slices of a frame 0.4 s apart, frames 1.5 s apart: the first slice missing its third
    time point would fit between frames by time order alone, not by the frames' spread."""
    study, series_uid = generate_uid(), generate_uid()
    for t in range(5):
        for z in range(4):
            if (t, z) != (2, 0):
                ct_instance(tmp_path / f"{t}{z}", np.zeros((8, 8), np.int16),
                            position=(0.0, 0.0, 5.0 * z), time_s=100.0 + 1.5 * t + 0.4 * z,
                            study_uid=study, series_uid=series_uid)
    one_line_error(assemble_only, tmp_path, drop_incomplete_end=True,
                   match="1 of 4 slice positions are incomplete")


def test_too_few_whole_time_points_are_refused(tmp_path):
    write_without(tmp_path, random_hu((3, 2, 8, 8)), {(2, 1)})
    one_line_error(assemble_only, tmp_path, drop_incomplete_end=True,
                   match=r"1 of 2 slice positions are incomplete \(fewer than 3 time")


# ----------------------------------------------------------------------------- bad input

def test_missing_empty_and_non_dicom_inputs(tmp_path):
    one_line_error(scan, tmp_path / "nope", match="does not exist")
    one_line_error(scan, tmp_path, match="no files")
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    one_line_error(scan, tmp_path, match=r"no DICOM files .*: 2 files ignored")


def test_corrupt_header_alone_is_not_dicom(tmp_path):
    rng = np.random.default_rng(6)
    (tmp_path / "bad.dcm").write_bytes(bytes(128) + b"DICM" + rng.bytes(2000))
    found_error = one_line_error(scan, tmp_path, match="no DICOM files")
    assert "1 file ignored" in found_error


def test_mr_only(tmp_path):
    hu = random_hu((3, 2, 8, 8))
    write_perfusion_series(tmp_path, hu, TIMES[:3], modality="MR")
    found = scan(tmp_path)
    one_line_error(select, found, match="no CT perfusion series found.*modality MR")
    one_line_error(assemble, found.candidates[0], match="modality MR")


def test_single_time_point(tmp_path):
    write_perfusion_series(tmp_path, random_hu((1, 3, 8, 8)), TIMES[:1])
    found = scan(tmp_path)
    one_line_error(select, found, match="one time point per position")
    one_line_error(select, found, found.candidates[0].series_uid,
                   match="is not a CT perfusion series: one time point per position")
    one_line_error(assemble, found.candidates[0], match="one time point: not a perfusion")


def test_two_time_points_is_not_perfusion(tmp_path):
    write_perfusion_series(tmp_path, random_hu((2, 3, 8, 8)), TIMES[:2])
    one_line_error(select, scan(tmp_path), match="2 time points per position")


def test_mixed_rows(tmp_path):
    hu = random_hu((3, 2, 16, 16))
    paths, _, series_uid = write_perfusion_series(tmp_path, hu, TIMES[:3])
    study = scan(tmp_path).candidates[0].study_uid
    ct_instance(paths[0], np.zeros((12, 16), np.int16), position=slice_positions(2)[0],
                time_s=36000.0, study_uid=study, series_uid=series_uid)
    one_line_error(assemble_only, tmp_path, match=r"mixed image sizes.*12x16 \(1 image\)")


def test_mixed_orientation(tmp_path):
    hu = random_hu((3, 2, 16, 16))
    paths, _, series_uid = write_perfusion_series(tmp_path, hu, TIMES[:3])
    tilted = (1.0, 0.0, 0.0, 0.0, math.cos(0.2), math.sin(0.2))
    ct_instance(paths[-1], np.zeros((16, 16), np.int16), position=slice_positions(2)[1],
                time_s=36000.0 + TIMES[2], study_uid="1.2", series_uid=series_uid,
                orientation=tilted)
    one_line_error(assemble_only, tmp_path,
                   match="mixed image orientations in one series: 1 image not oriented like")


def test_missing_pixel_data(tmp_path):
    hu = random_hu((3, 2, 16, 16))
    paths, _, series_uid = write_perfusion_series(tmp_path, hu, TIMES[:3])
    ct_instance(paths[2], np.zeros((16, 16), np.int16), position=slice_positions(2)[0],
                time_s=36000.0 + TIMES[1], study_uid="1.2", series_uid=series_uid,
                with_pixels=False)
    one_line_error(assemble_only, tmp_path, match="has no pixel data")


@pytest.mark.filterwarnings("ignore:End of file reached")
@pytest.mark.parametrize("codec", [None, "rle"])
def test_truncated_file_in_series(tmp_path, codec):
    hu = random_hu((3, 2, 32, 32))
    kwargs = {"transfer_syntax": COMPRESSED[codec]} if codec else {}
    paths, _, _ = write_perfusion_series(tmp_path, hu, TIMES[:3], **kwargs)
    content = paths[3].read_bytes()
    paths[3].write_bytes(content[:len(content) - 700])
    one_line_error(assemble_only, tmp_path, match=f"{paths[3].name}.*truncated")


def test_corrupt_header_within_series(tmp_path):
    hu = random_hu((3, 2, 16, 16))
    paths, _, _ = write_perfusion_series(tmp_path, hu, TIMES[:3])
    garbage = np.random.default_rng(7).bytes(3000)
    paths[4].write_bytes(paths[4].read_bytes()[:132] + garbage)
    message = one_line_error(assemble_only, tmp_path,
                             match=r"1 of 2 slice positions are incomplete \(fewer than 3 time")
    assert "1 DICOM file in the input could not be read" in message


def test_ambiguous_instances_at_same_position_and_time(tmp_path):
    hu = random_hu((3, 2, 16, 16))
    _, _, series_uid = write_perfusion_series(tmp_path, hu, TIMES[:3])
    ct_instance(tmp_path / "extra", np.zeros((16, 16), np.int16),
                position=slice_positions(2)[1], time_s=36000.0 + TIMES[1] + 0.02,
                study_uid="1.2", series_uid=series_uid)
    one_line_error(assemble_only, tmp_path,
                   match="ambiguous series: 1 extra instance at the same slice")


def test_no_times(tmp_path):
    hu = random_hu((3, 2, 8, 8))
    write_perfusion_series(tmp_path / "order", hu, TIMES[:3], time_tag="TriggerTime",
                           acquisition_number=1)
    one_line_error(assemble_only, tmp_path / "order",
                   match="no AcquisitionTime or ContentTime: .*AcquisitionNumber")
    study, series_uid = generate_uid(), generate_uid()
    for t in range(3):
        for z, position in enumerate(slice_positions(2)):
            ct_instance(tmp_path / "none" / f"{t}{z}", np.zeros((8, 8), np.int16),
                        position=position, time_s=None, study_uid=study, series_uid=series_uid)
    one_line_error(assemble, scan(tmp_path / "none").candidates[0],
                   match="frame times unknown")


def test_non_uniform_slice_spacing(tmp_path):
    study, series_uid = generate_uid(), generate_uid()
    for t in range(3):
        for z in (0.0, 5.0, 15.0):                             # a missing slice at 10 mm
            ct_instance(tmp_path / f"{t}_{z}", np.zeros((8, 8), np.int16), position=(0, 0, z),
                        time_s=100.0 + t, study_uid=study, series_uid=series_uid)
    one_line_error(assemble_only, tmp_path, match="non-uniform slice spacing: gaps from 5.00")


def test_sheared_stack_from_gantry_tilt(tmp_path):
    study, series_uid = generate_uid(), generate_uid()
    for t in range(3):
        for z in range(3):
            position = (0.0, -16.0 + 2.0 * z, 5.0 * z)          # y shifts with z: tilted
            ct_instance(tmp_path / f"{t}{z}", np.zeros((8, 8), np.int16), position=position,
                        time_s=100.0 + t, study_uid=study, series_uid=series_uid,
                        orientation=AXIAL)
    one_line_error(assemble_only, tmp_path, match="shifted in-plane by up to 4.00 mm")
