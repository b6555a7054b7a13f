import numpy as np
import pytest

from tests.support.head_model import (
    BONE,
    CALC,
    GM,
    VENTRICLE,
    VESSEL,
    WM,
    bolus_shape,
    correlated_noise,
    make_head,
)
from triage.base.errors import InputError
from triage.imaging.masks import segment_brain, segment_tissue

NOISE_HU = 8.0  # per voxel and frame at 256 x 256, spatially correlated


def _noisy_study(shape, pixel_mm, seed):
    head = make_head(shape, pixel_mm, supersample=(3, 1, 1))
    rng = np.random.default_rng(seed)
    times = np.arange(0.0, 40.0, 2.0)
    frames = np.stack([head.image(s) for s in bolus_shape(times)])
    frames += correlated_noise(frames.shape, NOISE_HU, rng)
    return head, frames


@pytest.fixture(scope="module")
def study_256():
    return _noisy_study((12, 256, 256), 0.9375, seed=3)


@pytest.fixture(scope="module")
def study_128():
    return _noisy_study((12, 128, 128), 1.875, seed=4)


def _segment(study, n_baseline):
    head, frames = study
    baseline = frames[:n_baseline].mean(axis=0)
    return head.labels, segment_tissue(baseline, head.geometry, (frames - baseline).max(axis=0))


def _dice(a, b):
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize(("grid", "n_baseline"), [("256", 1), ("256", 5), ("128", 5)])
def test_parenchyma_matches_grey_and_white_matter(study_256, study_128, grid, n_baseline):
    labels, masks = _segment(study_256 if grid == "256" else study_128, n_baseline)
    assert _dice(masks.parenchyma, (labels == GM) | (labels == WM)) >= 0.9
    ventricles = labels == VENTRICLE
    assert (ventricles & ~masks.parenchyma).sum() >= 0.9 * ventricles.sum()
    assert not (masks.parenchyma & (labels == VESSEL)).any()
    assert not (masks.parenchyma & (labels == CALC)).any()
    assert not (masks.parenchyma & (labels == BONE)).any()


def test_masks_find_their_tissue(study_256):
    labels, masks = _segment(study_256, 5)
    bone = labels == BONE
    assert (masks.bone & bone).sum() >= 0.9 * bone.sum()
    assert (masks.csf & (labels == VENTRICLE)).sum() >= 0.9 * (labels == VENTRICLE).sum()
    assert masks.vessels[labels == VESSEL].all()
    assert masks.calcification[labels == CALC].all()
    assert not (masks.calcification & bone).any()
    assert not (masks.brain & masks.bone).any()
    assert not (masks.brain & ~masks.head).any()
    assert masks.parenchyma.sum() <= masks.brain.sum()


def test_no_enhancement_image_gives_no_vessels(study_128):
    head, frames = study_128
    masks = segment_tissue(frames[:5].mean(axis=0), head.geometry)
    assert not masks.vessels.any()
    assert _dice(masks.parenchyma, (head.labels == GM) | (head.labels == WM)) >= 0.9


def test_brain_alone_is_the_brain_of_the_full_segmentation(study_128):
    head, frames = study_128
    image = frames[0]
    brain = segment_brain(image, head.geometry)
    assert brain.any() and np.array_equal(brain, segment_tissue(image, head.geometry).brain)


def test_bad_input_is_reported(study_128):
    head, frames = study_128
    with pytest.raises(InputError):
        segment_tissue(frames[0, 0], head.geometry)
    with pytest.raises(InputError):
        segment_tissue(frames[0], head.geometry, frames[0, :5])
    with pytest.raises(InputError):
        segment_tissue(np.full((4, 32, 32), -1000.0, np.float32), head.geometry)
