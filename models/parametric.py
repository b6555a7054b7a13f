"""Parametric deconvolution: a delayed residue of gamma-distributed transit times, optionally
dispersed, fitted by template matching.

The residue R_k (:mod:`models.residues`) has a gamma distribution of transit times of shape k
and mean MTT; k = 1 is the one-compartment exponential exp(−(t − d) / MTT) (Østergaard et al.,
MRM 1996), larger k a flatter-topped residue (Mouridsen et al., NeuroImage 2006). With it, the
tissue curve is C(t) = a · h_{d,MTT,k,τ}(t), h = C_a ⊗ R_eff, a = (ρ / k_H) · F. For white
Gaussian noise the maximum-likelihood template is the one with the largest normalised
correlation with C, and a is the least-squares amplitude. Unlike truncated deconvolution it
does not smooth the residue (no CBF under-estimation, no Tmax delay from regularisation) and
it does not assume that the curves return to baseline within the acquisition.

The shape sets the flow read from a curve: the curve fixes CBV and, roughly, the mean time
tracer spends in the tissue, MTT · (1 + CV²) / 2 with CV = 1/√k the transit times'
coefficient of variation, so a residue too peaked for the tissue reads a shorter MTT and a
higher CBF = CBV / MTT. At 1–2 s sampling and clinical noise the shape is weakly determined by
one curve, so it is chosen on the less noisy guide curves with the MTT (``shapes``: several
shapes; one shape fixes it).

Dispersion of the bolus on its way from the measured artery to the tissue (collateral flow)
is modelled by an exponential kernel g_τ(t) = exp(−t/τ)/τ (Calamante et al., MRM 2000): the
effective residue R_eff = g_τ ⊗ R_k has the area MTT of R_k and its maximum s* after the onset
d. Tmax, the time of the maximum of k = F · R_eff that model-free deconvolution measures, is
d + s*. CBF is the flow F itself, the amplitude of the fitted residue: max k = F · R_eff(s*)
would count the arterial transport delay as lower tissue flow (on the phantom it enlarges the
rCBF < 30 % core of dispersed and of flat-residue tissue well beyond the truth).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np

from triage.base.errors import InputError

from .base import (
    FLOW_TO_CBF,
    K_H,
    RHO_BRAIN,
    FitGuide,
    PerfusionFit,
    PerfusionModel,
    assemble_fit,
    check_aif_and_times,
    curve_blocks,
    masked_curves,
)
from .templates import TemplateBank

DEFAULT_DELAYS = tuple(np.arange(-5.0, 30.01, 0.5))  # s
DEFAULT_MTTS = tuple(np.geomspace(1.0, 40.0, 21))  # s, ratio 1.2 between neighbours
DEFAULT_SHAPES = (1.0,)  # gamma shapes k of the transit times (1: the exponential residue)
# Gamma shape of the "gamma" models: CV 1/√2, between the exponential (CV 1) and the flatter
# residues (gamma 5, CV 0.45; linear, box). The shape is not determined by curves sampled every
# 1-2 s, so it is assumed; on clean curves (benchmarks/bench_shapes.py) the flow then reads
# −29 to −16 % on exponential tissue, +9 to +34 % on gamma-3 and +3 to +7 % on lognormal
# tissue, against +31 to +77 % (gamma 3, lognormal) for the exponential model.
MIDDLE_SHAPE = 2.0
SHAPE_SEARCH = (1.0, 1.5, 2.0, 3.0, 5.0, 10.0)  # model "gamma-shapes"
DEFAULT_DISPERSIONS = (0.0,)  # s, time constants τ of the dispersion kernel (0: none searched)
# The opt-in dispersion search (model "exponential-dispersed"): not the default yet, because on
# the undispersed phantom cases it also fits dispersion to smoothed mixtures of neighbouring
# delays (penumbra Tmax +1 s, Tmax > 10 s over-counted by ~30 %).
DISPERSION_SEARCH = (0.0, 1.0, 2.0, 3.5)
DISPERSION_SEARCH_DELAY = 2.0  # s: τ > 0 is searched only where the τ = 0 fit is later than this
# τ > 0 replaces τ = 0 only when it lowers the squared residual by more than this many times
# the residual variance per frame (the extra parameter must explain more than noise would).
DISPERSION_EVIDENCE = 2.0
CHUNK_VOXELS = 4096  # the (voxels, templates) score array of a block stays ~25 MB


def _nearest_index(grid: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the nearest value of the geometric ``grid`` (in log scale) for each of ``values``."""
    position = np.log(values / grid[0]) / np.log(grid[1] / grid[0]) if grid.size > 1 else np.zeros(values.shape)
    return np.clip(np.rint(position), 0, grid.size - 1).astype(np.intp)


def _quadratic_vertex(before, centre, after):
    """Offset (−0.5 … 0.5 samples) of the vertex of the parabola through three samples."""
    curvature = before - 2.0 * centre + after
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = 0.5 * (before - after) / curvature
    return np.where(curvature < 0, np.clip(offset, -0.5, 0.5), 0.0).astype(np.float32)


def _quadratic_value(before, centre, after, offset):
    """Value at ``offset`` samples of the parabola through three samples at −1, 0, 1."""
    return centre + 0.5 * offset * (after - before) + 0.5 * offset**2 * (after - 2.0 * centre + before)


class ParametricResidueModel(PerfusionModel):
    """Per-voxel fit of a delayed, optionally dispersed residue of gamma-distributed transit
    times on a grid of (delay, MTT) templates per shape k and dispersion τ.

    Every template is the measured AIF (linearly interpolated, held at its last value past the
    last frame, 0 before the first) convolved on a fine grid with R_eff (:mod:`models.templates`), sampled at
    the frame times and normalised to unit length. One matrix product gives each voxel's
    correlation with all templates of τ = 0 of one shape, and each voxel keeps the best
    template over the shapes; voxels whose best τ = 0 delay exceeds
    ``DISPERSION_SEARCH_DELAY`` (where collateral dispersion occurs) are also correlated with
    the templates of every τ > 0 and keep the τ with the best correlation. The best template
    is refined below the grid spacing by a parabola through its neighbours in delay and in log
    MTT (the amplitude is interpolated with the same offsets); k and τ stay on their grids.

    A τ > 0 template must also lower the squared residual by more than
    ``DISPERSION_EVIDENCE`` times the residual variance per frame: with the delay and MTT
    free, dispersion changes a curve little, and noise alone would otherwise pick it and
    shift Tmax late.

    Maps: CBF = a · (k_H/ρ) · 6000, the flow F; Tmax = d + s*, the time of the maximum of
    k = F · R_eff (d for τ = 0: the exponential residue peaks at its onset);
    CBV = 100 · (k_H/ρ) · a · MTT, the area ratio ∫C/∫C_a of the fitted curve over all time
    (R_eff has the area MTT of R), so it is not lowered when the acquisition ends before the
    tissue curve returns to baseline; MTT = 60 · CBV / CBF, the MTT of R; TTP from the
    measured curves. Voxels without positive correlation with any template get
    CBF = CBV = 0.

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
        Template mean transit times of R, s, geometrically spaced.
    shapes : sequence of float
        Gamma shapes k ≥ 1 of the transit times (``(1.0,)``: the exponential residue only).
    dispersions : sequence of float
        Dispersion time constants τ, s, starting with 0 (no dispersion); ``(0.0,)`` fits the
        undispersed model only.
    guided : bool
        Whether :meth:`fit` uses a :class:`models.base.FitGuide` (the MTT from coarse curves,
        the smoothed MTT at which the delay is searched); False fits the curves as they are
        whatever guide is passed.
    """

    def __init__(self, aif, times, *, delays=DEFAULT_DELAYS, mtts=DEFAULT_MTTS, shapes=DEFAULT_SHAPES,
                 dispersions=DEFAULT_DISPERSIONS, guided: bool = True):
        self.aif, self.times = check_aif_and_times(aif, times)
        self.guided = bool(guided)
        self.delays = np.asarray(delays, dtype=np.float64)
        self.mtts = np.asarray(mtts, dtype=np.float64)
        shapes = np.asarray(shapes, dtype=np.float64)
        dispersions = np.asarray(dispersions, dtype=np.float64)
        if dispersions.size == 0 or dispersions[0] != 0 or np.any(dispersions[1:] <= 0):
            raise InputError("dispersions must start with 0 and be positive after it")
        if shapes.size == 0 or np.any(shapes < 1):
            raise InputError("residue shapes must be at least 1 (1: exponential)")
        self.banks = [TemplateBank(self.aif, self.times, self.delays, self.mtts, shape=k, dispersion=0.0)
                      for k in shapes]
        self.n_undispersed = len(self.banks)
        for tau in dispersions[1:]:
            # R_eff is symmetric in (MTT, τ) up to its area: only τ ≤ MTT is identifiable.
            # Dispersion is searched in late tissue only: no negative delays.
            delays = self.delays[self.delays >= 0]
            mtts = self.mtts[self.mtts >= tau]
            if delays.size < 3 or mtts.size < 3:
                raise InputError(f"dispersion {tau} s leaves fewer than 3 delays or MTTs on the grid")
            self.banks += [TemplateBank(self.aif, self.times, delays, mtts, shape=k, dispersion=tau) for k in shapes]

    def _refine(self, bank: TemplateBank, scores: np.ndarray, best: np.ndarray):
        """Sub-grid refinement around template ``best`` of each row of ``scores`` (of ``bank``).

        Returns amplitude a (1/s, 0 without positive correlation), delay (s), MTT (s), the
        grid position (delay index, delay offset, MTT index, MTT offset; offsets in grid steps)
        and the score at the refined position (the parabolas' vertex values added up), which
        compares templates of different banks without the grid's quantisation.
        """
        n_mtt = bank.mtts.size
        rows = np.arange(scores.shape[0])
        i_delay, i_mtt = np.divmod(best, n_mtt)
        centre = scores[rows, best]
        at_best = centre / bank.norms[best]  # least-squares amplitude of the best template
        peak = at_best.copy()
        refined = centre.copy()
        offsets = []
        for index, count, stride in ((i_delay, bank.delays.size, n_mtt), (i_mtt, n_mtt, 1)):
            inner = (index > 0) & (index < count - 1)
            lower = np.where(inner, best - stride, best)
            upper = np.where(inner, best + stride, best)
            offset = _quadratic_vertex(scores[rows, lower], centre, scores[rows, upper])
            offsets.append(offset)
            refined += _quadratic_value(scores[rows, lower], centre, scores[rows, upper], offset) - centre
            peak += _quadratic_value(scores[rows, lower] / bank.norms[lower], at_best,
                                     scores[rows, upper] / bank.norms[upper], offset) - at_best
        step_delay = bank.delays[1] - bank.delays[0] if bank.delays.size > 1 else 0.0
        log_step = np.log(bank.mtts[1] / bank.mtts[0]) if n_mtt > 1 else 0.0
        delay = (bank.delays[i_delay] + offsets[0] * step_delay).astype(np.float32)
        mtt = (bank.mtts[i_mtt] * np.exp(offsets[1] * log_step)).astype(np.float32)
        peak = np.where(centre > 0, np.maximum(peak, 0), 0).astype(np.float32)
        return peak, delay, mtt, (i_delay, offsets[0], i_mtt, offsets[1]), refined

    def _fit_at_guide(self, bank: TemplateBank, block: np.ndarray, grid, search_index: np.ndarray):
        """Amplitude a (1/s) and delay (s) per voxel of ``block`` (voxels, t) given the grid
        position of the guide's template in ``bank`` (delay index, delay offset, MTT index,
        MTT offset) and the MTT index at which each voxel's delay is searched.

        The delay is searched with the MTT (and τ) fixed, at ``search_index`` (the guide's MTT
        index, or a regularised one); the amplitude is the least-squares amplitude of the
        guide's template (delay and MTT): searching over many delays lets noise pick the
        template it happens to match and inflates low flow, while a fixed template gives an
        unbiased amplitude. Voxels are grouped by MTT index; each group is correlated only with
        the templates of its MTT and the two neighbours that interpolate the amplitude (and,
        for voxels searched at another MTT, with the templates of that one).
        """
        guide_delay, guide_delay_offset, i_mtt, mtt_offset = grid
        n_delay, n_mtt = bank.delays.size, bank.mtts.size
        rank = bank.unit.shape[0]
        unit = bank.unit.reshape(rank, n_delay, n_mtt)
        norms = bank.norms.reshape(n_delay, n_mtt)
        centred = block - block.mean(axis=1, keepdims=True)
        projected = centred @ bank.to_subspace
        amplitude = np.zeros(block.shape[0], np.float32)
        delay = np.zeros(block.shape[0], np.float32)
        step = bank.delays[1] - bank.delays[0] if n_delay > 1 else 0.0

        def search(group: np.ndarray, scores: np.ndarray) -> None:
            """Delay of the best of ``scores`` (group voxels, delays), refined by a parabola."""
            rows = np.arange(group.size)
            j = scores.argmax(axis=1)
            inner = (j > 0) & (j < n_delay - 1)
            before, after = np.where(inner, j - 1, j), np.where(inner, j + 1, j)
            offset = _quadratic_vertex(scores[rows, before], scores[rows, j], scores[rows, after])
            delay[group] = bank.delays[j] + offset * step

        for m in np.unique(i_mtt):
            group = np.flatnonzero(i_mtt == m)
            near = np.clip([m - 1, m, m + 1], 0, n_mtt - 1)
            local = (projected[group] @ unit[:, :, near].reshape(rank, -1)).reshape(group.size, n_delay, 3)
            rows = np.arange(group.size)
            here = search_index[group] == m
            search(group[here], local[here, :, 1])
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
        elsewhere = np.flatnonzero(search_index != i_mtt)
        for m in np.unique(search_index[elsewhere]):
            group = elsewhere[search_index[elsewhere] == m]
            search(group, projected[group] @ unit[:, :, m])
        return amplitude, delay

    def _search_dispersion(self, block: np.ndarray, rows: np.ndarray, state: dict, work: np.ndarray):
        """Replace the τ = 0 fit of the curves ``block`` (voxels, t), at positions ``rows`` of
        the arrays of ``state``, by the best τ > 0 template where that one is evident.

        ``state`` holds per voxel the best score, amplitude (1/s), delay (s), MTT (s), grid
        position (list of 4 arrays, see :meth:`_refine`) and bank index; updated in place.
        """
        centred = block - block.mean(axis=1, keepdims=True)
        energy = np.einsum("ij,ij->i", centred, centred)  # |c|², ΔHU²
        free = max(block.shape[1] - 4, 1)  # frames minus (offset, amplitude, delay, MTT)
        undispersed = state["score"][rows]
        for b in range(self.n_undispersed, len(self.banks)):
            bank = self.banks[b]
            scores = bank.scores(block, work)
            fitted = self._refine(bank, scores, scores.argmax(axis=1))
            score = fitted[4]
            residual = np.maximum(energy - score**2, 0.0) / free  # variance per frame
            evident = score**2 - undispersed**2 > DISPERSION_EVIDENCE * residual
            better = np.flatnonzero(evident & (score > state["score"][rows]))
            if better.size == 0:
                continue
            chosen = rows[better]
            state["score"][chosen] = score[better]
            state["bank"][chosen] = b
            _store_refined(state, chosen, [part[better] for part in fitted[:3]], [part[better] for part in fitted[3]])

    def fit(self, curves, mask=None, *, guide: FitGuide | None = None) -> PerfusionFit:
        """Fit every masked voxel.

        Parameters
        ----------
        curves : array_like, shape (t, ...)
            Tissue enhancement ΔHU (float32 preferred), any spatial shape.
        mask : array_like of bool, spatial shape, optional
            Voxels to fit; None fits all.
        guide : FitGuide, optional
            Used when the model is ``guided`` (ignored otherwise, and ignored without
            ``guide.mtt_curves``). The best template of ``guide.mtt_curves`` sets each voxel's
            MTT and τ and the template whose amplitude is the flow; the delay is searched in
            ``curves`` at that MTT and τ. MTT is the parameter worst determined by noisy curves
            (it trades off against the delay) and varies smoothly within tissue, so it is
            estimated at a coarser scale; the timing keeps the finer scale, since Tmax > 6 s
            outlines the hypoperfused region. ``guide.delay_mtt``, if given, maps the guide's
            MTT map (s) to the MTT (s) at which each voxel's delay is searched: even the
            guide's MTT is noisy at clinical noise, and a voxel's fitted delay moves against
            its MTT error (an MTT too long by 10 s advances Tmax by several seconds), so a
            penumbra read with a noisy MTT loses its late voxels below Tmax 6 s. Flow, CBV and
            MTT keep the guide's template; Tmax is the delay (plus the dispersed residue's
            peak offset) at the returned MTT.

        Returns
        -------
        PerfusionFit

        Raises
        ------
        InputError
            Curves or mask inconsistent (see :func:`models.base.masked_curves`), guide curves
            not of shape (t, masked voxels), or a ``delay_mtt`` result that is not a positive,
            finite MTT for every masked voxel.
        """
        if self.guided and guide is not None and guide.temporal_basis is not None:
            return self._projected(guide.temporal_basis).fit(curves, mask, guide=replace(guide, temporal_basis=None))
        flat, voxels, mask = masked_curves(curves, mask, self.times.size)
        guide_flat = self._guide_curves(guide, voxels.size)
        state = _new_state(voxels.size)
        work = np.empty((min(CHUNK_VOXELS, voxels.size), max(bank.unit.shape[1] for bank in self.banks)), np.float32)
        # The guide (else the curves) sets the template.
        if guide_flat is None:
            self._fit_templates(flat, voxels, state, work, measure_ttp=True)
            search_mtt = state["mtt"]
        else:
            self._fit_guide(guide_flat, guide.representative, state, work)
            search_mtt = self._delay_search_mtt(guide.delay_mtt, state, mask)
            self._refit_delays(flat, voxels, state, search_mtt if guide.delay_mtt is not None else None)
        return self._maps(state, search_mtt, mask)

    def _projected(self, basis) -> ParametricResidueModel:
        """This model with every bank restricted to the span of ``basis`` (t, n) (see
        :meth:`models.templates.TemplateBank.projected`)."""
        basis = np.asarray(basis)
        if basis.ndim != 2 or basis.shape[0] != self.times.size:
            raise InputError(f"guide.temporal_basis has shape {basis.shape}, expected ({self.times.size}, n)")
        model = copy.copy(self)
        model.banks = [bank.projected(basis) for bank in self.banks]
        return model

    def _guide_curves(self, guide: FitGuide | None, n_voxels: int) -> np.ndarray | None:
        """The guide's curves (t, masked voxels) ΔHU when this model uses them, else None."""
        if not self.guided or guide is None or guide.mtt_curves is None:
            return None
        guide_flat = np.asarray(guide.mtt_curves)
        if guide_flat.shape != (self.times.size, n_voxels):
            raise InputError(f"guide.mtt_curves have shape {guide_flat.shape}, expected {(self.times.size, n_voxels)}")
        return guide_flat

    def _fit_guide(self, guide_flat: np.ndarray, representative: np.ndarray | None, state: dict, work: np.ndarray) -> None:
        """Best template of the guide curves (t, masked voxels) into ``state``, fitted at the
        ``representative`` voxels only (see :class:`models.base.FitGuide`) and copied to the
        voxels they stand for."""
        n = guide_flat.shape[1]
        if representative is None:
            self._fit_templates(guide_flat, np.arange(n), state, work, measure_ttp=False)
            return
        representative = np.asarray(representative)
        if representative.shape != (n,) or representative.min(initial=0) < 0 or representative.max(initial=0) >= n:
            raise InputError("guide.representative must give a masked voxel index for every masked voxel")
        fitted, position = np.unique(representative, return_inverse=True)
        own = _new_state(fitted.size)
        self._fit_templates(guide_flat, fitted, own, work, measure_ttp=False)
        for name in ("score", "amplitude", "delay", "mtt", "bank"):
            state[name][:] = own[name][position]
        for whole, part in zip(state["grid"], own["grid"]):
            whole[:] = part[position]

    def _fit_templates(self, source: np.ndarray, source_voxels: np.ndarray, state: dict, work: np.ndarray, *,
                       measure_ttp: bool) -> None:
        """Best template of every curve ``source[:, source_voxels]`` (ΔHU) into ``state``.

        τ = 0 everywhere, then τ > 0 where the τ = 0 delay is later than
        ``DISPERSION_SEARCH_DELAY`` s, in blocks of late voxels only. With ``measure_ttp`` the
        curves' time to peak (s from the first frame) is stored too.
        """
        for part, block in curve_blocks(source, source_voxels, CHUNK_VOXELS):
            rows = np.arange(part.start, part.start + block.shape[0])
            for b in range(self.n_undispersed):
                scores = self.banks[b].scores(block, work)
                fitted = self._refine(self.banks[b], scores, scores.argmax(axis=1))
                score = fitted[4]
                better = np.flatnonzero(score > state["score"][rows]) if b else np.arange(score.size)
                state["score"][rows[better]] = score[better]
                state["bank"][rows[better]] = b
                _store_refined(state, rows[better], [part[better] for part in fitted[:3]],
                               [part[better] for part in fitted[3]])
            if measure_ttp:
                state["ttp"][part] = self.times[block.argmax(axis=1)] - self.times[0]
        late = np.flatnonzero(state["delay"] > DISPERSION_SEARCH_DELAY)
        if len(self.banks) > self.n_undispersed:
            for part, block in curve_blocks(source, source_voxels[late], CHUNK_VOXELS):
                self._search_dispersion(block, late[part], state, work)

    @staticmethod
    def _delay_search_mtt(delay_mtt, state: dict, mask: np.ndarray) -> np.ndarray:
        """MTT (s) per masked voxel at which its delay is searched: ``delay_mtt`` of the
        guide's MTT map, or the guide's MTT itself without ``delay_mtt``."""
        if delay_mtt is None:
            return state["mtt"]
        guide_mtt = np.zeros(mask.shape, np.float32)
        guide_mtt[mask] = state["mtt"]
        search_mtt = np.asarray(delay_mtt(guide_mtt), np.float32)[mask]
        if search_mtt.shape != (state["mtt"].size,) or not np.all(np.isfinite(search_mtt) & (search_mtt > 0)):
            raise InputError("guide.delay_mtt must return a positive, finite MTT for every masked voxel")
        return search_mtt

    def _refit_delays(self, flat: np.ndarray, voxels: np.ndarray, state: dict, search_mtt: np.ndarray | None) -> None:
        """Amplitude (1/s), delay (s) and TTP (s) from the curves ``flat[:, voxels]`` at the
        guide's templates in ``state`` (see :meth:`_fit_at_guide`); the delay is searched at
        the grid MTT nearest ``search_mtt`` (s), or at the guide's MTT index when None."""
        for b in np.unique(state["bank"]):
            bank = self.banks[b]
            chosen = np.flatnonzero(state["bank"] == b)
            # in order of the guide's MTT: a block then holds few MTT groups (few, large products)
            chosen = chosen[np.argsort(state["grid"][2][chosen], kind="stable")]
            search_index = state["grid"][2] if search_mtt is None else _nearest_index(bank.mtts, search_mtt)
            for part, block in curve_blocks(flat, voxels[chosen], CHUNK_VOXELS):
                rows = chosen[part]
                state["amplitude"][rows], state["delay"][rows] = self._fit_at_guide(
                    bank, block, [g[rows] for g in state["grid"]], search_index[rows])
                state["ttp"][rows] = self.times[block.argmax(axis=1)] - self.times[0]

    def _maps(self, state: dict, search_mtt: np.ndarray, mask: np.ndarray) -> PerfusionFit:
        """The maps of the fitted ``state``: CBF (mL/100 g/min), CBV (mL/100 g), Tmax = delay
        plus the dispersed residue's peak offset at ``search_mtt`` (s), TTP (s); MTT derived."""
        offset = np.zeros(search_mtt.shape, np.float32)
        for b in np.unique(state["bank"]):
            chosen = state["bank"] == b
            offset[chosen] = self.banks[b].peak_offset_at(search_mtt[chosen])
        amplitude = state["amplitude"]
        out = {"cbf": amplitude * np.float32(FLOW_TO_CBF),
               "cbv": amplitude * state["mtt"] * np.float32(100 * K_H / RHO_BRAIN),
               "tmax": (state["delay"] + offset).astype(np.float32), "ttp": state["ttp"]}
        return assemble_fit(out, mask)


def _new_state(n: int) -> dict:
    """Per-voxel fit state of ``n`` voxels: best score (ΔHU), amplitude (1/s), delay (s), MTT
    (s), TTP (s), grid position (delay index, delay offset, MTT index, MTT offset; see
    :meth:`ParametricResidueModel._refine`) and template bank index (τ)."""
    state = {name: np.zeros(n, np.float32) for name in ("score", "amplitude", "delay", "mtt", "ttp")}
    state["grid"] = [np.zeros(n, np.intp), np.zeros(n, np.float32), np.zeros(n, np.intp), np.zeros(n, np.float32)]
    state["bank"] = np.zeros(n, np.intp)
    return state


def _store_refined(state: dict, rows, values, grid) -> None:
    """Write amplitude, delay and MTT ``values`` and the ``grid`` position (see
    :meth:`ParametricResidueModel._refine`) at ``rows`` (slice or indices) of ``state``."""
    for name, value in zip(("amplitude", "delay", "mtt"), values):
        state[name][rows] = value
    for whole, value in zip(state["grid"], grid):
        whole[rows] = value
