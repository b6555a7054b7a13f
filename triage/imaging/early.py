"""The stages of an analysis that can run while the series' images still arrive.

As whole time points come in, :class:`EarlyStages` makes the motion reference of the first
(:func:`triage.imaging.motion.motion_reference`), its brain mask (the bolus timing's, from
:func:`triage.imaging.masks.segment_brain`) and every later one's motion estimate
(:func:`triage.imaging.motion.estimate_frame`). At analysis time :meth:`EarlyStages.matching`
hands over only what was computed on frames equal, voxel for voxel and on the same grid, to
those of the assembled series: each is a pure function of its frames, so the analysis is the
one a batch run gives, whatever order the images came in or however the guess of the time
points went. The rest is computed by the analysis as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triage.base.errors import InputError
from triage.base.grid import Geometry
from triage.imaging.masks import segment_brain
from triage.imaging.motion import FrameMotion, MotionAhead, MotionReference, estimate_frame, motion_reference

Frame = tuple[np.ndarray, ...]  # the (y, x) HU planes of one time point, in slice order


@dataclass
class _Reference:
    """The first time point seen arriving: its planes, grid, motion reference and brain mask."""

    planes: Frame
    geometry: Geometry
    motion: MotionReference
    brain: np.ndarray


def _same_planes(a: Frame, b: Frame) -> bool:
    """Whether two frames are made of the very same plane arrays."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def _equal(volume: np.ndarray, planes: Frame) -> bool:
    """Whether ``volume`` (z, y, x) holds exactly ``planes``."""
    return len(planes) == volume.shape[0] and all(np.array_equal(v, p) for v, p in zip(volume, planes))


class EarlyStages:
    """Early results for one series, offered its whole time points as they arrive."""

    def __init__(self):
        self._reference: _Reference | None = None
        self._estimates: list[tuple[Frame, FrameMotion]] = []  # time points 1, 2, ...
        self._failed = False  # the first frame has no head or brain: the analysis will say why

    def offer(self, frames: list[Frame], geometry: Geometry) -> None:
        """Compute what is missing for ``frames`` (time points 0, 1, ... in order) on ``geometry``."""
        if not frames or self._failed:
            return
        reference = self._reference
        if reference is None or not _same_planes(reference.planes, frames[0]) or reference.geometry != geometry:
            first = np.stack(frames[0])
            try:
                reference = _Reference(frames[0], geometry, motion_reference(first, geometry.spacing),
                                       segment_brain(first, geometry))
            except InputError:
                self._failed = True
                return
            self._reference, self._estimates = reference, []
        for t, frame in enumerate(frames[1:]):
            if t < len(self._estimates) and _same_planes(self._estimates[t][0], frame):
                continue
            del self._estimates[t:]
            self._estimates.append((frame, estimate_frame(reference.motion, np.stack(frame))))

    @property
    def n_estimated(self) -> int:
        """Time points with a motion estimate (the reference included)."""
        return len(self._estimates) + (self._reference is not None)

    def matching(self, data: np.ndarray, geometry: Geometry) -> tuple[MotionAhead | None, np.ndarray | None]:
        """For an assembled series (``data`` t, z, y, x in HU, before motion correction, on
        ``geometry``): the motion estimates made on its own frames (reference frame 0) and
        the brain mask of its first frame, or (None, None) when its first frame is not the
        one seen arriving."""
        reference = self._reference
        if reference is None or reference.geometry != geometry or not _equal(data[0], reference.planes):
            return None, None
        frames = {t: estimate for t, (planes, estimate) in enumerate(self._estimates, start=1)
                  if t < data.shape[0] and _equal(data[t], planes)}
        return MotionAhead(0, reference.motion, frames), reference.brain
