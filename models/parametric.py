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

from triage.errors import InputError

from .base import (FLOW_TO_CBF, K_H, RHO_BRAIN, PerfusionFit, assemble_fit, check_aif_and_times,
                   curve_blocks, masked_curves)

DEFAULT_DELAYS = tuple(np.arange(-5.0, 30.01, 0.5))  # s
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
        templates = templates - templates.mean(axis=0)  # a free baseline offset, see _scores
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
        n = aif.size
        length = 1 << (2 * n - 1).bit_length()
        aif_spectrum = np.fft.rfft(aif, length)
        steps = np.arange(n)
        for j, mtt in enumerate(self.mtts):
            # Trapezoid rule of ∫ aif(s) exp(-(t-s)/mtt) ds: weights h·d^m, half weight at m = 0.
            kernel = FINE_STEP * np.exp(-FINE_STEP / mtt) ** steps
            kernel[0] = FINE_STEP / 2
            convolved = np.fft.irfft(aif_spectrum * np.fft.rfft(kernel, length), length)[:n]
            out[:, :, j] = np.interp(sample_at, fine, convolved, left=0.0)
        return out

    def _scores(self, block: np.ndarray, work: np.ndarray) -> np.ndarray:
        """Correlation × |c| of every curve of ``block`` (voxels, t) with every unit template,
        both with their mean removed (a free baseline offset), in ``work`` (voxels, K)."""
        scores = work[: block.shape[0]]
        centred = block - block.mean(axis=1, keepdims=True)
        np.matmul(centred @ self._to_subspace, self._unit, out=scores)
        return scores

    def _refine(self, scores: np.ndarray, best: np.ndarray):
        """Sub-grid refinement around template ``best`` of each row of ``scores``.

        Returns amplitude a (1/s, 0 without positive correlation), delay (s), MTT (s), and the
        grid position (delay index, delay offset, MTT index, MTT offset; offsets in grid steps).
        """
        n_mtt = self.mtts.size
        rows = np.arange(scores.shape[0])
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
        delay = (self.delays[i_delay] + offsets[0] * step_delay).astype(np.float32)
        mtt = (self.mtts[i_mtt] * np.exp(offsets[1] * log_step)).astype(np.float32)
        peak = np.where(centre > 0, np.maximum(peak, 0), 0).astype(np.float32)
        return peak, delay, mtt, (i_delay, offsets[0], i_mtt, offsets[1])

    def _fit_at_guide(self, block: np.ndarray, grid):
        """Amplitude a (1/s) and delay (s) per voxel of ``block`` (voxels, t) given the grid
        position of the guide's template (delay index, delay offset, MTT index, MTT offset).

        The delay is searched with the MTT fixed at the guide's; the amplitude is the
        least-squares amplitude of the guide's template (delay and MTT): searching over many
        delays lets noise pick the template it happens to match and inflates low flow, while
        a fixed template gives an unbiased amplitude. Voxels are grouped by MTT index; each
        group is correlated only with the templates of its MTT and the two neighbours that
        interpolate the amplitude.
        """
        guide_delay, guide_delay_offset, i_mtt, mtt_offset = grid
        n_delay, n_mtt = self.delays.size, self.mtts.size
        rank = self._unit.shape[0]
        unit = self._unit.reshape(rank, n_delay, n_mtt)
        norms = self._norms.reshape(n_delay, n_mtt)
        centred = block - block.mean(axis=1, keepdims=True)
        projected = centred @ self._to_subspace
        amplitude = np.zeros(block.shape[0], np.float32)
        delay = np.zeros(block.shape[0], np.float32)
        step = self.delays[1] - self.delays[0] if n_delay > 1 else 0.0
        for m in np.unique(i_mtt):
            group = np.flatnonzero(i_mtt == m)
            near = np.clip([m - 1, m, m + 1], 0, n_mtt - 1)
            local = (projected[group] @ unit[:, :, near].reshape(rank, -1)).reshape(group.size, n_delay, 3)
            rows = np.arange(group.size)
            j = local[:, :, 1].argmax(axis=1)
            inner = (j > 0) & (j < n_delay - 1)
            before, after = np.where(inner, j - 1, j), np.where(inner, j + 1, j)
            centre = local[rows, j, 1]
            offset = _quadratic_vertex(local[rows, before, 1], centre, local[rows, after, 1])
            delay[group] = self.delays[j] + offset * step
            j = guide_delay[group]
            inner = (j > 0) & (j < n_delay - 1)
            before, after = np.where(inner, j - 1, j), np.where(inner, j + 1, j)
            centre, offset = local[rows, j, 1], guide_delay_offset[group]
            at = local[rows, j] / norms[j][:, near]  # (n, 3) amplitudes at MTT m-1, m, m+1
            at_delay = _quadratic_value(local[rows, before, 1] / norms[before, m], at[:, 1],
                                        local[rows, after, 1] / norms[after, m], offset)
            at_mtt = at[:, 1]
            if 0 < m < n_mtt - 1:
                at_mtt = _quadratic_value(at[:, 0], at[:, 1], at[:, 2], mtt_offset[group])
            peak = at_delay + at_mtt - at[:, 1]
            amplitude[group] = np.where(centre > 0, np.maximum(peak, 0), 0)
        return amplitude, delay

    def fit(self, curves, mask=None, mtt_curves=None) -> PerfusionFit:
        """Fit every masked voxel.

        Parameters
        ----------
        curves : array_like, shape (t, ...)
            Tissue enhancement ΔHU (float32 preferred), any spatial shape.
        mask : array_like of bool, spatial shape, optional
            Voxels to fit; None fits all.
        mtt_curves : array_like, shape (t, voxels of ``mask``), optional
            Less noisy (more smoothed) version of the masked curves, in ``np.flatnonzero(mask)``
            order (the guide). Its best template sets each voxel's MTT and the template whose
            amplitude is the flow; Tmax is searched in ``curves`` at that MTT. MTT is the
            parameter worst determined by noisy curves (it trades off against the delay) and
            varies smoothly within tissue, so it is estimated at a coarser scale; the timing
            keeps the finer scale, since Tmax > 6 s outlines the hypoperfused region.

        Returns
        -------
        PerfusionFit
        """
        flat, voxels, mask = masked_curves(curves, mask, self.times.size)
        guide_flat = None
        if mtt_curves is not None:
            guide_flat = np.asarray(mtt_curves)
            if guide_flat.shape != (self.times.size, voxels.size):
                raise InputError(f"mtt_curves have shape {guide_flat.shape}, expected {(self.times.size, voxels.size)}")
        out = {name: np.zeros(voxels.size, np.float32) for name in ("cbf", "cbv", "tmax", "ttp")}
        work = np.empty((min(CHUNK_VOXELS, voxels.size), self._unit.shape[1]), np.float32)
        for part, block in curve_blocks(flat, voxels, CHUNK_VOXELS):
            if guide_flat is None:
                scores = self._scores(block, work)
                amplitude, delay, mtt, _ = self._refine(scores, scores.argmax(axis=1))
            else:
                guide = np.ascontiguousarray(guide_flat[:, part].T, dtype=np.float32)
                scores = self._scores(guide, work)
                _, _, mtt, grid = self._refine(scores, scores.argmax(axis=1))
                amplitude, delay = self._fit_at_guide(block, grid)
            out["cbf"][part] = amplitude * np.float32(FLOW_TO_CBF)
            out["cbv"][part] = amplitude * mtt * np.float32(100 * K_H / RHO_BRAIN)
            out["tmax"][part] = delay
            out["ttp"][part] = self.times[block.argmax(axis=1)] - self.times[0]
        return assemble_fit(out, mask)
