"""Series classification and completeness (dicom_node.completion) on instance records and on
real Enhanced CT files."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicom_node.completion import (
    ANALYSE,
    ANALYSE_WHOLE_TIMES,
    CTP,
    IGNORE,
    INCOMPLETE,
    OTHER,
    REPORT_INCOMPLETE,
    WAIT,
    announced_images,
    assess,
    decide,
    first_time_point_files,
    frame_planes,
    is_multiframe,
    required_quiet,
)
from dicom_node.instance import CT_IMAGE_STORAGE, InstanceInfo, header_text, header_values, instance_info
from tests.support.dicom_factory import AXIAL, ct_instance, enhanced_ct_frame_object, slice_positions

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def series(n_positions=4, n_times=5, *, orientation=AXIAL, spacing=5.0, start=36000.0, interval=1.5,
           skip=(), modality="CT", sop_class=CT_IMAGE_STORAGE, image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
           position_jitter=0.0, time_jitter=0.0):
    """Instance records of a (times x positions) grid, leaving out the (t, z) pairs in ``skip``."""
    rng = np.random.default_rng(1)
    positions = slice_positions(n_positions, spacing, orientation)
    normal = np.cross(orientation[:3], orientation[3:])
    infos = []
    for t in range(n_times):
        for z in range(n_positions):
            if (t, z) in skip:
                continue
            position = positions[z] + rng.uniform(-position_jitter, position_jitter) * normal
            infos.append(InstanceInfo(
                sop_instance_uid=f"1.2.3.{t}.{z}", sop_class_uid=sop_class, study_uid="1.2.3",
                series_uid="1.2.3.4", path=Path(f"/spool/{t}_{z}.dcm"), modality=modality,
                image_type=image_type, position=tuple(float(v) for v in position),
                orientation=orientation, time_s=start + t * interval + z * 0.1
                + rng.uniform(-time_jitter, time_jitter)))
    return infos


def test_complete_perfusion_grid():
    a = assess(series(4, 5))
    assert (a.classification, a.complete, a.n_positions, a.n_times, a.n_instances) == (CTP, True, 4, 5, 20)
    assert a.summary() == "CTP, complete: 4 positions x 5 time points"


def test_tolerances_of_the_assembly_group_positions_and_times():
    """Positions within 0.1 mm along the normal are one slice; times within 0.05 s one time point
    (a repeated image at the same position and time does not count twice)."""
    infos = series(4, 5, position_jitter=0.04, time_jitter=0.01)
    repeated = infos[3]
    infos.append(InstanceInfo(**{**repeated.__dict__, "sop_instance_uid": "9.9",
                                 "time_s": repeated.time_s + 0.02}))
    a = assess(infos)
    assert (a.n_positions, a.n_times, a.complete) == (4, 5, True)


def test_oblique_stack_is_grouped_along_its_normal():
    tilted = (1.0, 0.0, 0.0, 0.0, np.cos(0.3), -np.sin(0.3))
    a = assess(series(6, 4, orientation=tilted))
    assert (a.n_positions, a.n_times, a.complete) == (6, 4, True)


def test_missing_instance_makes_the_grid_incomplete():
    a = assess(series(4, 5, skip={(2, 2)}))
    assert a.classification == CTP and not a.complete and a.whole_times == 0
    assert a.missing == "1 of 4 positions lack time points (1 images missing of 20)"


@pytest.mark.parametrize("skip, whole, missing", [
    ({(4, 2), (4, 3)}, 4, "last time point incomplete (2 of 4 slices)"),
    ({(3, 3), (4, 1), (4, 2), (4, 3)}, 3, "last 2 time points incomplete (3, 1 of 4 slices)"),
    ({(1, 2)}, 0, "1 of 4 positions lack time points (1 images missing of 20)"),   # a middle gap
    ({(0, 1)}, 0, "1 of 4 positions lack time points (1 images missing of 20)"),   # the first
])
def test_images_missing_only_at_the_end_leave_whole_time_points(skip, whole, missing):
    """Slices of a frame are 0.1 s apart (``series``): the K earliest images of each position
    line up as frames only when nothing is missing before the end."""
    a = assess(series(4, 5, skip=skip))
    assert (a.complete, a.whole_times, a.missing) == (False, whole, missing)


def test_missing_middle_position_is_seen_in_the_slice_gaps():
    a = assess(series(5, 4, skip={(t, 2) for t in range(4)}))
    assert a.classification == CTP and not a.complete
    assert "slice position is missing" in a.missing


@pytest.mark.parametrize("kwargs, reason", [
    (dict(n_times=1), "single time point (NCCT or CTA)"),
    (dict(n_times=2), "2 time points (perfusion needs at least 3)"),
    (dict(image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")), "LOCALIZER"),
    (dict(modality="MR", sop_class=MR_IMAGE_STORAGE), "not CT (MR)"),
])
def test_other_series_are_classified_with_a_reason(kwargs, reason):
    a = assess(series(**kwargs))
    assert (a.classification, a.reason) == (OTHER, reason)
    assert decide(a, 10.0, quiet_seconds=3.0, incomplete_warn_seconds=30.0) == IGNORE


def test_images_without_position_or_time_are_not_perfusion():
    infos = series(3, 4)
    infos[0] = InstanceInfo(**{**infos[0].__dict__, "position": None})
    assert "1 of 12 images without image position" in assess(infos).reason
    infos = series(3, 4)
    infos[5] = InstanceInfo(**{**infos[5].__dict__, "time_s": None})
    assert assess(infos).reason == "1 of 12 images without AcquisitionTime/ContentTime"


def test_decision_waits_for_quiet_then_analyses_a_complete_series():
    complete, holed = assess(series(4, 5)), assess(series(4, 5, skip={(2, 0)}))
    options = dict(quiet_seconds=3.0, incomplete_warn_seconds=12.0)
    assert decide(complete, 2.9, **options) == WAIT
    assert decide(complete, 3.0, **options) == ANALYSE
    assert decide(holed, 2.0, **options) == WAIT
    assert decide(holed, 5.0, **options) == INCOMPLETE
    assert decide(holed, 12.0, **options) == REPORT_INCOMPLETE


def test_aborted_scan_is_analysed_on_its_whole_time_points_after_the_warning_time():
    aborted, too_short = assess(series(4, 5, skip={(4, 3)})), assess(series(4, 3, skip={(2, 3)}))
    options = dict(quiet_seconds=3.0, incomplete_warn_seconds=12.0)
    assert decide(aborted, 5.0, **options) == INCOMPLETE
    assert decide(aborted, 12.0, **options) == ANALYSE_WHOLE_TIMES
    assert too_short.whole_times == 2        # fewer than MIN_PERFUSION_FRAMES: not analysed
    assert decide(too_short, 12.0, **options) == REPORT_INCOMPLETE


def _announcing(infos, **fields):
    return [replace(info, **fields) for info in infos]


def test_a_series_holding_the_announced_image_count_needs_no_quiet():
    """NumberOfTemporalPositions x positions (or ImagesInAcquisition) reached: complete at once,
    whatever the sender does; one image short, or a count that does not fit, falls back to the
    sender's pace."""
    whole = assess(_announcing(series(4, 5), temporal_positions=5))
    assert whole.announced and announced_images(_announcing(series(4, 5), temporal_positions=5), 4) == 20
    assert required_quiet(whole, [0.0, 0.01, 5.0], sending=True, quiet_seconds=3.0) == 0.0
    assert assess(_announcing(series(4, 5), images_in_acquisition=20)).announced
    # A vendor counting one time point's images in ImagesInAcquisition: never trusted.
    per_time_point = assess(_announcing(series(4, 5), images_in_acquisition=4))
    assert per_time_point.complete and not per_time_point.announced
    # Six time points announced, five received (the grid is whole, the series is not).
    early = assess(_announcing(series(4, 5), temporal_positions=6))
    assert early.complete and not early.announced
    mixed = _announcing(series(4, 5), temporal_positions=5)
    mixed[0] = replace(mixed[0], temporal_positions=None)
    assert announced_images(mixed, 4) is None


def test_quiet_needed_follows_the_senders_pace_and_waits_while_it_is_on_the_series():
    complete = assess(series(4, 5))
    assert not complete.announced
    steady = [0.01 * k for k in range(20)]                     # 100 images/s
    assert required_quiet(complete, steady, sending=False, quiet_seconds=3.0) == pytest.approx(0.3)
    slow = [1.5 * (k // 4) + 0.01 * k for k in range(20)]      # a time point every 1.5 s
    assert required_quiet(complete, slow, sending=False, quiet_seconds=3.0) == pytest.approx(4 * 1.51)
    # The association is still open on this series: at least the node's quiet period.
    assert required_quiet(complete, steady, sending=True, quiet_seconds=3.0) == 3.0
    assert required_quiet(complete, slow, sending=True, quiet_seconds=3.0) == pytest.approx(4 * 1.51)
    assert required_quiet(complete, [5.0], sending=False, quiet_seconds=3.0) == pytest.approx(0.3)


def test_enhanced_ct_frames_from_real_files(tmp_path):
    """Four Enhanced CT objects (one per time point, three frames each) make a 3 x 4 grid; without
    the frame planes they would have no position."""
    positions = slice_positions(3)
    stored = np.zeros((3, 8, 8), dtype=np.int16)
    paths = [enhanced_ct_frame_object(tmp_path / f"t{t}.dcm", stored, positions=positions,
                                      time_s=36000.0 + 2.0 * t, temporal_index=t + 1,
                                      study_uid="1.2.3", series_uid="1.2.3.9")
             for t in range(4)]
    infos = [instance_info(pydicom.dcmread(p, stop_before_pixels=True), p) for p in paths]
    assert all(is_multiframe(i) for i in infos)
    planes = {i.sop_instance_uid: frame_planes(i.path) for i in infos}
    a = assess(infos, planes)
    assert (a.classification, a.n_positions, a.n_times, a.complete) == (CTP, 3, 4, True)
    assert assess(infos).classification == OTHER


def test_first_time_point_files_are_the_earliest_at_each_position():
    """Jittered positions still group by slice; the first time point is missing at slice 2,
    so its earliest image is the second time point's."""
    infos = series(4, 5, skip={(0, 2)}, position_jitter=0.04, time_jitter=0.2)
    assert first_time_point_files(infos) == sorted(Path(f"/spool/{t}_{z}.dcm")
                                                   for t, z in ((0, 0), (0, 1), (1, 2), (0, 3)))


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_instance_info_reads_received_bytes_as_pydicom_converts_them(tmp_path, transfer_syntax):
    """The header facts read from a freshly decoded dataset's bytes equal those of pydicom's
    converted values, whatever the transfer syntax; a midnight time (0 s) is a time."""
    path = ct_instance(tmp_path / "a.dcm", np.zeros((4, 4), np.int16), position=(-1.5, 2.25, 30.0),
                       time_s=0.0, study_uid="1.2.3", series_uid="1.2.3.4", acquisition_number=7,
                       description="CT PERFUSION 4D", transfer_syntax=transfer_syntax)
    converted = pydicom.dcmread(path)
    for element in converted:
        pass                                   # every value converted by pydicom
    fresh = pydicom.dcmread(path)              # raw elements, as the receiver gets them
    assert instance_info(fresh, path) == instance_info(converted, path)
    info = instance_info(fresh, path)
    assert info.time_s == 0.0 and info.position == (-1.5, 2.25, 30.0) and info.acquisition_number == 7
    assert info.image_type and info.modality == "CT" and info.series_description == "CT PERFUSION 4D"
    assert tuple(map(float, header_values(fresh, "ImageOrientationPatient"))) == (1, 0, 0, 0, 1, 0)
    assert header_values(fresh, "NumberOfFrames") == () and header_text(fresh, "NumberOfFrames") == ""
