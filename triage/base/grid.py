"""Voxel grids and the tolerances that group images into slice positions and time points.

Shared by the series assembly (:mod:`triage.imaging.assembly`), the node's completion check
(:mod:`dicom_node.completion`) and the phantom (:mod:`sample_data`).

Conventions (shared by every module):

* Arrays are indexed like SimpleITK's ``GetArrayFromImage``: a volume is ``(z, y, x)``,
  a time series ``(t, z, y, x)``. ``x`` runs along the DICOM row (columns index),
  ``y`` down the column (rows index), ``z`` along increasing slice position.
* Geometry is in SimpleITK order and DICOM patient coordinates (LPS, mm):
  ``spacing = (sx, sy, sz)``, ``origin`` is the centre of voxel ``[0, 0, 0]``,
  ``direction`` the 3 x 3 direction cosines, row-major, as ``sitk.Image.SetDirection`` takes them.
* Times are seconds (float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triage.base.language import Text

POSITION_TOLERANCE_MM = 0.1      # slices closer than this along the normal are one position
SAME_TIME_S = 0.05               # instances closer than this in time are one time point
SLICE_SPACING_TOLERANCE = 0.10   # allowed relative deviation of slice gaps from their median
MIN_PERFUSION_FRAMES = 3


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of a volume in DICOM patient coordinates (LPS, mm)."""

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL."""
        sx, sy, sz = self.spacing
        return sx * sy * sz / 1000.0

    def to_physical(self, zyx) -> np.ndarray:
        """LPS position (mm) of the voxel index ``(z, y, x)`` (fractional indices allowed)."""
        ijk = np.asarray(zyx, float)[::-1] * np.asarray(self.spacing)
        return np.asarray(self.origin) + np.asarray(self.direction).reshape(3, 3) @ ijk

    def to_index(self, point) -> np.ndarray:
        """Fractional voxel index ``(z, y, x)`` of the LPS position ``point`` (mm)."""
        d = np.asarray(self.direction).reshape(3, 3)
        ijk = np.linalg.solve(d, np.asarray(point, float) - np.asarray(self.origin)) / np.asarray(self.spacing)
        return ijk[::-1]


def cluster_positions(depths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slice number (0 at the lowest depth) of each depth along the normal, and slice depths."""
    order = np.argsort(depths, kind="stable")
    new_slice = np.diff(depths[order]) > POSITION_TOLERANCE_MM
    sorted_labels = np.concatenate([[0], np.cumsum(new_slice)])
    labels = np.empty_like(sorted_labels)
    labels[order] = sorted_labels
    centres = np.bincount(labels, weights=depths) / np.bincount(labels)
    return labels, centres


def whole_leading_time_points(labels: np.ndarray, times: np.ndarray) -> int:
    """How many time points every slice position has, when images are missing only at the end.

    ``labels`` are slice position numbers (0 to n - 1, as from :func:`cluster_positions`),
    ``times`` the acquisition times in s, distinct at each position. K, the fewest time points
    of any position, is returned when the K earliest images of each position line up as
    frames: the images of each frame lie closer together than half the interval between its
    (median) time and the neighbouring frames'. An image missing at an earlier time, or at the
    start, shifts the later images of its position by a frame and gives 0; so do slices of one
    frame acquired half a frame interval apart or more, which cannot be told from a gap.
    """
    times = unwrap_midnight(np.asarray(times, dtype=np.float64))
    order = np.lexsort((times, labels))
    sorted_labels, sorted_times = labels[order], times[order]
    counts = np.bincount(labels)
    n_whole = int(counts.min())
    if n_whole < 2:
        return n_whole
    leading = rank_within_position(sorted_labels, counts) < n_whole
    frames = sorted_times[leading].reshape(len(counts), n_whole)          # (z, t)
    intervals = np.diff(np.median(frames, axis=0))
    nearest = np.minimum(np.append(np.inf, intervals), np.append(intervals, np.inf))
    return n_whole if (np.ptp(frames, axis=0) < nearest / 2).all() else 0


def describe_incomplete_end(counts: np.ndarray, n_whole: int) -> Text:
    """E.g. ``last time point incomplete (29 of 32 slices)``: how many slice positions have each
    time point after the ``n_whole`` whole ones; ``counts`` are the time points per position."""
    present = [int((counts > k).sum()) for k in range(n_whole, int(counts.max()))]
    if len(present) == 1:
        return Text("grid.last_incomplete", present=present, slices=len(counts))
    return Text("grid.last_n_incomplete", n=len(present), present=present, slices=len(counts))


def rank_within_position(sorted_labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... along each position of labels sorted by position (then time)."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.arange(len(sorted_labels)) - starts[sorted_labels]


def unwrap_midnight(times: np.ndarray) -> np.ndarray:
    """Add a day to times after midnight when the series spans midnight (span > 12 h)."""
    if times.size and np.ptp(times) > 43200.0:
        times = np.where(times < 43200.0, times + 86400.0, times)
    return times
