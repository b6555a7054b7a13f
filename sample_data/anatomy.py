"""Head anatomy and lesion layout of the phantom, defined in millimetres.

Coordinates are DICOM patient coordinates (LPS, mm) of voxel centres with the head centre at
the origin: ``X`` grows toward the patient's LEFT (high column index), ``Y`` toward posterior
(high row index), ``Z`` toward superior (high slice index). Because every shape is defined in mm,
the layout (and so every truth volume) is the same at any matrix or slice count that covers it;
the lesion lies within |Z| < 38 mm, inside the 16 x 5 mm slab.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Tissue label codes of ``Truth.labels``.
AIR, SCALP, BONE, CSF, GM, WM, ARTERY, VEIN = range(8)
LABEL_NAMES = {AIR: "air", SCALP: "scalp", BONE: "bone", CSF: "csf", GM: "gm", WM: "wm",
               ARTERY: "artery", VEIN: "vein"}

# Lesion zone codes of ``Truth.zones`` (nested: core innermost).
NORMAL, RIM, PENUMBRA, SEVERE, CORE = range(5)
ZONE_NAMES = {NORMAL: "normal", RIM: "oligaemic_rim", PENUMBRA: "outer_penumbra",
              SEVERE: "severe_penumbra", CORE: "core"}

# Pre-contrast attenuation (HU).
BASELINE_HU = {AIR: -1000.0, SCALP: 40.0, CSF: 6.0, GM: 40.0, WM: 28.0, ARTERY: 40.0, VEIN: 40.0}

HEAD_SEMI_AXES_MM = (75.0, 95.0)   # in-plane (left-right, anterior-posterior) at Z = 0
HEAD_Z_SEMI_AXIS_MM = 140.0        # the cross-section shrinks as sqrt(1 - (Z / 140)^2)
SCALP_MM, SKULL_MM, SUBARACHNOID_MM, CORTEX_MM = 4.0, 7.0, 1.5, 3.5
VESSEL_RADIUS_MM = 1.75            # arteries, 3.5 mm diameter
SINUS_RADIUS_MM = 4.0              # superior sagittal sinus, 8 mm diameter
# Vertical (through-plane) arterial segments: (X, Y) of each axis, mm; MCA, ACA and PCA pairs.
ARTERY_AXES_MM = ((-38.0, -8.0), (38.0, -8.0), (-3.5, -30.0), (3.5, -30.0),
                  (-15.0, 35.0), (15.0, 35.0))

# Lesion: nested ellipsoids around an MCA-territory centre; zone outer "radii" in mm.
LESION_CENTRE_MM = (52.0, -6.0, 0.0)      # |X| (mirrored to the lesion side), Y, Z
LESION_SHAPE = (1.0, 1.35, 0.9)           # relative semi-axes (X, Y, Z)
LESION_RADII_MM = {                       # core, severe, outer penumbra, oligaemic rim
    "mismatch": (16.3, 21.7, 31.0, 34.0),
    "large_core": (29.8, 34.2, 38.8, 41.0),
}


@dataclass
class Anatomy:
    """Label and zone volumes of the phantom on its grid, all ``(z, y, x)``.

    Attributes
    ----------
    labels : uint8 tissue codes (AIR ... VEIN).
    baseline_hu : float32 pre-contrast HU.
    zones : uint8 lesion zone codes (NORMAL ... CORE); NORMAL outside parenchyma.
    artery_fraction : float32 fraction of the full arterial enhancement a voxel carries
        (partial volume; 0 outside arteries).
    """

    labels: np.ndarray
    baseline_hu: np.ndarray
    zones: np.ndarray
    artery_fraction: np.ndarray


def voxel_coordinates(shape: tuple[int, int, int], spacing, origin):
    """Broadcastable X (1,1,nx), Y (1,ny,1), Z (nz,1,1) voxel-centre coordinates in mm."""
    nz, ny, nx = shape
    x = (origin[0] + spacing[0] * np.arange(nx, dtype=np.float32)).reshape(1, 1, nx)
    y = (origin[1] + spacing[1] * np.arange(ny, dtype=np.float32)).reshape(1, ny, 1)
    z = (origin[2] + spacing[2] * np.arange(nz, dtype=np.float32)).reshape(nz, 1, 1)
    return x, y, z


def _ellipsoid(x, y, z, centre, semi_axes):
    return (((x - centre[0]) / semi_axes[0]) ** 2 + ((y - centre[1]) / semi_axes[1]) ** 2
            + ((z - centre[2]) / semi_axes[2]) ** 2) < 1.0


def _skull_hu(depth_in_bone):
    """Dense outer and inner tables (~1200 HU) around a lighter diploe (~700 HU)."""
    mid = SKULL_MM / 2.0
    return 1200.0 - 500.0 * np.exp(-(((depth_in_bone - mid) / 1.6) ** 2))


def build_anatomy(shape, spacing, origin, case: str, lesion_side: str) -> Anatomy:
    """Label the grid: scalp, skull, CSF, cortex, white matter, ventricles, vessels, lesion.

    Parameters
    ----------
    shape : (nz, ny, nx) grid shape.
    spacing, origin : SimpleITK-order geometry (mm, LPS, identity direction).
    case : "mismatch", "large_core" or "no_lesion".
    lesion_side : "left" or "right" (patient side; left = +X = high column index).
    """
    x, y, z = voxel_coordinates(shape, spacing, origin)
    scale = np.sqrt(np.clip(1.0 - (z / HEAD_Z_SEMI_AXIS_MM) ** 2, 0.05, None))
    theta = np.arctan2(y, x)
    ax, ay = HEAD_SEMI_AXES_MM
    head_radius = scale / np.sqrt((np.cos(theta) / ax) ** 2 + (np.sin(theta) / ay) ** 2)
    depth = (head_radius - np.hypot(x, y)).astype(np.float32)   # mm inside the head surface

    labels = np.zeros(shape, np.uint8)
    inner_skull = SCALP_MM + SKULL_MM
    cortex_start = inner_skull + SUBARACHNOID_MM
    # Gently folded grey-white boundary (smooth, 1.5 mm undulation).
    cortex_end = cortex_start + CORTEX_MM + 1.5 * np.sin(11.0 * theta + z / 9.0)
    labels[depth >= 0] = SCALP
    labels[depth >= SCALP_MM] = BONE
    labels[depth >= inner_skull] = CSF
    labels[depth >= cortex_start] = GM
    labels[depth >= cortex_end] = WM

    brain = depth >= cortex_start
    ax_x = np.abs(x)
    # Interhemispheric fissure with medial cortex, except over the deep central structures.
    fissure_region = brain & ~((np.abs(y) < 25.0) & (z < 15.0))
    labels[fissure_region & (ax_x < 4.5)] = GM
    labels[fissure_region & (ax_x < 1.0)] = CSF
    for sign in (-1.0, 1.0):
        labels[_ellipsoid(x, y, z, (sign * 22.0, 0.0, -8.0), (8.0, 14.0, 10.0)) & brain] = GM
        labels[_ellipsoid(x, y, z, (sign * 10.0, -2.0, 8.0), (5.0, 24.0, 11.0)) & brain] = CSF

    artery_fraction = np.zeros(shape, np.float32)
    for ax0, ay0 in ARTERY_AXES_MM:
        r = np.broadcast_to(np.hypot(x - ax0, y - ay0) / VESSEL_RADIUS_MM, shape)
        inside = (r < 1.0) & brain
        # Partial volume: ~0.70-0.78 of full amplitude, full amplitude only on the axis.
        artery_fraction[inside] = np.where(r[inside] < 0.3, 1.0, 0.78 - 0.08 * r[inside])
        labels[inside] = ARTERY
    sinus_y = scale * ay - inner_skull - SINUS_RADIUS_MM      # touches the inner table
    labels[(np.hypot(x, y - sinus_y) < SINUS_RADIUS_MM) & (depth >= inner_skull)] = VEIN

    baseline = np.zeros(shape, np.float32)
    for code, hu in BASELINE_HU.items():
        baseline[labels == code] = hu
    bone = labels == BONE
    baseline[bone] = _skull_hu(np.broadcast_to(depth, shape)[bone] - SCALP_MM)

    zones = _lesion_zones(x, y, z, labels, case, lesion_side)
    return Anatomy(labels, baseline, zones, artery_fraction)


def _lesion_zones(x, y, z, labels, case, lesion_side):
    zones = np.zeros(labels.shape, np.uint8)
    if case == "no_lesion":
        return zones
    side = 1.0 if lesion_side == "left" else -1.0
    cx, cy, cz = LESION_CENTRE_MM
    sx, sy, sz = LESION_SHAPE
    dx, dy, dz = (x - side * cx) / sx, (y - cy) / sy, (z - cz) / sz
    # Smooth lobulation so the zones are not perfect ellipsoids.
    lobes = 1.0 + 0.06 * np.sin(3.0 * np.arctan2(dy, dx)) * np.cos(dz / 12.0)
    radius = np.sqrt(dx ** 2 + dy ** 2 + dz ** 2) * lobes
    parenchyma_on_side = ((labels == GM) | (labels == WM)) & (side * x > 0)
    for code, outer in zip((RIM, PENUMBRA, SEVERE, CORE), LESION_RADII_MM[case][::-1]):
        zones[parenchyma_on_side & (radius < outer)] = code
    return zones
