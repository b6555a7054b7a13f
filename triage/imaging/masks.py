"""Tissue masks from the pre-contrast baseline: head, bone, brain, CSF, vessels, calcification.

Volumes are counted in ``parenchyma`` only (docs/conventions.md): grey and white matter inside
the skull, without CSF, large vessels, calcifications or the skull's partial-volume edge.
All masks are bool ``(z, y, x)``. Slices are thick (often 5 mm) compared with the pixels, so
smoothing, filling and dilation act in-plane only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from triage.base.errors import InputError
from triage.base.grid import Geometry

# Air is about -1000 HU and the softest head tissue (fat) about -100 HU: -300 separates them
# even with partial volume at the skin.
HEAD_MIN_HU = -300.0
# Cortical bone is 700-1500 HU, brain and blood below 60 HU, so 150 HU (after light smoothing)
# finds the skull without picking up contrast-free soft tissue.
BONE_MIN_HU = 150.0
# Bone components smaller than this are not the skull (calcifications, noise specks).
SKULL_MIN_ML = 2.0
# Pixels eroded from the intracranial cavity: drops the skull's partial-volume edge (a voxel
# half bone reads several hundred HU) and the thin subarachnoid CSF next to it.
BRAIN_EROSION_PX = 1
# CSF is 0-10 HU, white matter 25-35 HU, grey matter 35-45 HU: 18 HU is about half-way from
# CSF to white matter, so a voxel more than half CSF (partial volume at a ventricle) falls below.
CSF_MAX_HU = 18.0
# Plausible brain tissue after smoothing; above 60 HU is calcification, acute blood or bone edge.
PARENCHYMA_MAX_HU = 60.0
# Calcifications are 70 HU and above; tissue, even acute haemorrhage edges, mostly below.
CALCIFICATION_MIN_HU = 70.0
# Calcifications are small: larger dense regions inside the brain are not called calcification
# (they stay out of the parenchyma through PARENCHYMA_MAX_HU).
CALCIFICATION_MAX_ML = 2.0
# Arteries and veins enhance by 100-500 HU at the bolus peak, brain tissue by 10-30 HU (plus
# about 2 noise SD for a maximum over time): 60 HU after smoothing separates them.
VESSEL_MIN_ENHANCEMENT_HU = 60.0
# In-plane Gaussian smoothing (sigma, mm) before thresholding tissue classes, averaged over
# brain voxels only so the skull does not bleed in: lowers the 7-12 HU per-frame noise without
# blurring the ventricle edges much.
TISSUE_SMOOTHING_MM = 2.0

# Cross-shaped 2D neighbourhood within each slice (slices are thick: no through-plane links).
IN_PLANE = np.zeros((3, 3, 3), bool)
IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)
_IN_PLANE_SQUARE = np.zeros((3, 3, 3), bool)
_IN_PLANE_SQUARE[1] = True


@dataclass
class TissueMasks:
    """Boolean ``(z, y, x)`` masks of the head's tissue classes.

    head : everything that is not air (holes filled).
    bone : the skull (dense components of at least SKULL_MIN_ML).
    brain : intracranial cavity inside the skull, skull edge eroded.
    parenchyma : brain tissue counted in volumes (brain without CSF, vessels, calcification).
    csf : brain voxels below CSF_MAX_HU.
    vessels : voxels enhancing like blood (dilated by one pixel in-plane); empty without
        a peak-enhancement image.
    calcification : small dense blobs inside the brain (dilated by one pixel in-plane).
    """

    head: np.ndarray
    brain: np.ndarray
    parenchyma: np.ndarray
    csf: np.ndarray
    vessels: np.ndarray
    bone: np.ndarray
    calcification: np.ndarray


def _smooth_in_plane(volume: np.ndarray, sigma_px: tuple, within: np.ndarray | None = None) -> np.ndarray:
    """Gaussian smoothing in-plane; with ``within``, averages only voxels of that mask."""
    sigma = (0.0, *sigma_px)
    if within is None:
        return ndimage.gaussian_filter(volume, sigma)
    weight = ndimage.gaussian_filter(within.astype(np.float32), sigma)
    total = ndimage.gaussian_filter(np.where(within, volume, 0.0).astype(np.float32), sigma)
    return np.where(within, total / np.maximum(weight, 1e-3), 0.0).astype(np.float32)


def _components(mask: np.ndarray, min_voxels: int = 0, max_voxels: int | None = None) -> np.ndarray:
    """Keep the 3D connected components whose size lies in [min_voxels, max_voxels]."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    if max_voxels is not None:
        keep &= sizes <= max_voxels
    keep[0] = False
    return keep[labels]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()


def segment_brain(image_hu: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The intracranial cavity inside the skull (bool, z, y, x) of a non-enhanced image in HU:
    the ``brain`` of :func:`segment_tissue`, without the other classes."""
    full_head, box, _, brain = _head_and_brain(np.asarray(image_hu, dtype=np.float32), geometry)
    full = np.zeros(full_head.shape, bool)
    full[box] = brain
    return full


def _head_and_brain(baseline_hu: np.ndarray, geometry: Geometry):
    """The head (full grid), the head's bounding box with a margin for in-plane filters, and the
    skull and the brain inside that box."""
    if baseline_hu.ndim != 3:
        raise InputError(f"baseline image must be 3D (z, y, x), got shape {baseline_hu.shape}")
    full_head = ndimage.binary_fill_holes(_largest_component(baseline_hu > HEAD_MIN_HU), IN_PLANE)
    if not full_head.any():
        raise InputError("no head found in the baseline image (nothing above -300 HU)")
    _, ys, xs = ndimage.find_objects(full_head.astype(np.uint8))[0]
    box = (slice(None), slice(max(ys.start - 3, 0), ys.stop + 3), slice(max(xs.start - 3, 0), xs.stop + 3))
    head, baseline_hu = full_head[box], baseline_hu[box]
    dense = _smooth_in_plane(baseline_hu, (0.5, 0.5)) > BONE_MIN_HU
    bone = _components(dense & head, min_voxels=int(np.ceil(SKULL_MIN_ML / geometry.voxel_volume_ml)))
    closed_skull = ndimage.binary_closing(bone, IN_PLANE, iterations=2) | bone
    cavity = ndimage.binary_fill_holes(closed_skull, IN_PLANE) & ~closed_skull
    brain = ndimage.binary_erosion(cavity, IN_PLANE, iterations=BRAIN_EROSION_PX)
    if not brain.any():
        raise InputError("no intracranial region found: the skull does not enclose any slice")
    return full_head, box, bone, _largest_component(brain)


def segment_tissue(
    baseline_hu: np.ndarray, geometry: Geometry, peak_enhancement: np.ndarray | None = None
) -> TissueMasks:
    """Segment the head's tissue classes.

    Parameters
    ----------
    baseline_hu : float (z, y, x)
        Pre-contrast image in HU (mean of the baseline frames).
    geometry : Geometry
        Grid of ``baseline_hu`` (spacing in mm).
    peak_enhancement : float (z, y, x), optional
        Maximum over time of HU minus baseline; needed to find vessels.

    Returns
    -------
    TissueMasks
    """
    baseline_hu = np.asarray(baseline_hu, dtype=np.float32)
    if peak_enhancement is not None and np.shape(peak_enhancement) != baseline_hu.shape:
        raise InputError("peak enhancement image does not match the baseline image")
    sx, sy, _ = geometry.spacing
    voxel_ml = geometry.voxel_volume_ml
    tissue_sigma = (TISSUE_SMOOTHING_MM / sy, TISSUE_SMOOTHING_MM / sx)
    full_head, box, bone, brain = _head_and_brain(baseline_hu, geometry)
    head = full_head[box]
    baseline_hu = baseline_hu[box]
    if peak_enhancement is not None:
        peak_enhancement = np.asarray(peak_enhancement)[box]

    smooth = _smooth_in_plane(baseline_hu, tissue_sigma, within=brain)
    csf = brain & (smooth < CSF_MAX_HU)

    light = _smooth_in_plane(baseline_hu, (0.5, 0.5), within=brain)
    dense_spots = brain & (light > CALCIFICATION_MIN_HU)
    spots = _components(dense_spots, max_voxels=int(CALCIFICATION_MAX_ML / voxel_ml))
    calcification = ndimage.binary_dilation(spots, _IN_PLANE_SQUARE) & brain

    if peak_enhancement is None:
        vessels = np.zeros_like(brain)
    else:
        peak = _smooth_in_plane(np.asarray(peak_enhancement, np.float32), tissue_sigma, within=head)
        vessels = ndimage.binary_dilation(peak > VESSEL_MIN_ENHANCEMENT_HU, _IN_PLANE_SQUARE) & head

    parenchyma = brain & ~csf & ~vessels & ~calcification & (smooth <= PARENCHYMA_MAX_HU)

    def uncrop(mask: np.ndarray) -> np.ndarray:
        full = np.zeros(full_head.shape, bool)
        full[box] = mask
        return full

    return TissueMasks(
        head=full_head,
        brain=uncrop(brain),
        parenchyma=uncrop(parenchyma),
        csf=uncrop(csf),
        vessels=uncrop(vessels),
        bone=uncrop(bone),
        calcification=uncrop(calcification),
    )
