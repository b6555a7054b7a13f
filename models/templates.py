"""Template banks of the parametric model: AIF ⊗ R_eff over a (delay, MTT) grid for one residue
shape k and dispersion τ, held in their own low-rank temporal subspace for fast correlation."""

from __future__ import annotations

import copy

import numpy as np

from .residues import effective_residue, peak_offset

FINE_STEP = 0.05  # s, grid of the template convolution
TEMPLATE_RANK_TOLERANCE = 1e-4


def convolved_templates(aif, times, delays, mtts, shape: float, dispersion: float) -> np.ndarray:
    """AIF ⊗ R_eff for every (delay, MTT), ΔHU·s at the frame times, shape (t, delays, mtts).

    The AIF (ΔHU at ``times``, s) is linearly interpolated on a ``FINE_STEP`` grid, 0 before
    the first frame and held at its last value after the last; the convolution is the
    trapezoid rule of ∫ aif(u) R_eff(t − u) du; each delay (s) shifts the result in time.
    """
    start = times[0] - max(delays.max(), 0.0)
    stop = times[-1] - min(delays.min(), 0.0)
    fine = np.arange(start, stop + FINE_STEP, FINE_STEP)
    aif_fine = np.interp(fine, times, aif, left=0.0, right=aif[-1])
    out = np.empty((times.size, delays.size, mtts.size))
    sample_at = times[:, None] - delays[None, :]  # (t, delays)
    n = aif_fine.size
    length = 1 << (2 * n - 1).bit_length()
    aif_spectrum = np.fft.rfft(aif_fine, length)
    lags = np.arange(n) * FINE_STEP
    for j, mtt in enumerate(mtts):
        kernel = FINE_STEP * effective_residue(lags, mtt, shape, dispersion)
        kernel[0] /= 2
        convolved = np.fft.irfft(aif_spectrum * np.fft.rfft(kernel, length), length)[:n]
        out[:, :, j] = np.interp(sample_at, fine, convolved, left=0.0)
    return out


def residue_peak_offsets(mtts, shape: float, dispersion: float) -> np.ndarray:
    """s* (s) of R_eff for every MTT of ``mtts``: the time of its maximum after the onset."""
    if dispersion <= 0:
        return np.zeros(len(mtts))
    lags = np.arange(0.0, 10.0 * dispersion + 4.0 * max(mtts), FINE_STEP / 5)
    return np.array([peak_offset(lags, effective_residue(lags, mtt, shape, dispersion)) for mtt in mtts])


class TemplateBank:
    """Unit templates AIF ⊗ R_eff of one residue shape k and dispersion τ over the (delay, MTT)
    grid, expressed in their own low-rank temporal subspace.

    Attributes
    ----------
    shape : float
        Gamma shape k of the transit times (1: exponential residue).
    dispersion : float
        τ, s.
    delays, mtts : ndarray
        The template grid, s (uniform in delay, geometric in MTT).
    peak_offsets : ndarray, shape (MTTs,)
        s* of each MTT, s (see :func:`residue_peak_offsets`).
    to_subspace : ndarray, shape (t, rank), float32
        Orthonormal temporal basis of the mean-removed templates.
    unit : ndarray, shape (rank, delays · MTTs), float32
        Unit-length templates in that basis (flat index = delay index · n_MTT + MTT index).
    norms : ndarray, shape (delays · MTTs,), float32
        Length of each mean-removed template (ΔHU·s per unit amplitude).
    """

    def __init__(self, aif, times, delays, mtts, *, shape: float, dispersion: float):
        self.shape, self.dispersion = float(shape), float(dispersion)
        self.delays, self.mtts = delays, mtts
        self.peak_offsets = residue_peak_offsets(mtts, shape, dispersion)
        templates = convolved_templates(aif, times, delays, mtts, shape, dispersion)
        templates = templates - templates.mean(axis=0)  # a free baseline offset
        norms = np.sqrt((templates**2).sum(axis=0))
        self.norms = np.maximum(norms, 1e-12).astype(np.float32).ravel()
        unit = (templates / np.maximum(norms, 1e-12)).reshape(templates.shape[0], -1)
        # The templates span few temporal dimensions: correlate in that subspace (same scores
        # to ~1e-4 of a template's length, at a fraction of the cost).
        u, s, vt = np.linalg.svd(unit, full_matrices=False)
        rank = int(np.count_nonzero(s > TEMPLATE_RANK_TOLERANCE * s[0]))
        self.to_subspace = u[:, :rank].astype(np.float32)
        self.unit = (s[:rank, None] * vt[:rank]).astype(np.float32)

    def projected(self, basis: np.ndarray) -> TemplateBank:
        """This bank for curves that were projected onto the orthonormal temporal columns of
        ``basis`` (t, n) (e.g. by a denoiser that keeps slow components only).

        A curve in that span correlates with a template h as with its projection P h, so
        only the templates' lengths change: scores are divided, and norms multiplied, by the
        fraction |P h| / |h| of each template inside the span.
        """
        inside = np.linalg.norm((np.asarray(basis, np.float32).T @ self.to_subspace) @ self.unit, axis=0)
        inside = np.maximum(inside, np.float32(1e-6))
        bank = copy.copy(self)
        bank.unit = (self.unit / inside).astype(np.float32)
        bank.norms = (self.norms * inside).astype(np.float32)
        return bank

    def peak_offset_at(self, mtt: np.ndarray) -> np.ndarray:
        """s* (s) at MTTs ``mtt`` (s), interpolated in log MTT between the grid's MTTs."""
        if self.dispersion <= 0:
            return np.zeros(np.shape(mtt), np.float32)
        return np.interp(np.log(mtt), np.log(self.mtts), self.peak_offsets).astype(np.float32)

    def scores(self, block: np.ndarray, work: np.ndarray) -> np.ndarray:
        """Correlation × |c| of every curve of ``block`` (voxels, t) with every unit template,
        both with their mean removed (a free baseline offset), in the start of the contiguous
        buffer ``work`` (at least voxels · K elements)."""
        scores = work.reshape(-1)[: block.shape[0] * self.unit.shape[1]].reshape(block.shape[0], -1)
        centred = block - block.mean(axis=1, keepdims=True)
        np.matmul(centred @ self.to_subspace, self.unit, out=scores)
        return scores
