"""Parametric deconvolution: a delayed exponential residue fitted by template matching.

The one-compartment residue R(t) = exp(−(t − d) / MTT) for t ≥ d (0 before) is the usual
parametric model of brain tissue (Østergaard et al., MRM 1996; Mouridsen et al., NeuroImage
2006). With it, the tissue curve is C(t) = a · h_{d,MTT}(t), h = C_a ⊗ R, a = (ρ / k_H) · F.
For white Gaussian noise the maximum-likelihood (d, MTT) is the template h with the largest
normalised correlation with C, and a is the least-squares amplitude. Unlike truncated
deconvolution it does not smooth the residue (no CBF under-estimation, no Tmax delay from
regularisation) and it does not assume that the curves return to baseline within the
acquisition (no block-circulant wrap-around).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from .base import (FLOW_TO_CBF, K_H, RHO_BRAIN, PerfusionFit, assemble_fit, check_aif_and_times,
                   curve_blocks, masked_curves)

DEFAULT_DELAYS = tuple(np.round(np.arange(-5.0, 30.01, 0.5), 2))  # s
DEFAULT_MTTS = tuple(np.geomspace(1.0, 40.0, 21))  # s, ratio 1.2 between neighbours
FINE_STEP = 0.05  # s, grid of the template convolution
TEMPLATE_RANK_TOLERANCE = 1e-4
CHUNK_VOXELS = 4096  # the (voxels, templates) score array of a block stays ~25 MB


def _quadratic_vertex(before, centre, after):
    """Offset (−0.5 … 0.5 samples) of the vertex of the parabola through three samples."""
    curvature = before - 2.0 * centre + after
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = 0.5 * (before - after) / curvature
    return np.where(curvature < 0, np.clip(offset, -0.5, 0.5), 0.0).astype(np.float32)


def _quadratic_value(before, centre, after, offset):
    """Value at ``offset`` samples of the parabola through three samples at −1, 0, 1."""
    return centre + 0.5 * offset * (after - before) + 0.5 * offset**2 * (after - 2.0 * centre + before)


class ExponentialResidueModel:
    """Per-voxel fit of a delayed exponential residue on a grid of (delay, MTT) templates.

    Every template ``h_{d,MTT}`` is the measured AIF (linearly interpolated, held at its last
    value past the last frame, 0 before the first) convolved on a ``FINE_STEP`` grid with the
    residue, sampled at the frame times and normalised to unit length. One matrix product gives
    each voxel's correlation with all templates; the best one is refined below the grid
    spacing by a parabola through its neighbours in delay and in log MTT (the amplitude is
    interpolated with the same offsets).

    Maps: CBF = a · (k_H/ρ) · 6000; Tmax = d (the exponential residue peaks at its onset);
    CBV = 100 · (k_H/ρ) · a · MTT, the area ratio ∫C/∫C_a of the fitted curve over all time, so
    it is not lowered when the acquisition ends before the tissue curve returns to baseline;
    MTT = 60 · CBV / CBF; TTP from the measured curves. Voxels without positive correlation
    with any template get CBF = CBV = 0.

    Parameters
    ----------
    aif : array_like, shape (t,)
        Arterial enhancement ΔHU, already scaled for partial volume.
    times : array_like, shape (t,)
        Frame times, s, strictly increasing, may be non-uniform.
    delays : sequence of float
        Template delays d relative to the AIF, s, uniformly spaced (negative: tissue bolus
        before the AIF bolus).
    mtts : sequence of float
        Template mean transit times, s, geometrically spaced.
    """

    def __init__(self, aif, times, *, delays=DEFAULT_DELAYS, mtts=DEFAULT_MTTS):
        self.aif, self.times = check_aif_and_times(aif, times)
        self.delays = np.asarray(delays, dtype=np.float64)
        self.mtts = np.asarray(mtts, dtype=np.float64)
        templates = self._templates()  # (t, delays, mtts)
        norms = np.sqrt((templates**2).sum(axis=0))
        self._norms = np.maximum(norms, 1e-12).astype(np.float32).ravel()  # (K,)
        unit = (templates / np.maximum(norms, 1e-12)).reshape(self.times.size, -1)
        # The templates span few temporal dimensions: correlate in that subspace (same scores
        # to ~1e-4 of a template's length, at a fraction of the cost).
        u, s, vt = np.linalg.svd(unit, full_matrices=False)
        rank = int(np.count_nonzero(s > TEMPLATE_RANK_TOLERANCE * s[0]))
        self._to_subspace = u[:, :rank].astype(np.float32)  # (t, rank)
        self._unit = (s[:rank, None] * vt[:rank]).astype(np.float32)  # (rank, K)

    def _templates(self) -> np.ndarray:
        """AIF ⊗ R for every (delay, MTT), ΔHU·s at the frame times, shape (t, delays, mtts)."""
        start = self.times[0] - max(self.delays.max(), 0.0)
        stop = self.times[-1] - min(self.delays.min(), 0.0)
        fine = np.arange(start, stop + FINE_STEP, FINE_STEP)
        aif = np.interp(fine, self.times, self.aif, left=0.0, right=self.aif[-1])
        out = np.empty((self.times.size, self.delays.size, self.mtts.size))
        sample_at = self.times[:, None] - self.delays[None, :]  # (t, delays)
        for j, mtt in enumerate(self.mtts):
            decay = np.exp(-FINE_STEP / mtt)  # trapezoid rule of ∫ aif(s) exp(-(t-s)/mtt) ds
            convolved = lfilter([FINE_STEP / 2, FINE_STEP / 2 * decay], [1.0, -decay], aif)
            out[:, :, j] = np.interp(sample_at, fine, convolved, left=0.0)
        return out

    def _best_templates(self, block: np.ndarray, scores: np.ndarray):
        """Amplitude a (1/s), delay (s) and MTT (s) per voxel of a block (voxels, t).

        ``scores`` is a work array of at least (voxels, templates) float32.
        """
        n_mtt = self.mtts.size
        scores = scores[: block.shape[0]]
        np.matmul(block @ self._to_subspace, self._unit, out=scores)  # normalised correlation × |c|
        best = scores.argmax(axis=1)
        rows = np.arange(block.shape[0])
        i_delay, i_mtt = np.divmod(best, n_mtt)
        centre = scores[rows, best]
        at_best = centre / self._norms[best]  # least-squares amplitude of the best template
        peak = at_best.copy()
        offsets = []
        for index, count, stride in ((i_delay, self.delays.size, n_mtt), (i_mtt, n_mtt, 1)):
            inner = (index > 0) & (index < count - 1)
            lower = np.where(inner, best - stride, best)
            upper = np.where(inner, best + stride, best)
            offset = _quadratic_vertex(scores[rows, lower], centre, scores[rows, upper])
            offsets.append(offset)
            peak += _quadratic_value(scores[rows, lower] / self._norms[lower], at_best,
                                     scores[rows, upper] / self._norms[upper], offset) - at_best
        step_delay = self.delays[1] - self.delays[0] if self.delays.size > 1 else 0.0
        log_step = np.log(self.mtts[1] / self.mtts[0]) if n_mtt > 1 else 0.0
        delay = self.delays[i_delay] + offsets[0] * step_delay
        mtt = self.mtts[i_mtt] * np.exp(offsets[1] * log_step)
        positive = scores[rows, best] > 0
        return np.where(positive, peak, 0).astype(np.float32), delay.astype(np.float32), mtt.astype(np.float32)

    def fit(self, curves, mask=None) -> PerfusionFit:
        """Fit every masked voxel.

        Parameters
        ----------
        curves : array_like, shape (t, ...)
            Tissue enhancement ΔHU (float32 preferred), any spatial shape.
        mask : array_like of bool, spatial shape, optional
            Voxels to fit; None fits all.

        Returns
        -------
        PerfusionFit
        """
        flat, voxels, mask = masked_curves(curves, mask, self.times.size)
        out = {name: np.zeros(voxels.size, np.float32) for name in ("cbf", "cbv", "tmax", "ttp")}
        scores = np.empty((min(CHUNK_VOXELS, voxels.size), self._unit.shape[1]), np.float32)
        for part, block in curve_blocks(flat, voxels, CHUNK_VOXELS):
            amplitude, delay, mtt = self._best_templates(block, scores)
            amplitude = np.maximum(amplitude, 0)
            out["cbf"][part] = amplitude * np.float32(FLOW_TO_CBF)
            out["cbv"][part] = amplitude * mtt * np.float32(100 * K_H / RHO_BRAIN)
            out["tmax"][part] = delay
            out["ttp"][part] = self.times[block.argmax(axis=1)] - self.times[0]
        return assemble_fit(out, mask)
