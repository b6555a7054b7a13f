"""Small synthetic CT perfusion series with known arterial, venous and tissue curves.

Used by the bolus and AIF tests; independent of the phantom in ``sample_data``.
Curves follow docs/conventions.md: C(t) = (rho / k_H) * F * (C_a ⊗ R)(t) with
R(t) = exp(-t / MTT), computed on a 0.05 s grid and sampled at the frame times.
Enhancement is in HU above baseline, times in s from the first frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triage.base.grid import Geometry

RHO = 1.04
K_H = (1 - 0.45) / (1 - 0.25)
FINE_DT = 0.05


def gamma_variate(t, t0: float, t_peak: float, peak: float, alpha: float) -> np.ndarray:
    """Gamma variate starting at ``t0`` with maximum ``peak`` at ``t_peak`` (0 before ``t0``)."""
    x = np.clip((np.asarray(t, dtype=float) - t0) / (t_peak - t0), 0.0, None)
    return peak * x**alpha * np.exp(alpha * (1.0 - x))


def true_aif(t, arrival_s: float = 7.0, peak_hu: float = 320.0) -> np.ndarray:
    """Full-amplitude arterial ΔHU: first pass (peak 7 s after arrival) plus recirculation."""
    first_pass = gamma_variate(t, arrival_s, arrival_s + 7.0, peak_hu, 3.0)
    recirculation = gamma_variate(t, arrival_s + 11.0, arrival_s + 19.0, 0.12 * peak_hu, 3.0)
    return first_pass + recirculation


def _fine_grid(t_end: float) -> np.ndarray:
    return np.arange(0.0, t_end + 20.0, FINE_DT)


def venous_curve(times, arrival_s: float = 7.0, peak_hu: float = 320.0,
                 delay_s: float = 4.0, dispersion_s: float = 3.0) -> np.ndarray:
    """Venous sinus ΔHU: the AIF delayed and dispersed by a unit-area exponential (same area)."""
    fine = _fine_grid(float(np.max(times)))
    kernel = np.exp(-fine / dispersion_s)
    kernel /= kernel.sum()
    dispersed = np.convolve(true_aif(fine - delay_s, arrival_s, peak_hu), kernel)[: fine.size]
    return np.interp(times, fine, dispersed)


def tissue_curve(times, cbf: float, cbv: float, arrival_s: float = 7.0,
                 peak_hu: float = 320.0) -> np.ndarray:
    """Tissue ΔHU for CBF (mL/100 g/min) and CBV (mL/100 g), exponential residue function."""
    fine = _fine_grid(float(np.max(times)))
    mtt = 60.0 * cbv / cbf
    residue = np.exp(-fine / mtt)
    conv = np.convolve(true_aif(fine, arrival_s, peak_hu), residue)[: fine.size] * FINE_DT
    return np.interp(times, fine, (RHO / K_H) * (cbf / 6000.0) * conv)


def uniform_times() -> np.ndarray:
    """40 frames every 1.5 s (0–58.5 s)."""
    return 1.5 * np.arange(40, dtype=float)


def variable_times() -> np.ndarray:
    """2 s baseline sampling, 1 s during the bolus (7–30 s), 3 s after (33–60 s)."""
    return np.concatenate([[0.0, 2.0, 4.0, 6.0], np.arange(7.0, 31.0), np.arange(33.0, 61.0, 3.0)])


def truncated_times() -> np.ndarray:
    """Acquisition stopped at 24 s, while the bolus is still in the tissue."""
    return 1.5 * np.arange(17, dtype=float)


@dataclass
class SyntheticSeries:
    hu: np.ndarray            # (t, z, y, x) float32
    times: np.ndarray         # (t,) s
    brain: np.ndarray         # (z, y, x) bool
    geometry: Geometry
    artery: np.ndarray        # (z, y, x) bool, artery voxels with partial volume 0.7–0.8
    sinus: np.ndarray         # (z, y, x) bool, full-amplitude venous sinus voxels
    white_matter: np.ndarray  # (z, y, x) bool
    aif: np.ndarray           # (t,) full-amplitude true AIF ΔHU
    vof: np.ndarray           # (t,) true venous ΔHU
    tissue_gm: np.ndarray     # (t,) grey-matter ΔHU
    arrival_s: float


def make_series(times=None, *, shape=(6, 96, 96), arrival_s: float = 7.0, peak_hu: float = 320.0,
                noise_hu: float = 8.0, with_sinus: bool = True, seed: int = 0) -> SyntheticSeries:
    """Build a head-like series: skull ring, grey/white matter, two arteries per slice, a sinus.

    Also holds traps for the AIF search: a calcification (bright, no enhancement) and isolated
    single-frame noise spikes of +250 HU inside the brain.
    """
    times = uniform_times() if times is None else np.asarray(times, dtype=float)
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    cy, cx = ny / 2, nx / 2
    r = np.hypot((yy - cy) / (0.42 * ny), (xx - cx) / (0.36 * nx))
    brain2d = r < 1.0
    skull2d = (r >= 1.0) & (r < 1.12)
    white2d = r < 0.6

    base2d = np.where(brain2d, 35.0, np.where(skull2d, 1000.0, -1000.0))
    base2d[white2d] = 28.0
    aif = true_aif(times, arrival_s, peak_hu)
    vof = venous_curve(times, arrival_s, peak_hu) if with_sinus else np.zeros_like(aif)
    gm = tissue_curve(times, 55.0, 4.0, arrival_s, peak_hu)
    wm = tissue_curve(times, 25.0, 2.2, arrival_s, peak_hu)

    enh = np.zeros((times.size, ny, nx))
    enh[:, brain2d] = gm[:, None]
    enh[:, white2d] = wm[:, None]
    artery2d = np.zeros((ny, nx), bool)
    sinus2d = np.zeros((ny, nx), bool)
    pv = np.zeros((ny, nx))
    for ay, ax in ((int(cy), int(0.3 * nx)), (int(cy), int(0.7 * nx) - 1)):
        pv[ay - 2:ay + 4, ax - 2:ax + 4] = 0.25            # blurred rim of the vessel
        pv[ay:ay + 2, ax:ax + 2] = rng.uniform(0.7, 0.8, (2, 2))
        artery2d[ay:ay + 2, ax:ax + 2] = True
    enh = enh * (1 - pv) + pv * aif[:, None, None]
    if with_sinus:
        sy = int(cy + 0.42 * ny) - 4                       # posterior midline, at the brain edge
        sinus2d[sy - 1:sy + 2, int(cx) - 1:int(cx) + 2] = True
        rim = np.zeros_like(sinus2d)
        rim[sy - 2:sy + 3, int(cx) - 2:int(cx) + 3] = True
        rim &= ~sinus2d & brain2d
        enh[:, rim] = 0.4 * vof[:, None] + 0.6 * gm[:, None]
        enh[:, sinus2d] = vof[:, None]
    calcification = (slice(int(cy) - 12, int(cy) - 10), slice(int(cx) + 5, int(cx) + 7))
    base2d[calcification] = 400.0

    hu = (base2d + enh)[:, None].repeat(nz, axis=1)
    hu += rng.normal(0.0, noise_hu, hu.shape)
    in_brain = np.argwhere(np.broadcast_to(brain2d & ~artery2d & ~sinus2d, shape))
    for k, (z, y, x) in enumerate(in_brain[rng.choice(len(in_brain), 6, replace=False)]):
        hu[(4 + 5 * k) % times.size, z, y, x] += 250.0
    as3d = lambda a: np.broadcast_to(a, shape).copy()  # noqa: E731
    return SyntheticSeries(
        hu=hu.astype(np.float32), times=times, brain=as3d(brain2d),
        geometry=Geometry(spacing=(1.8, 1.8, 5.0), origin=(0.0, 0.0, 0.0)),
        artery=as3d(artery2d), sinus=as3d(sinus2d), white_matter=as3d(white2d),
        aif=aif, vof=vof, tissue_gm=gm, arrival_s=arrival_s)
