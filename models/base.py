"""Shared machinery of the deconvolution models: input checks, the uniform time grid,
the block-circulant convolution matrix, and the fit object holding the maps.

Conventions (docs/conventions.md): curves are enhancement ΔHU indexed ``(t, ...)``,
times in s from the first frame, and the tissue curve obeys

    C(t) = (ρ / k_H) · (CBF / 6000) · (C_a ⊗ R)(t),

so a deconvolution that returns ``k(t) = (ρ / k_H) · F · R(t)`` gives
CBF [mL/100 g/min] = max k · (k_H / ρ) · 6000.

The model pattern follows DIPY's reconstruction models: configure a model once with the
arterial input function and the frame times (:class:`PerfusionModel`), then
``model.fit(curves, mask, guide=...)`` returns a :class:`PerfusionFit` whose attributes are
the maps. The optional spatial guides that only some models use travel in one
:class:`FitGuide`, passed the same way to every model; each model documents whether it uses
or ignores it. ``models.registry`` builds the models by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from triage.base.errors import InputError

RHO_BRAIN = 1.04  # brain density, g/mL
K_H = (1.0 - 0.45) / (1.0 - 0.25)  # large- to small-vessel hematocrit correction
FLOW_TO_CBF = K_H / RHO_BRAIN * 6000.0  # max of k = (ρ/k_H)·F·R [1/s] -> CBF [mL/100 g/min]
MIN_FRAMES = 5
MAX_GRID_POINTS = 128
CHUNK_VOXELS = 16384  # voxels per block: working arrays of a few MB each


@dataclass(frozen=True)
class PerfusionFit:
    """Perfusion maps of one fit; every map has the spatial shape of the curves.

    All maps are float32 and 0 outside the mask.

    Attributes
    ----------
    cbf : ndarray
        Cerebral blood flow, mL/100 g/min: maximum of the residue function k(t).
    cbv : ndarray
        Cerebral blood volume, mL/100 g: 100 · (k_H/ρ) · ∫C / ∫C_a (trapezoid, true times).
    mtt : ndarray
        Mean transit time, s: 60 · CBV / CBF (0 where CBF is 0).
    tmax : ndarray
        Time of the residue maximum relative to the AIF, s, refined below the grid interval.
        Negative when the tissue bolus arrives before the AIF bolus (see the model docs).
    ttp : ndarray
        Time to peak of the tissue curve, s from the first frame.
    mask : ndarray of bool
        Voxels that were fitted.
    """

    cbf: np.ndarray
    cbv: np.ndarray
    mtt: np.ndarray
    tmax: np.ndarray
    ttp: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class FitGuide:
    """Spatial guides for a fit, computed by the caller at a coarser scale than the curves.

    Every model's ``fit`` accepts one (``guide=``); a model that has no use for it ignores it
    (the block-circulant deconvolutions do; see each model's ``fit``).

    Attributes
    ----------
    mtt_curves : ndarray, shape (t, masked voxels), optional
        Less noisy (more smoothed) tissue enhancement ΔHU of the masked voxels, in
        ``np.flatnonzero(mask)`` order. Used by :class:`models.parametric.ParametricResidueModel`
        to set each voxel's MTT (s) and dispersion.
    delay_mtt : callable, optional
        With ``mtt_curves``: maps the guide's MTT map (s; float32 array of the mask's spatial
        shape, 0 outside the mask) to the MTT (s) at which each voxel's delay is searched, an
        array of that shape (e.g. a smoothing of the MTT within the mask).
    representative : ndarray of int, shape (masked voxels,), optional
        With ``mtt_curves``: for each masked voxel, the masked voxel (index in
        ``np.flatnonzero(mask)`` order) whose guide curve stands for it. The guide varies
        slowly in space, so a model may fit the guide at the representatives only and give
        every voxel its representative's parameters (a voxel that represents itself is
        fitted). None: every voxel represents itself.
    temporal_basis : ndarray, shape (t, n), optional
        Orthonormal temporal columns whose span holds the curves and the guide curves (a
        denoiser kept only these components); a model may compare its templates with the
        curves inside that span.
    """

    mtt_curves: np.ndarray | None = None
    delay_mtt: Callable[[np.ndarray], np.ndarray] | None = None
    representative: np.ndarray | None = None
    temporal_basis: np.ndarray | None = None


class PerfusionModel:
    """Interface of every perfusion model: configured once, then fitted to any number of series.

    A subclass takes the arterial input (ΔHU, already scaled for partial volume) and the frame
    times (s) as its first two arguments, ``Model(aif, times, **options)``, and implements
    :meth:`fit`.
    """

    def fit(self, curves, mask=None, *, guide: FitGuide | None = None) -> PerfusionFit:
        """Fit the masked voxels of ``curves`` (t, ...) ΔHU; return their maps.

        Parameters
        ----------
        curves : array_like, shape (t, ...)
            Tissue enhancement ΔHU (float32 preferred), any spatial shape.
        mask : array_like of bool, spatial shape, optional
            Voxels to fit; None fits all.
        guide : FitGuide, optional
            Spatial guides; models that do not use them ignore them.

        Returns
        -------
        PerfusionFit
        """
        raise NotImplementedError


def check_aif_and_times(aif, times) -> tuple[np.ndarray, np.ndarray]:
    """Validate the AIF and the frame times; return them as float64 arrays.

    Raises
    ------
    InputError
        Mismatched lengths, fewer than ``MIN_FRAMES`` frames, times not strictly increasing
        or not finite, AIF not finite or without positive enhancement.
    """
    aif = np.asarray(aif, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if aif.ndim != 1 or times.ndim != 1:
        raise InputError("AIF and frame times must be 1-D arrays")
    if aif.size != times.size:
        raise InputError(f"AIF has {aif.size} samples but there are {times.size} frame times")
    if times.size < MIN_FRAMES:
        raise InputError(f"perfusion analysis needs at least {MIN_FRAMES} frames, got {times.size}")
    if not (np.all(np.isfinite(times)) and np.all(np.diff(times) > 0)):
        raise InputError("frame times must be finite and strictly increasing")
    if not np.all(np.isfinite(aif)):
        raise InputError("AIF contains non-finite values")
    if aif.max() <= 0 or np.trapezoid(aif, times) <= 0:
        raise InputError("AIF shows no positive enhancement (all zero or negative)")
    return aif, times


def uniform_grid(times: np.ndarray) -> np.ndarray:
    """Uniform time grid for the deconvolution, s.

    The interval is the smallest frame interval, so the densest part of the acquisition
    (usually the bolus passage) keeps its resolution, widened if needed so that the grid has
    at most ``max(frames, MAX_GRID_POINTS)`` points (the cost grows with the grid size; a
    grid of 128 points still resolves 0.5-1 s over a typical 60-120 s acquisition). The grid
    starts at the first frame and does not extend past the last one.
    """
    span = times[-1] - times[0]
    dt = max(np.diff(times).min(), span / (max(times.size, MAX_GRID_POINTS) - 1))
    n = int(np.floor(span / dt + 1e-6)) + 1
    return times[0] + dt * np.arange(n)


def interpolation_matrix(times: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear-interpolation weights W, shape (grid, frames): ``W @ y`` samples y on the grid."""
    right = np.clip(np.searchsorted(times, grid, side="right"), 1, times.size - 1)
    left = right - 1
    frac = np.clip((grid - times[left]) / (times[right] - times[left]), 0.0, 1.0)
    weights = np.zeros((grid.size, times.size))
    rows = np.arange(grid.size)
    weights[rows, left] = 1.0 - frac
    weights[rows, right] += frac
    return weights


def trapezoid_weights(times: np.ndarray) -> np.ndarray:
    """Weights w, shape (frames,), with ``w @ y`` = trapezoid integral of y over times (ΔHU·s)."""
    steps = np.diff(times)
    weights = np.zeros_like(times)
    weights[:-1] += steps / 2
    weights[1:] += steps / 2
    return weights


def block_circulant_matrix(aif_on_grid: np.ndarray, dt: float) -> np.ndarray:
    """Block-circulant convolution matrix of the AIF, zero-padded to twice its length.

    ``A[i, j] = dt · a[(i - j) mod L]`` with ``L = 2 N`` (Wu et al., MRM 2003), so a residue
    that starts before sample 0 (tissue earlier than the AIF) wraps to the end instead of being
    lost. ``a`` is the AIF smoothed with the weights (1, 4, 1)/6: integrating the product of a
    piecewise-linear AIF and residue exactly gives these weights, and they reduce the
    under-estimation of high flow that the rectangle rule shows at 1-2 s sampling.
    """
    n = aif_on_grid.size
    padded = np.zeros(2 * n)
    padded[:n] = aif_on_grid
    kernel = (np.roll(padded, 1) + 4.0 * padded + np.roll(padded, -1)) / 6.0
    lags = np.subtract.outer(np.arange(2 * n), np.arange(2 * n)) % (2 * n)
    return dt * kernel[lags]


def parabolic_offset(before: np.ndarray, peak: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Sub-sample position of a maximum from three samples, in samples, within [-0.5, 0.5]."""
    curvature = before - 2.0 * peak + after
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = 0.5 * (before - after) / curvature
    return np.where(curvature < 0, np.clip(offset, -0.5, 0.5), 0.0).astype(np.float32)


class DeconvolutionModel(PerfusionModel):
    """Base of the block-circulant deconvolution models.

    With the SVD ``A = U S Vᵀ`` of the block-circulant AIF matrix
    (:func:`block_circulant_matrix`, size 2 N), a regularised residue is
    ``k = Σ_i v_i f_i (u_iᵀ c) / s_i`` with filter factors ``f_i`` (1/0 for truncated SVD,
    ``s²/(s² + λ²)`` for Tikhonov). Subclasses pass a ladder of filters, from the strongest to
    the weakest regularisation, to ``_set_filters``.

    Per voxel the weakest level is kept whose residue has an oscillation index (Wu et al.,
    MRM 2003)

        OI = Σ_i |k[i+1] − 2 k[i] + k[i−1]| / (2 N · max|k|)  ≤  ``oi_target``

    (circular second difference over the 2 N padded samples). OI is scale free, so noisier
    (lower-flow) voxels get stronger regularisation, which keeps noise from inflating the
    maximum of their residue, while noise-free curves keep the weakest level. The level is
    found by bisection over the ladder (OI grows as the regularisation weakens; where it does
    not, bisection returns a level at which OI crosses the target): a ladder of ≤ 2^m levels
    costs m evaluations, each one matrix product giving k and D₂k for a group of voxels.
    Only the chosen residue is then formed.

    Parameters
    ----------
    aif : array_like, shape (t,)
        Arterial enhancement ΔHU, already scaled for partial volume.
    times : array_like, shape (t,)
        Frame times, s, strictly increasing, possibly non-uniform: curves are resampled
        linearly onto :func:`uniform_grid` (one matrix product folded into the first
        deconvolution product); areas (CBV) and TTP use the true times.
    oi_target : float
        Largest oscillation index accepted.
    """

    def __init__(self, aif, times, *, oi_target: float):
        self.aif, self.times = check_aif_and_times(aif, times)
        self.oi_target = float(oi_target)
        self.grid = uniform_grid(self.times)
        self.dt = float(self.grid[1] - self.grid[0])
        self.resample = interpolation_matrix(self.times, self.grid)  # (N, t)
        self.area_weights = trapezoid_weights(self.times)
        self.aif_area = float(self.area_weights @ self.aif)
        matrix = block_circulant_matrix(self.resample @ self.aif, self.dt)
        self.u, self.s, vt = np.linalg.svd(matrix)
        self.v = vt.T
        self._to_coefficients = (self.resample.T @ self.u[: self.n_grid]).astype(np.float32)
        self._basis_t = vt.astype(np.float32)

    @property
    def n_grid(self) -> int:
        """Number of uniform grid points N (the padded residue has 2 N samples)."""
        return self.grid.size

    def _set_filters(self, filters: np.ndarray) -> None:
        """Store the filter ladder (levels, 2 N) and the operators derived from it."""
        gains = filters / np.maximum(self.s, 1e-12 * self.s.max())  # f_i / s_i
        self._gains = gains.astype(np.float32)
        length = self.v.shape[0]
        second_difference = np.roll(np.eye(length), 1, 0) - 2 * np.eye(length) + np.roll(np.eye(length), -1, 0)
        to_coefficients = self._to_coefficients.astype(np.float64)
        operators = []
        for gain in gains:
            to_residue = (to_coefficients * gain) @ self.v.T  # (t, 2N)
            operators.append(np.concatenate([to_residue, to_residue @ second_difference.T], axis=1))
        self._oi_operators = np.asarray(operators, dtype=np.float32)  # (levels, t, 4N)

    def _oi_within_target(self, curves: np.ndarray, level: int) -> np.ndarray:
        """Whether the residues of ``curves`` (voxels, t) at ``level`` have OI ≤ the target."""
        length = self.v.shape[0]
        both = np.abs(curves @ self._oi_operators[level])  # |k|, |D₂ k|
        return both[:, length:].sum(axis=1) <= np.float32(self.oi_target * length) * both[:, :length].max(axis=1)

    def _residue_peaks(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maximum of k(t) and its delay (s) per voxel of a block (voxels, t) float32.

        The ladder level is found per voxel by bisection (see the class notes).
        """
        low = np.zeros(block.shape[0], np.intp)  # weakest level known to pass (0 by default)
        high = np.full(block.shape[0], self._oi_operators.shape[0] - 1, np.intp)
        while np.any(low < high):
            active = np.flatnonzero(low < high)
            middle = (low[active] + high[active] + 1) // 2
            passed = np.empty(active.size, bool)
            for level in np.unique(middle):
                group = middle == level
                passed[group] = self._oi_within_target(block[active[group]], level)
            low[active] = np.where(passed, middle, low[active])
            high[active] = np.where(passed, high[active], middle - 1)
        coefficients = block @ self._to_coefficients
        residues = (coefficients * self._gains[low]) @ self._basis_t
        return self._peak_of(residues)

    def _delay_from_index(self, index: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Delay in s of residue sample ``index`` (+ sub-sample offset); the second half of the
        padded residue holds negative delays (tissue bolus earlier than the AIF bolus)."""
        length = 2 * self.n_grid
        signed = np.where(index >= self.n_grid, index - length, index)
        return ((signed + offset) * self.dt).astype(np.float32)

    def _peak_of(self, residues: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maximum of each residue row (voxels, 2N) and its delay in s (parabolic refinement)."""
        index = residues.argmax(axis=1)
        rows = np.arange(residues.shape[0])
        length = residues.shape[1]
        peak = residues[rows, index]
        offset = parabolic_offset(residues[rows, index - 1], peak, residues[rows, (index + 1) % length])
        return peak, self._delay_from_index(index, offset)

    def fit(self, curves, mask=None, *, guide: FitGuide | None = None) -> PerfusionFit:
        """Deconvolve every masked voxel.

        Parameters
        ----------
        curves : array_like, shape (t, ...)
            Tissue enhancement ΔHU (float32 preferred), any spatial shape.
        mask : array_like of bool, spatial shape, optional
            Voxels to fit; None fits all.
        guide : FitGuide, optional
            Ignored: the deconvolution of each voxel needs no spatial guide.

        Returns
        -------
        PerfusionFit
        """
        flat, voxels, mask = masked_curves(curves, mask, self.times.size)
        out = {name: np.zeros(voxels.size, np.float32) for name in ("cbf", "cbv", "tmax", "ttp")}
        area_weights = self.area_weights.astype(np.float32)
        for part, block in curve_blocks(flat, voxels):
            peak, delay = self._residue_peaks(block)
            out["cbf"][part] = np.maximum(peak, 0) * np.float32(FLOW_TO_CBF)
            out["tmax"][part] = delay
            out["cbv"][part] = (block @ area_weights) * np.float32(100 * K_H / RHO_BRAIN / self.aif_area)
            out["ttp"][part] = self.times[block.argmax(axis=1)] - self.times[0]
        return assemble_fit(out, mask)


def masked_curves(curves, mask, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check curves (t, ...) and mask; return curves as (t, voxels), masked flat indices, mask.

    Raises
    ------
    InputError
        Wrong number of frames or a mask whose shape is not the curves' spatial shape.
    """
    curves = np.asarray(curves)
    if curves.ndim < 1 or curves.shape[0] != n_frames:
        raise InputError(f"curves have {curves.shape[0] if curves.ndim else 0} frames, the model {n_frames}")
    spatial = curves.shape[1:]
    mask = np.ones(spatial, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != spatial:
        raise InputError(f"mask shape {mask.shape} does not match the curves' spatial shape {spatial}")
    return curves.reshape(n_frames, -1), np.flatnonzero(mask), mask


def curve_blocks(flat: np.ndarray, voxels: np.ndarray, chunk: int = CHUNK_VOXELS):
    """Yield (slice into ``voxels``, float32 block (voxels, t)) in chunks of ``chunk`` voxels.

    Raises
    ------
    InputError
        A block holds non-finite values.
    """
    for start in range(0, voxels.size, chunk):
        part = slice(start, start + chunk)
        block = np.ascontiguousarray(flat[:, voxels[part]].T, dtype=np.float32)
        if not np.isfinite(block).all():
            raise InputError("tissue curves contain non-finite values")
        yield part, block


def assemble_fit(values: dict, mask: np.ndarray) -> PerfusionFit:
    """A :class:`PerfusionFit` from per-voxel ``cbf``, ``cbv``, ``tmax``, ``ttp`` (MTT derived)."""
    cbf, cbv = values["cbf"], values["cbv"]
    with np.errstate(divide="ignore", invalid="ignore"):
        mtt = np.where(cbf > 1e-3, 60 * cbv / cbf, 0).astype(np.float32)
    maps = {}
    for name, per_voxel in {**values, "mtt": mtt}.items():
        full = np.zeros(mask.shape, np.float32)
        full[mask] = per_voxel
        maps[name] = full
    return PerfusionFit(mask=mask, **maps)
