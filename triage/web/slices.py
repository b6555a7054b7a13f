"""One slice of a result's maps or masks as a PNG, on the acquisition grid, for the viewer.

The maps are read from a result folder's ``maps/<name>.nii.gz``
(:meth:`triage.report.folder.ResultFolder.map_file`; written by :func:`triage.report.nifti.write_maps`
on the acquisition grid). SimpleITK gives the voxels as ``(z, y, x)``: the PNG of slice ``z`` has the
acquisition matrix' size, PNG column = DICOM column ``x``, PNG row = DICOM row ``y``, and ``z``
is the slice index of ``--aif X,Y,Z`` and of ``quality.aif.location.source_xyz`` in
result.json. Nothing is mirrored: the source images' own orientation (radiological for a
standard axial acquisition, see :mod:`triage.report.render`).

Maps are colour-mapped with the fixed windows and colour maps of the result pictures
(:data:`triage.report.render.MAP_STYLES`); voxels outside the analysed tissue (where the CBF map is
0: :func:`~triage.report.nifti.write_maps` writes non-computed voxels as 0) are black. Overlays are
RGBA: the core in magenta and the Tmax > 6 s region in green (the summary picture's
colours), opaque inside the mask and transparent outside it (the viewer chooses the opacity).
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image

from triage.report.colormaps import get_lut, lut_indices
from triage.report.folder import ResultFolder
from triage.report.render import CORE_COLOUR, HYPOPERFUSED_COLOUR, MAP_STYLES, render_colorbar

OVERLAY_COLOURS = {"core": CORE_COLOUR, "hypoperfusion": HYPOPERFUSED_COLOUR}
TISSUE_MAP = "cbf"  # its non-zero voxels are the analysed tissue


def map_png(folder: ResultFolder, name: str, z: int) -> bytes:
    """Slice ``z`` of map ``name`` (a key of ``MAP_STYLES``) of the result ``folder`` as RGB PNG;
    IndexError when ``z`` is not a slice, OSError when the map file is missing or unreadable."""
    _, window, colormap = MAP_STYLES[name]
    values = _slice(folder.map_file(name), z)
    tissue = _slice(folder.map_file(TISSUE_MAP), z) != 0
    rgb = get_lut(colormap)[lut_indices(values, window)]
    rgb[~(tissue & np.isfinite(values))] = 0
    return _png(Image.fromarray(rgb, "RGB"))


def overlay_png(folder: ResultFolder, name: str, z: int) -> bytes:
    """Slice ``z`` of mask ``name`` (``core`` or ``hypoperfusion``) of the result ``folder`` as RGBA PNG."""
    inside = _slice(folder.map_file(name), z) != 0
    rgba = np.zeros(inside.shape + (4,), np.uint8)
    rgba[inside] = (*OVERLAY_COLOURS[name], 255)
    return _png(Image.fromarray(rgba, "RGBA"))


@lru_cache(maxsize=len(MAP_STYLES))
def colorbar_png(name: str) -> bytes:
    """The colour bar of map ``name`` with its ticks and units (as under the map pictures)."""
    return _png(render_colorbar(name))


def _slice(path: Path, z: int) -> np.ndarray:
    volume = _volume(str(path), path.stat().st_mtime_ns)
    if not 0 <= z < volume.shape[0]:
        raise IndexError(f"slice {z} is not in 0..{volume.shape[0] - 1}")
    return volume[z]


@lru_cache(maxsize=8)
def _volume(path: str, stamp: int) -> np.ndarray:
    """The voxels ``(z, y, x)`` of the NIfTI file at ``path`` as written at ``stamp``."""
    try:
        return sitk.GetArrayFromImage(sitk.ReadImage(path))
    except RuntimeError as exc:  # SimpleITK's error for an unreadable file
        raise OSError(f"cannot read {Path(path).name}: {str(exc).splitlines()[0]}") from None


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
