import numpy as np
import pytest
from scipy import ndimage

from tests.support.head_model import (
    CALC,
    CSF,
    GM,
    VENTRICLE,
    VESSEL,
    WM,
    bolus_shape,
    correlated_noise,
    make_head,
    rigid_motion,
)
from triage.base.errors import InputError
from triage.imaging.motion import correct_motion
from triage.imaging.series import PerfusionSeries

SHAPE, PIXEL_MM, SLICE_MM = (12, 128, 128), 1.875, 5.0
N_FRAMES = 14
MOTIONS = {  # frame: head motion (rotation deg about x, y, z; translation mm)
    4: rigid_motion((0, 0, 0), (3, -2, 0)),
    7: rigid_motion((0, 0, 3), (2, 0, 0)),
    10: rigid_motion((2, 0, 0), (0, 1, 2)),
    12: rigid_motion((0, 0, 0), (15, 0, 0)),  # jerk: must be excluded
}


@pytest.fixture(scope="module")
def still_head():
    return make_head(SHAPE, PIXEL_MM, SLICE_MM, supersample=(2, 1, 1))


@pytest.fixture(scope="module")
def moving_study(still_head):
    """Noise-free still frames (truth), noisy frames with the head moved in MOTIONS frames."""
    times = np.arange(N_FRAMES) * 2.0
    bolus = bolus_shape(times)
    moved = {
        k: make_head(SHAPE, PIXEL_MM, SLICE_MM, motion=m, supersample=(2, 1, 1)) for k, m in MOTIONS.items()
    }
    truth = np.stack([still_head.image(b) for b in bolus])
    frames = np.stack([moved.get(i, still_head).image(b) for i, b in enumerate(bolus)])
    frames += correlated_noise(frames.shape, 8.0, np.random.default_rng(7))
    return times, truth, frames


def _series(frames, times, geometry):
    return PerfusionSeries(
        data=frames.copy(), times=times.copy(), geometry=geometry, study_uid="1", series_uid="2"
    )


def _true_displacement_mm(head, motion):
    """Largest displacement of a brain-surface voxel centre under ``motion`` (model coordinates)."""
    brain = np.isin(head.labels, [CSF, GM, WM, VENTRICLE, VESSEL, CALC])
    z, y, x = np.nonzero(brain & ~ndimage.binary_erosion(brain))
    points = np.stack([
        (x + 0.5) * PIXEL_MM - SHAPE[2] * PIXEL_MM / 2,
        (y + 0.5) * PIXEL_MM - SHAPE[1] * PIXEL_MM / 2,
        (z + 0.5) * SLICE_MM - SHAPE[0] * SLICE_MM / 2,
        np.ones(x.size),
    ])
    return float(np.sqrt((((motion @ points) - points)[:3] ** 2).sum(axis=0)).max())


@pytest.fixture(scope="module")
def input_series(moving_study, still_head):
    times, _, frames = moving_study
    return _series(frames, times, still_head.geometry)


@pytest.fixture(scope="module")
def corrected(input_series):
    return correct_motion(input_series)


def test_displacement_matches_known_motion(corrected, still_head):
    _, report = corrected
    for frame, motion in MOTIONS.items():
        truth = _true_displacement_mm(still_head, motion)
        assert abs(report.displacement_mm[frame] - truth) <= max(0.5, 0.15 * truth), frame
    still = [i for i in range(N_FRAMES) if i not in MOTIONS]
    assert report.displacement_mm[still].max() < 0.3
    assert report.corrected_frames == [4, 7, 10]
    assert report.max_displacement_mm == pytest.approx(report.displacement_mm.max())


def test_jerk_frame_is_excluded_and_reported(corrected, moving_study, input_series):
    series, report = corrected
    times = moving_study[0]
    assert report.excluded_frames == [12]
    assert series.data.shape[0] == N_FRAMES - 1
    assert np.shares_memory(series.data, input_series.data)  # no copy of the 4D array
    np.testing.assert_array_equal(series.times, np.delete(times, 12))
    assert any("frames 12 moved" in w for w in report.warnings)


def test_correction_removes_misalignment(corrected, moving_study, still_head):
    series, report = corrected
    _, truth, frames = moving_study
    brain = np.isin(still_head.labels, [GM, WM])
    brain[:2] = brain[-2:] = False  # slices that z motion moves out of the field of view
    noise_floor = np.abs(frames[0] - truth[0])[brain].mean()
    kept = [i for i in range(N_FRAMES) if i not in report.excluded_frames]
    for frame in report.corrected_frames:
        before = np.abs(frames[frame] - truth[frame])[brain].mean()
        after = np.abs(series.data[kept.index(frame)] - truth[frame])[brain].mean()
        assert after <= noise_floor + 0.25 * (before - noise_floor), frame
    np.testing.assert_array_equal(series.data[kept.index(3)], frames[3])  # still frames untouched


def test_still_series_is_left_unchanged(moving_study, still_head):
    times, truth, _ = moving_study
    frames = truth + correlated_noise(truth.shape, 8.0, np.random.default_rng(11))
    series, report = correct_motion(_series(frames, times, still_head.geometry))
    assert report.corrected_frames == [] and report.excluded_frames == []
    assert report.max_displacement_mm < 0.3
    np.testing.assert_array_equal(series.data, frames)
    assert report.warnings == []
    np.testing.assert_array_equal(series.times, times)


def test_blank_frame_fails_registration_and_is_removed(moving_study, still_head):
    times, truth, _ = moving_study
    frames = truth + correlated_noise(truth.shape, 8.0, np.random.default_rng(5))
    frames[6] = -1000.0
    series, report = correct_motion(_series(frames, times, still_head.geometry))
    assert report.excluded_frames == [6]
    assert np.isnan(report.displacement_mm[6])
    assert any("failed for frames 6;" in w for w in report.warnings)
    np.testing.assert_array_equal(series.data[6], frames[7])


def test_bad_input_is_reported(moving_study, still_head):
    times, _, frames = moving_study
    with pytest.raises(InputError):
        correct_motion(_series(frames[0], times, still_head.geometry))
    with pytest.raises(InputError):
        correct_motion(_series(frames, times, still_head.geometry), reference_frame=N_FRAMES)
    with pytest.raises(InputError, match="moved more than"):
        correct_motion(_series(frames, times, still_head.geometry), exclude_above_mm=0.01)


def test_sub_millimetre_motion_is_not_screened_as_still(still_head):
    """The linearised still-frame screen must pass a 0.8 mm shift on to registration."""
    times = np.arange(N_FRAMES) * 2.0
    bolus = bolus_shape(times)
    shifted = make_head(SHAPE, PIXEL_MM, SLICE_MM, motion=rigid_motion((0, 0, 0), (0.8, 0, 0)), supersample=(2, 1, 1))
    frames = np.stack([(shifted if i == 6 else still_head).image(b) for i, b in enumerate(bolus)])
    frames += correlated_noise(frames.shape, 8.0, np.random.default_rng(3))
    _, report = correct_motion(_series(frames, times, still_head.geometry))
    assert report.displacement_mm[6] == pytest.approx(0.8, abs=0.25)
    assert report.corrected_frames == [6]
