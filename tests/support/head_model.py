"""Small analytic head for the preprocessing tests (motion correction, tissue masks).

The head is a set of nested ellipsoids centred in the field of view: scalp, a 7 mm skull,
a thin subarachnoid CSF layer (label CSF), a cortical grey-matter ribbon and white matter,
with two lateral ventricles (label VENTRICLE, CSF density), two vessel tubes and one calcified
spot. Every voxel holds the fraction of each label found on a supersampled grid (partial
volume), so images are
``HU = sum_k fraction_k * HU_k`` and the true label of a voxel is its majority label.
Coordinates are mm from the head centre in the (x, y, z) voxel frame of the volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from triage.base.grid import Geometry

AIR, SCALP, BONE, CSF, GM, WM, VESSEL, CALC, VENTRICLE = range(9)
N_LABELS = 9
BASELINE_HU = np.array([-1000.0, 30.0, 1000.0, 6.0, 40.0, 28.0, 45.0, 100.0, 6.0], np.float32)
PEAK_ENHANCEMENT_HU = np.array([0.0, 8.0, 0.0, 0.0, 30.0, 15.0, 350.0, 0.0, 0.0], np.float32)

HEAD_SEMI_AXES_MM = np.array([72.0, 90.0, 60.0])  # x, y, z of the outer scalp surface
LAYER_DEPTHS_MM = {SCALP: 0.0, BONE: 5.0, CSF: 12.0, GM: 14.0, WM: 17.0}


@dataclass
class HeadModel:
    """Label fractions of the head on a voxel grid.

    fractions : float32 (N_LABELS, z, y, x), summing to 1 in each voxel.
    labels : uint8 (z, y, x), majority label of each voxel.
    geometry : Geometry of the grid (identity direction).
    """

    fractions: np.ndarray
    labels: np.ndarray
    geometry: Geometry

    def image(self, enhancement_scale: float = 0.0) -> np.ndarray:
        """Noise-free HU volume with the bolus at ``enhancement_scale`` of its peak (0..1)."""
        hu = BASELINE_HU + enhancement_scale * PEAK_ENHANCEMENT_HU
        return np.tensordot(hu, self.fractions, axes=1).astype(np.float32)


def _label_points(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Label at physical points (mm from head centre)."""
    labels = np.full(x.shape, AIR, np.uint8)
    for label, depth in LAYER_DEPTHS_MM.items():
        ax, ay, az = HEAD_SEMI_AXES_MM - depth
        labels[(x / ax) ** 2 + (y / ay) ** 2 + (z / az) ** 2 <= 1.0] = label
    for side in (-1.0, 1.0):  # lateral ventricles
        radius2 = ((x - side * 15.0) / 8.5) ** 2 + ((y + 5.0) / 26.0) ** 2 + ((z - 5.0) / 16.0) ** 2
        inside = radius2 <= 1.0
        labels[inside] = VENTRICLE
    labels[(x - 4.0) ** 2 + (y - 45.0) ** 2 <= 2.2**2] = VESSEL  # tube along z
    labels[((y + 20.0) ** 2 + (z + 12.5) ** 2 <= 2.0**2) & (np.abs(x) < 45.0)] = VESSEL  # along x
    labels[(x + 30.0) ** 2 + (y - 25.0) ** 2 + ((z - 12.5) / 1.3) ** 2 <= 3.0**2] = CALC
    return labels


def make_head(
    shape: tuple[int, int, int] = (12, 128, 128),
    pixel_mm: float = 1.875,
    slice_mm: float = 5.0,
    motion: np.ndarray | None = None,
    supersample: tuple[int, int, int] = (4, 2, 2),
) -> HeadModel:
    """Render the head on a grid, optionally after a rigid head motion.

    Parameters
    ----------
    shape : (z, y, x) voxels.
    pixel_mm, slice_mm : in-plane spacing and slice spacing in mm.
    motion : 4 x 4 homogeneous matrix (mm, x/y/z order) moving the head, or None.
        The rendered image shows the head at ``motion @ p`` for every head point ``p``.
    supersample : sub-samples per voxel along (z, y, x) for the label fractions.
    """
    nz, ny, nx = shape
    sz, sy, sx = supersample
    step = np.array([slice_mm, pixel_mm, pixel_mm])
    axes = [
        (np.arange(n * s) + 0.5) / s * d - n * d / 2.0
        for n, s, d in zip(shape, supersample, step)
    ]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    if motion is not None:
        inverse = np.linalg.inv(motion)
        points = np.stack([x.ravel(), y.ravel(), z.ravel(), np.ones(x.size)])
        x, y, z = (inverse @ points)[:3].reshape(3, *x.shape)
    fine = _label_points(x, y, z).reshape(nz, sz, ny, sy, nx, sx)
    fractions = np.stack([(fine == k).mean(axis=(1, 3, 5)) for k in range(N_LABELS)]).astype(np.float32)
    geometry = Geometry(
        spacing=(pixel_mm, pixel_mm, slice_mm),
        origin=tuple(float(-n * d / 2.0 + d / 2.0) for n, d in zip(shape[::-1], step[::-1])),
    )
    return HeadModel(fractions, fractions.argmax(axis=0).astype(np.uint8), geometry)


def rigid_motion(rotation_deg: tuple, translation_mm: tuple) -> np.ndarray:
    """4 x 4 matrix: rotation about the head centre, then translation (mm).

    ``rotation_deg`` holds the angles about x, y and z in degrees, applied x first, z last.
    """
    ax, ay, az = np.deg2rad(rotation_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ ry @ rx
    matrix[:3, 3] = translation_mm
    return matrix


def correlated_noise(
    shape: tuple[int, ...], sd_hu: float, rng: np.random.Generator, sigma_px: float = 0.8
) -> np.ndarray:
    """Gaussian noise with standard deviation ``sd_hu``, correlated in-plane (last two axes)."""
    white = rng.standard_normal(shape).astype(np.float32)
    sigma = (0,) * (len(shape) - 2) + (sigma_px, sigma_px)
    smooth = ndimage.gaussian_filter(white, sigma)
    return smooth * np.float32(sd_hu / smooth.std())


def bolus_shape(times: np.ndarray, arrival_s: float = 8.0, peak_s: float = 14.0) -> np.ndarray:
    """Gamma-variate bolus, 0 before arrival and 1 at its peak."""
    rise = np.clip(times - arrival_s, 0.0, None) / (peak_s - arrival_s)
    return rise**3 * np.exp(3.0 * (1.0 - rise))
