"""Spatial variation of the phantom's tissue: smooth texture and partial volume at lesion edges.

Both act on the parenchyma only and are defined in mm, so they look the same at any matrix.

* Texture: a smooth random field f (Gaussian-filtered white noise, FWHM ``TEXTURE_FWHM_MM``),
  |f| <= amplitude, that multiplies CBF and CBV of a voxel together (MTT and the residue
  unchanged): the tissue curve scales by (1 + f).
* Partial volume: near a boundary between lesion zones (or the lesion and normal tissue) of
  the same tissue type, a voxel's curve and its CBF and CBV are the mixture of the zones'
  values weighted by Gaussian-smoothed zone indicators (normalised within the tissue, so the
  GM / WM / CSF boundaries are not blurred further).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

TEXTURE_FWHM_MM = 10.0
TEXTURE_CELL_MM = 2.0        # in-plane cell of the grid the texture is drawn on
MIN_WEIGHT = 1e-3            # mixing weights below this are dropped (and the rest renormalised)
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def texture_field(shape, spacing, fov_mm: tuple[float, float], amplitude: float, seed: int) -> np.ndarray:
    """Relative texture f (float32, ``shape`` (z, y, x)); 0 everywhere when ``amplitude`` is 0.

    White noise on a ``TEXTURE_CELL_MM`` in-plane grid (the phantom's slices across, its field
    of view ``fov_mm`` (y, x) in mm) is filtered to FWHM ``TEXTURE_FWHM_MM`` in-plane and
    across slices, scaled to SD amplitude / 2, clipped to +-amplitude and interpolated (linear)
    to the phantom grid. The draw uses its own random stream of ``seed``, so the noise and
    motion of a seed do not change with the texture.
    """
    if amplitude == 0:
        return np.zeros(shape, np.float32)
    nz, ny, nx = shape
    cells_y, cells_x = (int(np.ceil(mm / TEXTURE_CELL_MM)) for mm in fov_mm)
    rng = np.random.default_rng([seed, 0x7E47])
    white = rng.standard_normal((nz, cells_y, cells_x))
    sigma_mm = TEXTURE_FWHM_MM / _FWHM_PER_SIGMA
    smooth = ndimage.gaussian_filter(white, (sigma_mm / spacing[2], sigma_mm / TEXTURE_CELL_MM,
                                             sigma_mm / TEXTURE_CELL_MM), mode="reflect")
    smooth *= (amplitude / 2.0) / smooth.std()
    field = ndimage.zoom(smooth, (1.0, ny / cells_y, nx / cells_x), order=1, grid_mode=True,
                         mode="nearest")
    return np.clip(field, -amplitude, amplitude).astype(np.float32)


@dataclass
class Mixing:
    """Partial-volume voxels: flat indices ``voxels`` (n,) into the (z, y, x) grid and their
    weights (n, n_sets) over the tissue parameter sets (columns 1 ... n_sets of the curve
    table); each row sums to 1. Every other voxel keeps its own set's curve."""

    voxels: np.ndarray
    weights: np.ndarray


def _lesion_box(zones, radius):
    """Slices of the lesion's bounding box grown by ``radius`` voxels (z, y, x)."""
    found = np.nonzero(zones)
    return tuple(slice(max(0, int(a.min()) - r), min(n, int(a.max()) + r + 1))
                 for a, r, n in zip(found, radius, zones.shape))


def zone_mixing(labels, zones, spacing, fwhm_mm: float, tissues, n_zones: int) -> Mixing:
    """Mixing weights of the voxels near lesion-zone edges (empty when sharp or no lesion).

    Set ``len(tissues) * zone + position of the tissue in tissues`` (0-based; table column
    + 1) is that zone in that tissue; ``spacing`` is (x, y, z) mm; ``fwhm_mm`` the Gaussian
    FWHM (mm) of the blur; zone codes are 0 ... ``n_zones`` - 1.
    """
    n_sets = n_zones * len(tissues)
    empty = Mixing(np.zeros(0, np.int64), np.zeros((0, n_sets), np.float32))
    if fwhm_mm == 0 or not zones.any():
        return empty
    sigma = (fwhm_mm / _FWHM_PER_SIGMA) / np.asarray(spacing[::-1], float)   # (z, y, x) voxels
    box = _lesion_box(zones, np.ceil(4.0 * sigma).astype(int) + 1)
    zone_box, label_box = zones[box], labels[box]
    voxels, rows = [], []
    for t_index, tissue in enumerate(tissues):
        inside = label_box == tissue
        density = ndimage.gaussian_filter(inside.astype(np.float32), sigma)[inside]
        weights = np.zeros((int(inside.sum()), n_sets), np.float32)
        for zone in np.unique(zone_box[inside]):
            indicator = (inside & (zone_box == zone)).astype(np.float32)
            weights[:, len(tissues) * zone + t_index] = ndimage.gaussian_filter(indicator, sigma)[inside]
        weights /= np.maximum(density, 1e-12)[:, None]
        weights[weights < MIN_WEIGHT] = 0.0
        weights /= weights.sum(axis=1, keepdims=True)
        mixed = (weights > 0).sum(axis=1) > 1
        local = np.argwhere(inside)[mixed] + [s.start for s in box]
        voxels.append(np.ravel_multi_index(local.T, zones.shape))
        rows.append(weights[mixed])
    return Mixing(np.concatenate(voxels), np.concatenate(rows))
