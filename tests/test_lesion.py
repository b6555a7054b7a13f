"""Lesion masks and volumes on maps with known values."""

import numpy as np
import pytest

from models.profiles import load_profile
from triage.base.grid import Geometry
from triage.imaging.lesion import drop_small_clusters, segment_lesion, split_hemispheres

GEOMETRY = Geometry(spacing=(1.0, 1.0, 5.0), origin=(0.0, 0.0, 0.0))  # 5 µL voxels... 0.005 mL


def ellipse_brain(shape=(6, 120, 100), angle_deg=0.0):
    z, y, x = np.indices(shape)
    cy, cx = (shape[1] - 1) / 2, (shape[2] - 1) / 2
    a = np.radians(angle_deg)
    u = (x - cx) * np.cos(a) - (y - cy) * np.sin(a)
    v = (x - cx) * np.sin(a) + (y - cy) * np.cos(a)
    return (u / 40) ** 2 + (v / 55) ** 2 <= 1


def maps_with_lesion(brain, lesion_left=True):
    cbf = np.where(brain, 50.0, 0).astype(np.float32)
    tmax = np.where(brain, 1.0, 0).astype(np.float32)
    z, y, x = np.indices(brain.shape)
    centre_x = 75 if lesion_left else 25  # identity direction: +x is patient left
    hypo = brain & ((x - centre_x) ** 2 + (y - 60) ** 2 <= 15**2)
    core = brain & ((x - centre_x) ** 2 + (y - 60) ** 2 <= 6**2)
    tmax[hypo] = 8.0
    tmax[core] = 12.0
    cbf[hypo] = 35.0
    cbf[core] = 10.0  # rCBF 0.2
    return cbf, tmax, core, hypo


@pytest.mark.parametrize("lesion_left", [True, False])
def test_volumes_side_and_reference(lesion_left):
    brain = ellipse_brain()
    cbf, tmax, core, hypo = maps_with_lesion(brain, lesion_left)
    result = segment_lesion(cbf, tmax, brain, brain, GEOMETRY, load_profile("rapid-like"))
    v = GEOMETRY.voxel_volume_ml
    assert result.affected_side == ("left" if lesion_left else "right")
    assert result.reference_cbf == pytest.approx(50.0)
    assert "Tmax < 4 s" in result.reference
    assert np.array_equal(result.core, core)
    assert np.array_equal(result.hypoperfused, hypo)
    assert np.array_equal(result.severe, core)
    assert result.volumes["core_ml"] == pytest.approx(core.sum() * v)
    assert result.volumes["tmax6_ml"] == pytest.approx(hypo.sum() * v)
    assert result.volumes["mismatch_ml"] == pytest.approx((hypo.sum() - core.sum()) * v)
    assert result.volumes["mismatch_ratio"] == pytest.approx(hypo.sum() / core.sum())
    assert result.volumes["hir"] == pytest.approx(core.sum() / hypo.sum())


def test_core_requires_hypoperfusion_in_profile():
    brain = ellipse_brain()
    cbf, tmax, _, _ = maps_with_lesion(brain)
    cbf[3, 60, 20:30] = 5.0  # low CBF but normal Tmax in the other hemisphere
    cbf[3, 61, 20:30] = 5.0
    result = segment_lesion(cbf, tmax, brain, brain, GEOMETRY, load_profile("rapid-like"))
    assert not result.core[3, 60, 20:30].any()


def test_no_lesion_gives_zero_and_null_ratios():
    brain = ellipse_brain()
    cbf = np.where(brain, 50.0, 0).astype(np.float32)
    tmax = np.where(brain, 1.0, 0).astype(np.float32)
    result = segment_lesion(cbf, tmax, brain, brain, GEOMETRY, load_profile("rapid-like"))
    assert result.affected_side is None
    assert result.volumes["core_ml"] == 0 and result.volumes["tmax6_ml"] == 0
    assert result.volumes["mismatch_ratio"] is None and result.volumes["hir"] is None


@pytest.mark.parametrize("angle", [-12.0, 0.0, 9.0])
def test_hemispheres_follow_a_tilted_midline(angle):
    brain = ellipse_brain(angle_deg=angle)
    split = split_hemispheres(brain, GEOMETRY)
    assert split.angle_deg == pytest.approx(angle, abs=1.5)
    left, right = np.count_nonzero(brain & split.left), np.count_nonzero(brain & ~split.left)
    assert abs(left - right) / (left + right) < 0.02
    assert split.left[0, 60, 95] and not split.left[0, 60, 5]


def test_hemispheres_follow_the_direction_cosines():
    brain = ellipse_brain()
    flipped = Geometry(spacing=(1.0, 1.0, 5.0), origin=(0, 0, 0), direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    split = split_hemispheres(brain, flipped)
    assert split.left[0, 60, 5] and not split.left[0, 60, 95]  # +x index now runs to patient right


def test_drop_small_clusters():
    mask = np.zeros((5, 20, 20), bool)
    mask[1:4, 2:8, 2:8] = True  # 108 voxels
    mask[2, 15, 15] = True  # island
    cleaned = drop_small_clusters(mask, 10)
    assert cleaned.sum() == 108 and not cleaned[2, 15, 15]
