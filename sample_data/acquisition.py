"""Acquisition effects of the phantom: frame timing, rigid head motion, correlated noise."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Variable sampling: relative frame interval before, during and after the bolus window (s).
BOLUS_WINDOW_S = (6.0, 30.0)
RELATIVE_INTERVAL = (2.0, 1.0, 3.0)


def frame_times(n_frames: int, duration_s: float, variable: bool) -> np.ndarray:
    """Frame times (s, float64, first frame at 0, last at ``duration_s``), rounded to 1 ms.

    Uniform, or (``variable``) with intervals in the ratio 2 : 1 : 3 before, during and after
    the bolus window, scaled so that ``n_frames`` frames span ``duration_s`` exactly.
    """
    if not variable:
        return np.round(np.linspace(0.0, duration_s, n_frames), 3)
    fine = np.linspace(0.0, duration_s, 20001)
    before, during, after = RELATIVE_INTERVAL
    interval = np.where(fine < BOLUS_WINDOW_S[0], before,
                        np.where(fine < BOLUS_WINDOW_S[1], during, after))
    density = np.concatenate([[0.0], np.cumsum(np.diff(fine) / interval[:-1])])
    targets = np.linspace(0.0, density[-1], n_frames)
    return np.round(np.interp(targets, density, fine), 3)


def _rotation(axis_pair: tuple[int, int], degrees: float) -> np.ndarray:
    """Rotation in the plane of two (z, y, x) axes."""
    a, b = axis_pair
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    m = np.eye(3)
    m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


def _random_motion(rng, shift_mm, inplane_deg, tilt_deg):
    """Random signs and direction for a motion of the given sizes: (angles, translation)."""
    signs = rng.choice([-1.0, 1.0], size=3)
    direction = rng.uniform(0.0, 2.0 * np.pi)
    translation = np.array([signs[2] * shift_mm * 0.3, shift_mm * np.sin(direction),
                            shift_mm * np.cos(direction)])
    return np.array([signs[0] * inplane_deg, signs[1] * tilt_deg]), translation


def _pose(angles_deg, translation):
    """Rigid pose (rotation 3x3, translation (z, y, x) mm) from in-plane and tilt angles."""
    rotation = _rotation((1, 2), angles_deg[0]) @ _rotation((0, 1), angles_deg[1])
    return rotation, np.asarray(translation, float)


def motion_poses(n_frames: int, rng: np.random.Generator) -> list:
    """Per-frame rigid poses (``None`` = frame-0 position).

    A block of four frames from ~45 % of the series moves (2-4 mm, 1-3 deg in-plane, <= 1 deg
    through-plane, ramping up and back), and one frame at ~75 % jerks by 10-14 mm and 3-5 deg.
    """
    poses: list = [None] * n_frames
    angles, translation = _random_motion(rng, rng.uniform(2.0, 4.0), rng.uniform(1.0, 3.0),
                                         rng.uniform(0.3, 1.0))
    start = int(round(0.45 * (n_frames - 1)))
    for offset, weight in enumerate((0.5, 1.0, 1.0, 0.5)):
        k = start + offset
        if 0 < k < n_frames:
            poses[k] = _pose(weight * angles, weight * translation)
    jerk = int(round(0.75 * (n_frames - 1)))
    if jerk > start + 4:
        poses[jerk] = _pose(*_random_motion(rng, rng.uniform(10.0, 14.0), rng.uniform(3.0, 5.0),
                                            rng.uniform(0.5, 1.5)))
    return poses


def displacement_mm(pose, points_mm: np.ndarray) -> float:
    """Largest displacement (mm) of ``points_mm`` (n, 3; (z, y, x) about the head centre)."""
    if pose is None:
        return 0.0
    rotation, translation = pose
    moved = points_mm @ rotation.T + translation
    return float(np.sqrt(((moved - points_mm) ** 2).sum(axis=1)).max())


def apply_pose(volume: np.ndarray, pose, spacing_zyx, fill_hu: float = -1000.0) -> np.ndarray:
    """Move the head in ``volume`` rigidly about the grid centre (trilinear, order 1)."""
    rotation, translation = pose
    s = np.asarray(spacing_zyx, float)
    centre = (np.asarray(volume.shape) - 1) / 2.0
    matrix = (rotation.T * s[None, :]) / s[:, None]       # diag(1/s) R^T diag(s)
    offset = centre - matrix @ centre - (rotation.T @ translation) / s
    return ndimage.affine_transform(volume, matrix, offset, order=1, mode="nearest",
                                    cval=fill_hu, output=np.float32)


class CorrelatedNoise:
    """Gaussian noise filtered in-plane to a given FWHM, scaled to an exact per-voxel SD.

    The in-plane filter wraps around the image edges so the noise is stationary everywhere.
    """

    def __init__(self, sd_hu: float, fwhm_px: float, rng: np.random.Generator):
        self.sd_hu, self.rng = sd_hu, rng
        sigma = fwhm_px / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        if sigma > 0:
            radius = max(1, int(np.ceil(4.0 * sigma)))
            k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
            self.kernel = (k / k.sum()).astype(np.float32)
            gain = float((self.kernel.astype(float) ** 2).sum())   # variance gain per axis
            self.scale = sd_hu / np.sqrt(gain * gain)
        else:
            self.kernel, self.scale = None, sd_hu

    def sample(self, shape) -> np.ndarray:
        """One frame of noise (float32, ``shape`` = (z, y, x))."""
        white = self.rng.standard_normal(shape, dtype=np.float32)
        if self.kernel is not None:
            white = ndimage.correlate1d(white, self.kernel, axis=-1, mode="wrap")
            white = ndimage.correlate1d(white, self.kernel, axis=-2, mode="wrap")
        white *= np.float32(self.scale)
        return white
