"""Property-based tests (hypothesis) of the header parsing and the series-completion logic.

Header parsing: whatever bytes a sender puts in the attributes that the readers look at, the
readers return their documented values (None or a finite number, a header or the reason a file
is ignored) and raise nothing. Completion: for any arrival order, repeats and subset of a grid
of (slice position, time point) instances, :func:`dicom_node.completion.assess` declares the
series complete exactly when every slice position has as many time points (so a whole grid is
always complete; which time points they are is not compared across positions), and
:func:`decide` never takes back an ANALYSE.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.tag import Tag

from dicom_node.completion import (
    ANALYSE,
    CADENCE_FLOOR_S,
    Assessment,
    assess,
    decide,
    required_quiet,
)
from dicom_node.instance import CT_IMAGE_STORAGE, InstanceInfo, instance_info
from tests.support.dicom_factory import AXIAL, ct_instance, slice_positions
from triage.base.dicom_header import FileHeader, parse_age_years, parse_dt_time, parse_tm
from triage.imaging.assembly import read_file_header

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
TEXT = st.text(max_size=30)
# Values a sender may put in an element: printable junk, numbers, backslash lists, any bytes.
VALUE_BYTES = st.one_of(
    st.binary(max_size=40),
    st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str),
                       st.integers(-10**30, 10**30).map(str), st.sampled_from(["", " ", "nan", "-inf", "1e999"])),
             max_size=7).map(lambda values: "\\".join(values).encode("latin-1")),
    TEXT.map(lambda text: text.encode("utf-8")),
)
INSTANCE_KEYWORDS = ("AcquisitionTime", "ContentTime", "ImagePositionPatient", "ImageOrientationPatient",
                     "AcquisitionNumber", "NumberOfFrames", "NumberOfTemporalPositions",
                     "ImagesInAcquisition", "Modality", "ImageType", "PatientID", "SeriesDescription")
PLANE_KEYWORDS = ("AcquisitionTime", "ContentTime", "AcquisitionDateTime", "ImagePositionPatient",
                  "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "TemporalPositionIndex",
                  "AcquisitionNumber", "RescaleSlope", "RescaleIntercept", "ImageType", "Modality")
VRS = st.sampled_from(["DS", "IS", "TM", "DT", "CS", "LO", "SH", "UI", "US", "FD", "OB", "UN"])


def _finite_or_none(value) -> bool:
    if value is None:
        return True
    return all(math.isfinite(v) for v in (value if isinstance(value, tuple) else (value,)))


@SETTINGS
@given(TEXT)
def test_time_and_age_strings_give_none_or_a_finite_number(text):
    for parse in (parse_tm, parse_dt_time):
        seconds = parse(text)
        assert seconds is None or (math.isfinite(seconds) and 0.0 <= seconds < 86401.0)
    age = parse_age_years(text)
    assert age is None or (math.isfinite(age) and age >= 0.0)


@SETTINGS
@given(st.dictionaries(st.sampled_from(INSTANCE_KEYWORDS), st.tuples(VRS, VALUE_BYTES), max_size=8))
def test_instance_info_of_arbitrary_values_never_raises(elements):
    """The node's record of a received instance (raw elements, as received): malformed
    optional attributes become None or empty, never an exception."""
    ds = Dataset()
    for keyword, uid in (("SOPClassUID", CT_IMAGE_STORAGE), ("StudyInstanceUID", "1.2"),
                         ("SeriesInstanceUID", "1.2.3"), ("SOPInstanceUID", "1.2.3.4")):
        setattr(ds, keyword, uid)
    for keyword, (vr, value) in elements.items():
        tag = Tag(tag_for_keyword(keyword))
        ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    info = instance_info(ds, Path("/spool/x.dcm"))
    assert info.sop_instance_uid == "1.2.3.4"
    assert _finite_or_none(info.position) and _finite_or_none(info.orientation)
    assert info.position is None or len(info.position) == 3
    assert info.orientation is None or len(info.orientation) == 6
    assert _finite_or_none(info.time_s) and info.number_of_frames >= 1


@SETTINGS
@given(st.dictionaries(st.sampled_from(PLANE_KEYWORDS), st.tuples(VRS, VALUE_BYTES), max_size=8))
def test_read_file_header_of_arbitrary_values_gives_a_header_or_a_reason(elements):
    """A file whose plane attributes hold anything: :func:`read_file_header` returns a header
    whose geometry and times are None or finite numbers, or a one-line reason; it raises
    nothing."""
    with tempfile.TemporaryDirectory() as folder:
        path = ct_instance(Path(folder) / "x.dcm", np.zeros((4, 4), np.int16), position=(0, 0, 0),
                           time_s=36000.0, study_uid="1.2", series_uid="1.2.3")
        data = path.read_bytes()
        ds = pydicom.dcmread(path)
        for keyword, (vr, value) in elements.items():
            tag = Tag(tag_for_keyword(keyword))
            if len(value) % 2:
                value += b" "
            ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
        try:
            ds.save_as(path)
        except Exception:            # pydicom cannot even write some of these: keep the original
            path.write_bytes(data)
        read = read_file_header(path)
    if isinstance(read, str):
        assert read and "\n" not in read
        return
    assert isinstance(read, FileHeader) and len(read.planes) == 1
    plane = read.planes[0]
    for value in (plane.position, plane.orientation, plane.pixel_spacing, plane.acquisition_time,
                  plane.content_time, plane.thickness, plane.slope, plane.intercept):
        assert _finite_or_none(value), plane


# Completion

N_POSITIONS, N_TIMES = 5, 6      # with at most 6 positions, uneven integer gaps exceed 10 %


def _record(t: int, z: int, copy: int = 0) -> InstanceInfo:
    """The instance at time point t, position z (a repeat when ``copy``: same image again)."""
    position = slice_positions(N_POSITIONS, 5.0, AXIAL)[z]
    return InstanceInfo(
        sop_instance_uid=f"1.2.3.{t}.{z}", sop_class_uid=CT_IMAGE_STORAGE, study_uid="1.2",
        series_uid="1.2.3", path=Path(f"/spool/{t}_{z}.dcm"), modality="CT",
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"), position=tuple(float(v) for v in position),
        orientation=AXIAL, time_s=36000.0 + 1.5 * t + 0.1 * z + 0.001 * copy)


GRID = [(t, z) for t in range(N_TIMES) for z in range(N_POSITIONS)]


@st.composite
def arrivals(draw):
    """A subset of the grid, in any order, some instances sent again."""
    present = draw(st.sets(st.sampled_from(GRID), min_size=1))
    order = draw(st.permutations(sorted(present)))
    repeats = draw(st.lists(st.sampled_from(order), max_size=5))
    sent = [(t, z, 0) for t, z in order] + [(t, z, 1) for t, z in repeats]
    return present, draw(st.permutations(sent))


def _equal_counts(present: set[tuple[int, int]]) -> bool:
    """What :func:`assess` calls complete: every present position has the same number (at
    least 3) of time points, and the positions are evenly spaced."""
    per_position = {z: sum(1 for _, p in present if p == z) for _, z in present}
    positions = sorted(per_position)
    gaps = set(np.diff(positions).tolist())
    return (len(set(per_position.values())) == 1 and min(per_position.values()) >= 3
            and (len(positions) < 3 or len(gaps) == 1))


@SETTINGS
@given(arrivals())
def test_complete_exactly_when_every_position_has_as_many_time_points(case):
    present, sent = case
    a = assess([_record(t, z, copy) for t, z, copy in sent])
    assert a.complete == _equal_counts(present)
    if a.complete:
        assert a.n_positions * a.n_times == len(present)
    assert a == assess([_record(t, z, copy) for t, z, copy in reversed(sent)])    # order-free


@SETTINGS
@given(st.sets(st.integers(0, N_TIMES - 1), min_size=3), st.sets(st.integers(0, N_POSITIONS - 1), min_size=1),
       st.data())
def test_a_whole_grid_is_complete_in_any_order(times, positions, data):
    """Every chosen position at every chosen time (evenly spaced positions), in any order:
    complete, with that many positions and time points."""
    positions = sorted(positions)
    if len(positions) >= 3 and len(set(np.diff(positions).tolist())) > 1:
        positions = positions[:2]
    order = data.draw(st.permutations([(t, z) for t in times for z in positions]))
    a = assess([_record(t, z) for t, z in order])
    assert a.complete and (a.n_positions, a.n_times) == (len(positions), len(times))


@SETTINGS
@given(st.sets(st.integers(0, N_POSITIONS - 1), min_size=1, max_size=N_POSITIONS - 1), st.data())
def test_aborted_scan_keeps_its_whole_time_points(lost, data):
    """The full grid but the last time point lacks some positions, in any order: incomplete,
    and its first N_TIMES - 1 time points are whole."""
    kept = [(t, z) for t, z in GRID if not (t == N_TIMES - 1 and z in lost)]
    order = data.draw(st.permutations(kept))
    a = assess([_record(t, z) for t, z in order])
    assert not a.complete and a.is_perfusion and a.whole_times == N_TIMES - 1


ASSESSMENTS = st.builds(
    Assessment, classification=st.sampled_from(["CTP", "other"]), reason=TEXT,
    n_instances=st.integers(0, 50), complete=st.booleans(), whole_times=st.integers(0, 10),
    announced=st.booleans())
SECONDS = st.floats(0, 1e5, allow_nan=False)


@SETTINGS
@given(ASSESSMENTS, st.lists(SECONDS, min_size=2, max_size=6), SECONDS, SECONDS)
def test_decide_never_takes_back_an_analysis(assessment, quiet, quiet_seconds, warn_seconds):
    decisions = [decide(assessment, q, quiet_seconds=quiet_seconds,
                        incomplete_warn_seconds=warn_seconds) for q in sorted(quiet)]
    if ANALYSE in decisions:
        assert assessment.complete and assessment.is_perfusion
        assert set(decisions[decisions.index(ANALYSE):]) == {ANALYSE}


@SETTINGS
@given(ASSESSMENTS, st.lists(SECONDS, max_size=8), st.booleans(), SECONDS)
def test_required_quiet(assessment, arrivals_s, sending, quiet_seconds):
    wait = required_quiet(assessment, sorted(arrivals_s), sending=sending, quiet_seconds=quiet_seconds)
    if assessment.announced:
        assert wait == 0.0
    else:
        assert wait >= CADENCE_FLOOR_S and (not sending or wait >= quiet_seconds)
