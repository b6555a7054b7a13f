"""Block-circulant truncated-SVD deconvolution with oscillation-index regularisation (oSVD).

Wu et al., "Tracer arrival timing-insensitive technique for estimating flow in MR perfusion-
weighted imaging using singular value decomposition with a block-circulant deconvolution
matrix", MRM 50:164-174 (2003).
"""

from __future__ import annotations

import numpy as np

from .base import DeconvolutionModel

DEFAULT_THRESHOLDS = tuple(np.geomspace(0.8, 0.001, 10))


class BlockCirculantSVDModel(DeconvolutionModel):
    """Delay-insensitive truncated-SVD deconvolution, threshold chosen per voxel by the OI.

    The residue keeps the singular components with ``s_i > P · s_max``; per voxel the
    smallest threshold P of ``thresholds`` is kept whose residue has an oscillation index
    ≤ ``oi_target`` (definition and vectorised evaluation: :class:`models.base.DeconvolutionModel`).

    Tmax: the residue maximum at padded index ``i`` means a delay ``i · dt`` for ``i < N`` and
    ``(i − 2N) · dt`` (negative: tissue bolus before the AIF bolus) otherwise; it is reported
    signed, the caller decides whether to clip at 0.

    Parameters
    ----------
    aif : array_like, shape (t,)
        Arterial enhancement ΔHU, already scaled for partial volume.
    times : array_like, shape (t,)
        Frame times in s, strictly increasing, may be non-uniform (resampled linearly onto a
        grid with the smallest frame interval, see :func:`models.base.uniform_grid`).
    oi_target : float
        Largest oscillation index accepted.
    thresholds : sequence of float
        Truncation thresholds relative to the largest singular value.
    """

    def __init__(self, aif, times, *, oi_target: float = 0.05, thresholds=DEFAULT_THRESHOLDS):
        super().__init__(aif, times, oi_target=oi_target)
        self.thresholds = np.array(sorted({float(p) for p in thresholds}, reverse=True))
        self._set_filters((self.s[None, :] > self.thresholds[:, None] * self.s.max()).astype(float))
