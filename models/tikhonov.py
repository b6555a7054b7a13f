"""Block-circulant Tikhonov deconvolution, regularisation chosen per voxel by the OI."""

from __future__ import annotations

import numpy as np

from .base import DeconvolutionModel

DEFAULT_LAMBDAS = tuple(np.geomspace(0.8, 0.001, 10))


class TikhonovModel(DeconvolutionModel):
    """Delay-insensitive Tikhonov (ridge) deconvolution.

    The residue minimises ``|A k − c|² + λ² |k|²`` for the block-circulant AIF matrix:
    filter factors ``s² / (s² + λ²)``. λ (relative to the largest singular value) is chosen per
    voxel from ``lambdas``: the smallest whose residue has an oscillation index ≤ ``oi_target``
    (the criterion of the oSVD model, see :class:`models.base.DeconvolutionModel`). A single λ
    for all voxels cannot serve both ends: small enough for high flow to be accurate, it lets
    noise inflate low flow. Tmax is signed as in :class:`models.svd.BlockCirculantSVDModel`.

    Defaults (``oi_target`` 0.05, 10 λ from 0.8 to 0.001) were tuned like those of the oSVD
    model; on the synthetic tests Tikhonov is at least as accurate noise-free (within −9 %)
    and separates low flow better at 3 HU (CBF-8 / CBF-60 median ratio about 0.22), with the
    same kind of Tmax bias (+1 to +2 s noise-free).

    Parameters
    ----------
    aif : array_like, shape (t,)
        Arterial enhancement ΔHU, already scaled for partial volume.
    times : array_like, shape (t,)
        Frame times in s, strictly increasing, may be non-uniform.
    oi_target : float
        Largest oscillation index accepted.
    lambdas : sequence of float
        λ values relative to the largest singular value.
    """

    def __init__(self, aif, times, *, oi_target: float = 0.05, lambdas=DEFAULT_LAMBDAS):
        super().__init__(aif, times, oi_target=oi_target)
        self.lambdas = np.array(sorted({float(x) for x in lambdas}, reverse=True))
        power = self.s[None, :] ** 2
        self._set_filters(power / (power + (self.lambdas[:, None] * self.s.max()) ** 2))
