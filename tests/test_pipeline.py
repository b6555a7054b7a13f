"""Pipeline helpers tested alone."""

import numpy as np

from triage.imaging.motion import MotionReport
from triage.imaging.pipeline import peak_enhancement


def test_peak_enhancement_ignores_resampled_frames():
    enhancement = np.zeros((14, 1, 4, 4), np.float32)
    enhancement[5, 0, 1, 1] = 40.0   # tissue peak in a frame left as acquired
    enhancement[7, 0, 2, 2] = 500.0  # interpolated skull edge in a realigned frame
    # Input frame 3 was removed; input frame 8 (now at position 7) was realigned.
    motion = MotionReport(np.zeros(15), 0.0, excluded_frames=[3], corrected_frames=[8])
    peak = peak_enhancement(enhancement, motion)
    assert peak[0, 1, 1] == 40.0 and peak[0, 2, 2] == 0.0


def test_peak_enhancement_uses_every_frame_when_too_few_are_clean():
    enhancement = np.zeros((12, 1, 2, 2), np.float32)
    enhancement[4, 0, 0, 0] = 99.0
    motion = MotionReport(np.zeros(12), 3.0, corrected_frames=list(range(6)))
    assert peak_enhancement(enhancement, motion)[0, 0, 0] == 99.0


def test_plausibility_warns_when_normal_brain_looks_delayed_or_early():
    from triage.imaging.pipeline import plausibility_warnings

    parenchyma = np.ones((2, 8, 8), bool)
    assert plausibility_warnings(np.full((2, 8, 8), 1.0, np.float32), parenchyma) == []
    for wrong in (-5.0, 9.0):
        (line,) = plausibility_warnings(np.full((2, 8, 8), wrong, np.float32), parenchyma)
        assert "implausible maps" in line and "AIF" in line


def test_guide_lattice_shares_the_fit_of_each_cell_corner():
    """At 0.94 mm pixels the 2 mm lattice has 2 px cells: each voxel is represented by its cell's
    corner, or by itself where the corner lies outside the mask; slices are never merged."""
    from triage.imaging.pipeline import guide_lattice

    mask = np.ones((2, 4, 4), bool)
    mask[0, 2, 2] = False  # a corner outside the mask
    representative = guide_lattice(mask, (0.94, 0.94, 5.0), 2.0)
    voxels = np.argwhere(mask)
    index = {tuple(v): i for i, v in enumerate(voxels)}
    for i, (z, y, x) in enumerate(voxels):
        corner = (z, y - y % 2, x - x % 2)
        assert representative[i] == index.get(corner, i)
    assert representative[index[(0, 3, 3)]] == index[(0, 3, 3)]  # its corner (0, 2, 2) is outside
    assert np.array_equal(guide_lattice(mask, (0.5, 0.5, 5.0), 0.4), np.arange(mask.sum()))  # pitch < pixel
