"""Ischemic core and hypoperfused tissue from the perfusion maps.

The core is tissue whose CBF relative to normal (rCBF) is below the profile's cut-off; the
hypoperfused tissue is Tmax above its cut-off. Normal CBF is the median CBF of the parenchyma of
the hemisphere opposite the lesion where Tmax is normal (profile reference
``"contralateral-normal"``). Volumes count parenchyma voxels only and are in mL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.profiles import ThresholdProfile
from triage.base.grid import Geometry
from triage.base.language import Text

MIN_REFERENCE_VOXELS = 500  # fewer normal voxels than this make the median unreliable


@dataclass
class Hemispheres:
    """Midline split of the brain. ``left`` is True in the patient's left hemisphere (z, y, x)."""

    left: np.ndarray
    angle_deg: float  # midline tilt from the image's vertical axis


@dataclass
class LesionResult:
    """Masks (bool, z, y, x), the normal reference, and the volumes in mL."""

    core: np.ndarray
    hypoperfused: np.ndarray
    severe: np.ndarray
    rcbf: np.ndarray
    reference_cbf: float
    reference: str
    affected_side: str | None
    volumes: dict
    warnings: list[str]


def split_hemispheres(brain: np.ndarray, geometry: Geometry) -> Hemispheres:
    """Split at the brain's in-plane symmetry axis (its longest in-plane principal axis).

    The axis passes through the centroid of the brain mask; its side towards increasing patient
    x (LPS: patient left) is the left hemisphere, whatever the image orientation.
    """
    _, ys, xs = np.nonzero(brain)
    sx, sy, _ = geometry.spacing
    px, py = xs * sx, ys * sy
    cx, cy = px.mean(), py.mean()
    cov = np.cov(np.vstack([px - cx, py - cy]))
    eigvals, eigvecs = np.linalg.eigh(cov)
    axis = eigvecs[:, np.argmax(eigvals)]
    if abs(axis[1]) < abs(axis[0]):  # longest axis left-right: not a head shape we can trust
        axis = np.array([0.0, 1.0])
    normal = np.array([axis[1], -axis[0]])
    # Direction cosines: physical x gained per mm along the index x and y axes.
    d = geometry.direction
    if d[0] * normal[0] + d[1] * normal[1] < 0:
        normal = -normal
    zz, yy, xx = np.indices(brain.shape, sparse=True)
    signed = (xx * sx - cx) * normal[0] + (yy * sy - cy) * normal[1]
    left = np.broadcast_to(signed > 0, brain.shape)
    angle = float(np.degrees(np.arctan2(axis[0], axis[1])))
    if angle > 90:
        angle -= 180
    elif angle < -90:
        angle += 180
    return Hemispheres(left=np.ascontiguousarray(left), angle_deg=angle)


def drop_small_clusters(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Remove 26-connected components of fewer than ``min_voxels`` voxels."""
    if min_voxels <= 1 or not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def lesion_volumes(core_ml: float, tmax6_ml: float, tmax10_ml: float) -> dict:
    """Mismatch volume (mL), mismatch ratio and hypoperfusion intensity ratio (HIR)."""
    return {
        "core_ml": core_ml,
        "tmax6_ml": tmax6_ml,
        "tmax10_ml": tmax10_ml,
        "mismatch_ml": tmax6_ml - core_ml,
        "mismatch_ratio": tmax6_ml / core_ml if core_ml > 0 else None,
        "hir": tmax10_ml / tmax6_ml if tmax6_ml > 0 else None,
    }


def segment_lesion(
    cbf: np.ndarray,
    tmax: np.ndarray,
    parenchyma: np.ndarray,
    brain: np.ndarray,
    geometry: Geometry,
    profile: ThresholdProfile,
) -> LesionResult:
    """Core, Tmax > 6 s and Tmax > 10 s masks and volumes by ``profile``.

    Parameters
    ----------
    cbf : (z, y, x) float, mL/100 g/min
    tmax : (z, y, x) float, s
    parenchyma, brain : (z, y, x) bool
    geometry : voxel grid of the maps (sets the voxel volume)
    profile : threshold profile
    """
    warnings: list[str] = []
    voxel_ml = geometry.voxel_volume_ml
    min_voxels = int(np.ceil(profile.min_cluster_ml / voxel_ml))

    hypoperfused = drop_small_clusters(
        parenchyma & (tmax > profile.hypoperfusion_tmax_above_s), min_voxels
    )
    severe = hypoperfused & (tmax > profile.severe_tmax_above_s)

    left = split_hemispheres(brain, geometry).left
    left_hypo = np.count_nonzero(hypoperfused & left)
    right_hypo = np.count_nonzero(hypoperfused & ~left)
    if left_hypo == right_hypo == 0:
        affected_side = None
        contralateral = np.ones_like(parenchyma)
        region = Text("lesion.region_both")
    else:
        affected_side = "left" if left_hypo >= right_hypo else "right"
        contralateral = ~left if affected_side == "left" else left
        region = Text("lesion.region_right" if affected_side == "left" else "lesion.region_left")
    normal = parenchyma & contralateral & (tmax < profile.reference_tmax_below_s)
    if np.count_nonzero(normal) < MIN_REFERENCE_VOXELS:
        normal = parenchyma & contralateral
        warnings.append(Text("lesion.few_reference"))
        restriction = Text("lesion.all_tmax")
    else:
        restriction = Text("lesion.tmax_below", tmax_s=profile.reference_tmax_below_s)
    reference_cbf = float(np.median(cbf[normal])) if normal.any() else 0.0
    if reference_cbf <= 0:
        raise ValueError("no normal tissue to take the reference CBF from")
    reference = Text("lesion.reference", region=region, restriction=restriction)

    rcbf = (cbf / reference_cbf).astype(np.float32)
    core = parenchyma & (rcbf < profile.core_rcbf_below)
    if profile.core_within_hypoperfusion:
        core &= hypoperfused
    core = drop_small_clusters(core, min_voxels)

    volumes = lesion_volumes(
        float(np.count_nonzero(core) * voxel_ml),
        float(np.count_nonzero(hypoperfused) * voxel_ml),
        float(np.count_nonzero(severe) * voxel_ml),
    )
    return LesionResult(
        core=core,
        hypoperfused=hypoperfused,
        severe=severe,
        rcbf=rcbf,
        reference_cbf=reference_cbf,
        reference=reference,
        affected_side=affected_side,
        volumes=volumes,
        warnings=warnings,
    )
