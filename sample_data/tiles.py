"""Kudo-style digital tile phantom: squares of known CBF, CBV, MTT and Tmax (research use only).

After Kudo et al., Radiology 2013 ("Accuracy and reliability assessment of CT and MR perfusion
analysis software using a digital phantom"): tiles of uniform tissue, each with one tissue curve,
so an engine's tile medians can be compared with the truth over a grid of conditions.

Layout. A 5 x 5 grid of adjacent square tiles, rows CBV ∈ :data:`TILE_CBV` (1-5 mL/100 g), columns
MTT ∈ :data:`TILE_MTT_S` (3.43-24 s), so CBF = 60 · CBV / MTT spans 2.5-87.5 mL/100 g/min. The
tiles are ``tile_mm`` wide (32 mm by default: the engine smooths at 12-16 mm FWHM, so
neighbouring tiles mix near their edges) and surrounded by ``margin_mm`` of background (no
enhancement, noise only, outside the mask). The truth is compared in each tile's interior: the
tile eroded by ``interior_margin_mm`` (8 mm) on each side in-plane, all slices.

Curves (:mod:`sample_data.curves`). One fine-grid curve per tile,
C(t) = (ρ / k_H) · F · (C_a ⊗ R_eff)(t), R_eff the residue of ``residue`` shape (MTT of the
tile) starting at ``delay_s`` after the AIF and dispersed by an exponential kernel of
``dispersion_s``, sampled at the frame times (:func:`sample_data.acquisition.frame_times`) and
broadcast to the tile's voxels. Truth Tmax is the argmax of R_eff (s after the AIF): the
delay without dispersion, later with it (:func:`sample_data.curves.tmax_of`).

Values. ``enhancement`` is ΔHU above a baseline of 0 (no baseline HU is simulated: the engine's
functions take enhancement), plus spatially correlated Gaussian noise per frame
(:class:`sample_data.acquisition.CorrelatedNoise`, SD ``noise_hu``, in-plane FWHM
``noise_fwhm_px``) over the whole image. The AIF is the true arterial curve (ΔHU at the frame
times) plus white noise of SD ``noise_hu / sqrt(AIF_VOXELS)``: the mean of a few arterial voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triage.base.errors import InputError
from triage.base.grid import Geometry

from . import acquisition, curves

TILE_CBV = (1.0, 2.0, 3.0, 4.0, 5.0)           # mL/100 g, one per row
TILE_MTT_S = (3.43, 4.8, 6.86, 12.0, 24.0)     # s, one per column (CBF 2.5-87.5)
AIF_VOXELS = 9                                  # the AIF's noise is that of a mean of 9 voxels


@dataclass(frozen=True)
class TileConfig:
    """One condition of the tile phantom (units in the names; see the module docstring)."""

    residue: str = "exponential"      # sample_data.curves.RESIDUE_SHAPES
    delay_s: float = 0.0              # arrival delay of every tile after the AIF, 0-12 s
    dispersion_s: float = 0.0         # exponential dispersion time constant, 0-3 s
    noise_hu: float = 7.0             # per-voxel per-frame SD (0 = noise-free)
    noise_fwhm_px: float = 1.5        # in-plane spatial correlation of the noise
    pixel_mm: float = 240.0 / 256     # in-plane pixel size
    n_slices: int = 2
    slice_mm: float = 5.0
    tile_mm: float = 32.0             # side of a tile
    interior_margin_mm: float = 8.0   # erosion of each tile for its truth region
    margin_mm: float = 16.0           # background around the grid of tiles
    n_frames: int = 40
    duration_s: float = 60.0          # last frame time
    variable_sampling: bool = False   # 2 : 1 : 3 intervals before/during/after the bolus
    aif_peak_hu: float = curves.AIF_PEAK_HU
    aif_width_scale: float = 1.0      # time stretch of the bolus about its arrival (1 = head phantom's)
    seed: int = 0


@dataclass
class Tiles:
    """A simulated tile acquisition and its truth.

    ``labels`` is the tile index of each voxel (row-major over CBV rows and MTT columns, -1 in
    the background); ``interior`` the same restricted to the tiles' interiors. Truth arrays are
    per tile: CBF mL/100 g/min, CBV mL/100 g, MTT s, Tmax s after the AIF.
    """

    enhancement: np.ndarray   # float32 (t, z, y, x) ΔHU, baseline 0
    times: np.ndarray         # float64 (t,) s from the first frame
    geometry: Geometry
    aif: np.ndarray           # float64 (t,) ΔHU, true AIF plus a little noise
    aif_true: np.ndarray      # float64 (t,) ΔHU, noise-free
    curves: np.ndarray        # float64 (t, tiles) noise-free tile curves ΔHU
    mask: np.ndarray          # bool (z, y, x): tile voxels
    labels: np.ndarray        # int16 (z, y, x)
    interior: np.ndarray      # int16 (z, y, x)
    cbf: np.ndarray
    cbv: np.ndarray
    mtt: np.ndarray
    tmax: np.ndarray
    config: TileConfig

    @property
    def n_tiles(self) -> int:
        return self.cbf.size


def _validate(config: TileConfig) -> None:
    checks = [
        (config.residue in curves.RESIDUE_SHAPES,
         f"unknown residue {config.residue!r}; known: {', '.join(curves.RESIDUE_SHAPES)}"),
        (0.0 <= config.delay_s <= 12.0, "delay_s must be between 0 and 12"),
        (0.0 <= config.dispersion_s <= 3.0, "dispersion_s must be between 0 and 3"),
        (config.noise_hu >= 0 and config.noise_fwhm_px >= 0, "noise must be >= 0"),
        (config.pixel_mm > 0 and config.slice_mm > 0 and config.n_slices >= 1, "bad grid"),
        (config.tile_mm > 2 * config.interior_margin_mm + config.pixel_mm,
         "tile_mm must exceed twice interior_margin_mm"),
        (3 <= config.n_frames <= 500 and 5.0 <= config.duration_s <= 400.0, "bad frames"),
        (config.aif_peak_hu > 0 and config.aif_width_scale > 0, "bad AIF"),
    ]
    for ok, reason in checks:
        if not ok:
            raise InputError(reason)


def tile_truth() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CBF, CBV, MTT of the tiles (row-major: CBV rows, MTT columns)."""
    cbv, mtt = np.meshgrid(np.asarray(TILE_CBV), np.asarray(TILE_MTT_S), indexing="ij")
    cbv, mtt = cbv.ravel(), mtt.ravel()
    return 60.0 * cbv / mtt, cbv, mtt


def arterial_fine(config: TileConfig, t_fine: np.ndarray) -> np.ndarray:
    """The AIF on the fine grid: the head phantom's, scaled to ``aif_peak_hu`` and stretched
    in time about its arrival by ``aif_width_scale``."""
    arrival = curves.AIF_ARRIVAL_S
    stretched = arrival + (t_fine - arrival) / config.aif_width_scale
    return config.aif_peak_hu / curves.AIF_PEAK_HU * curves.arterial_curve(stretched)


def _layout(config: TileConfig):
    """Tile labels and interior labels (z, y, x), and the geometry."""
    n = len(TILE_CBV)
    tile_px = int(round(config.tile_mm / config.pixel_mm))
    margin_px = int(round(config.margin_mm / config.pixel_mm))
    erode_px = int(round(config.interior_margin_mm / config.pixel_mm))
    size = n * tile_px + 2 * margin_px
    line = np.full(size, -1, np.int16)
    inner = np.full(size, -1, np.int16)
    for k in range(n):
        start = margin_px + k * tile_px
        line[start:start + tile_px] = k
        inner[start + erode_px:start + tile_px - erode_px] = k
    def grid(axis_labels):
        rows, cols = axis_labels[:, None], axis_labels[None, :]
        plane = np.where((rows >= 0) & (cols >= 0), rows * n + cols, -1).astype(np.int16)
        return np.broadcast_to(plane, (config.n_slices, size, size)).copy()
    half = (size - 1) / 2.0 * config.pixel_mm
    geometry = Geometry(spacing=(config.pixel_mm, config.pixel_mm, float(config.slice_mm)),
                        origin=(-half, -half, -(config.n_slices - 1) / 2.0 * config.slice_mm))
    return grid(line), grid(inner), geometry


def _tile_curves(config: TileConfig, times: np.ndarray, cbf, mtt):
    """Noise-free tile curves at ``times`` (t, tiles), truth Tmax per tile, AIF at ``times``."""
    t_fine = curves.fine_times()
    aif_fine = arterial_fine(config, t_fine)
    columns, tmax = [], []
    for flow, transit in zip(cbf, mtt):
        r = curves.residue(t_fine, float(transit), config.delay_s, config.dispersion_s,
                           config.residue)
        columns.append(np.interp(times, t_fine, curves.tissue_curve(aif_fine, r, float(flow))))
        tmax.append(config.delay_s if config.dispersion_s == 0 else curves.tmax_of(r, t_fine))
    return np.stack(columns, axis=1), np.asarray(tmax), np.interp(times, t_fine, aif_fine)


def make_tiles(config: TileConfig = TileConfig()) -> Tiles:
    """Simulate the tile acquisition and its truth (see the module docstring).

    Raises
    ------
    InputError
        If the configuration is out of range.
    """
    _validate(config)
    labels, interior, geometry = _layout(config)
    times = acquisition.frame_times(config.n_frames, config.duration_s, config.variable_sampling)
    cbf, cbv, mtt = tile_truth()
    table, tmax, aif_true = _tile_curves(config, times, cbf, mtt)
    lookup = np.concatenate([table, np.zeros((times.size, 1))], axis=1).astype(np.float32)
    enhancement = lookup[:, labels]            # label -1 picks the zero column
    rng = np.random.default_rng(config.seed)
    aif = aif_true.copy()
    if config.noise_hu > 0:
        noise = acquisition.CorrelatedNoise(config.noise_hu, config.noise_fwhm_px, rng)
        for frame in enhancement:
            frame += noise.sample(frame.shape)
        aif += rng.normal(0.0, config.noise_hu / np.sqrt(AIF_VOXELS), times.size)
    return Tiles(enhancement=enhancement, times=times, geometry=geometry, aif=aif,
                 aif_true=aif_true, curves=table, mask=labels >= 0, labels=labels,
                 interior=interior, cbf=cbf, cbv=cbv, mtt=mtt, tmax=tmax, config=config)


def tile_medians(tiles: Tiles, values: np.ndarray) -> np.ndarray:
    """Median of ``values`` (z, y, x) over each tile's interior (tiles,)."""
    flat_labels, flat_values = tiles.interior.ravel(), values.ravel()
    return np.array([float(np.median(flat_values[flat_labels == k])) for k in range(tiles.n_tiles)])
