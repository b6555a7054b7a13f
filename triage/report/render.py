"""PNG pictures of the result: the core/hypoperfusion summary and one picture per map.

These are what the stroke team sees first (later as DICOM Secondary Capture), so they carry
their own labels: headline numbers, warnings, a legend or colour bar with units, slice numbers,
orientation letters and the research-use footer.

Display orientation: slices are drawn as stored, row index ``y`` down, column index ``x`` to
the right. In a standard axial acquisition (ImageOrientationPatient 1\\0\\0\\0\\1\\0, SimpleITK
direction identity) ``x`` points to patient left (+x in LPS) and ``y`` to posterior, so the
picture is already in radiological convention: patient right on the viewer's left, anterior at
the top. When ``geometry`` is passed and its axes point the other way, the slices are mirrored
so that the display is still radiological; the "R"/"L" letters drawn on every slice come from
the direction cosines, so they are right either way. Pixel aspect follows the in-plane spacing
of ``geometry`` (square without it).

Montage: the slices with brain (at most 16, chosen evenly from inferior to superior), each
cropped to the head and labelled with its 1-based position ``z + 1`` in the volume (not the
DICOM Instance Number). Both functions return the ``Layout`` so callers and tests can find
any voxel in the picture.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from triage.base.errors import InputError
from triage.base.grid import Geometry
from triage.base.language import DEFAULT_LANGUAGE, render
from triage.report.colormaps import GREY_LUT, get_lut, lut_indices

MAP_STYLES: dict[str, tuple[str, tuple[float, float], str]] = {
    "cbf": ("mL/100 g/min", (0.0, 80.0), "perfusion"),
    "cbv": ("mL/100 g", (0.0, 6.0), "perfusion"),
    "mtt": ("s", (0.0, 16.0), "perfusion"),
    "tmax": ("s", (0.0, 14.0), "perfusion"),
    "ttp": ("s", (0.0, 40.0), "perfusion"),
}
"""Default display of each map: (units, (low, high) window, colour map name)."""
DISPLAY_NAMES = {"cbf": "CBF", "cbv": "CBV", "mtt": "MTT", "tmax": "Tmax", "ttp": "TTP"}

BRAIN_WINDOW_HU = (0.0, 80.0)  # W80 / L40
MAX_TILES = 16

WIDTH = 1440
MARGIN = 24
GAP = 12
BACKGROUND = (0, 0, 0)
BAND = (24, 26, 32)
TEXT = (245, 245, 245)
DETAIL_TEXT = (205, 208, 215)
WARNING_TEXT = (255, 185, 0)
FOOTER_TEXT = (190, 190, 190)
TILE_FRAME = (70, 72, 80)
ORIENTATION_TEXT = (255, 230, 120)
CORE_COLOUR = (255, 0, 255)
HYPOPERFUSED_COLOUR = (0, 230, 0)
OVERLAY_ALPHA = 0.4


@dataclass(frozen=True)
class Layout:
    """Where things are in a rendered picture (pixels, origin top-left).

    ``tiles[i] = (left, top, width, height)`` shows slice ``slices[i]`` (z index, 0-based; the
    label drawn is ``z + 1``), cropped to the voxels ``crop = (y0, x0, ny, nx)`` (the head) and
    then mirrored if ``flip_x``/``flip_y`` (radiological display).
    ``colorbar = (left, top, width, height)`` or None.
    """

    size: tuple[int, int]
    slices: tuple[int, ...]
    tiles: tuple[tuple[int, int, int, int], ...]
    crop: tuple[int, int, int, int]
    flip_x: bool = False
    flip_y: bool = False
    colorbar: tuple[int, int, int, int] | None = None

    def pixel_of(self, z: int, y: int, x: int) -> tuple[int, int] | None:
        """Picture pixel (column, row) at the centre of voxel (z, y, x); None if not drawn."""
        y0, x0, ny, nx = self.crop
        y, x = y - y0, x - x0
        if z not in self.slices or not (0 <= y < ny and 0 <= x < nx):
            return None
        left, top, width, height = self.tiles[self.slices.index(z)]
        x = nx - 1 - x if self.flip_x else x
        y = ny - 1 - y if self.flip_y else y
        return left + int((x + 0.5) * width / nx), top + int((y + 0.5) * height / ny)


def render_summary(path: Path, anatomy: np.ndarray, core: np.ndarray, hypoperfused: np.ndarray, *,
                   headline: list[str], details: list[str], warnings: list[str],
                   parenchyma: np.ndarray | None = None, geometry: Geometry | None = None,
                   core_label: str = "Core (rCBF < 30 %)",
                   hypoperfused_label: str = "Hypoperfused (Tmax > 6 s)",
                   language: str = DEFAULT_LANGUAGE) -> Layout:
    """Write the summary PNG: lesion overlays on the baseline CT with the headline numbers.

    Parameters
    ----------
    path : Path
        Output PNG (RGB).
    anatomy : ndarray (z, y, x)
        Baseline (pre-contrast) CT in HU, shown with the brain window W80/L40.
    core, hypoperfused : ndarray (z, y, x), bool
        Ischemic core (magenta, drawn on top) and hypoperfused tissue (green): translucent fill
        with an opaque outline, voxels drawn as blocks (no interpolation).
    headline, details, warnings : list of str
        Text of the header band: large type, small type, amber type.
    parenchyma : ndarray (z, y, x), bool, optional
        Brain mask; slices without brain are left out. Without it, slices with soft tissue
        (0-80 HU) are used. At most 16 slices are shown, chosen evenly; each is cropped to
        the head (voxels above -300 HU and the masks).
    geometry : Geometry, optional
        Grid of the arrays, for orientation and pixel aspect (identity direction and square
        pixels assumed without it).
    core_label, hypoperfused_label : str
        Legend text (the thresholds of the profile used).
    language : str
        Language of the picture's own words (slice note, footer; :mod:`triage.base.language`);
        the texts given above are drawn as they are.

    Returns
    -------
    Layout of the picture.
    """
    anatomy = _volume(anatomy, "anatomy")
    shape = anatomy.shape
    core = _mask(core, "core", shape)
    hypoperfused = _mask(hypoperfused, "hypoperfused", shape)
    for label, lines in (("headline", headline), ("details", details), ("warnings", warnings)):
        _check_lines(lines, label)
    if parenchyma is not None:
        parenchyma = _mask(parenchyma, "parenchyma", shape)
    slices, crop = _summary_slices(anatomy, core, hypoperfused, parenchyma)
    header = _summary_header(headline, details, warnings, language)
    legend_height = 48
    layout = _layout(slices, crop, header.height + legend_height, 0, geometry)

    picture = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, WIDTH, MARGIN + header.height + legend_height), fill=BAND)
    header.draw(draw, MARGIN, MARGIN)
    _draw_legend(draw, MARGIN + header.height + 4, [(CORE_COLOUR, core_label),
                                                     (HYPOPERFUSED_COLOUR, hypoperfused_label)])
    _draw_slice_note(draw, MARGIN + header.height + 24, len(slices), shape[0], language)
    tile_w, tile_h = layout.tiles[0][2:]
    rgb = _overlaid_tiles(anatomy, core, hypoperfused, slices, crop, (tile_w, tile_h))
    _paste_tiles(picture, layout, rgb)
    _label_tiles(draw, layout, geometry)
    _draw_footer(draw, layout.size, language)
    _save(picture, path)
    return layout


def _summary_slices(anatomy: np.ndarray, core: np.ndarray, hypoperfused: np.ndarray,
                    parenchyma: np.ndarray | None) -> tuple[list[int], tuple[int, int, int, int]]:
    """Slices (z indices) of the summary and the crop (y0, x0, ny, nx) to the head.

    Slices with brain (``parenchyma``), or without it with soft tissue (anatomy within
    BRAIN_WINDOW_HU on at least 5 % of the most covered slice's area), at most MAX_TILES
    chosen evenly; the crop holds the voxels above -300 HU, the masks and the parenchyma.
    """
    if parenchyma is not None:
        coverage = parenchyma.any(axis=(1, 2))
    else:
        soft_tissue = ((anatomy > BRAIN_WINDOW_HU[0]) & (anatomy < BRAIN_WINDOW_HU[1])).sum(axis=(1, 2))
        coverage = soft_tissue >= 0.05 * max(int(soft_tissue.max()), 1)
    slices = _choose_slices(coverage)
    extent = (anatomy[slices] > -300.0) | core[slices] | hypoperfused[slices]
    if parenchyma is not None:
        extent |= parenchyma[slices]
    return slices, _crop_box(extent)


def _summary_header(headline: list[str], details: list[str], warnings: list[str], language: str) -> _TextBlock:
    """The header text: headline in large bold type, details in small type, warnings amber."""
    header = _TextBlock()
    for line in headline:
        header.add(line, _font(48, bold=True), TEXT)
    header.space(8)
    for line in details:
        header.add(line, _font(30), DETAIL_TEXT)
    for line in warnings:
        header.add(render("summary.warning", language, warning=line), _font(30, bold=True), WARNING_TEXT)
    return header


def _overlaid_tiles(anatomy: np.ndarray, core: np.ndarray, hypoperfused: np.ndarray, slices,
                    crop: tuple[int, int, int, int], tile_size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 tiles (slices, height, width, 3): the anatomy (HU) in the brain window, upscaled
    bilinearly, with the hypoperfused and then the core voxels as translucent blocks
    (OVERLAY_ALPHA) with opaque outlines."""
    tile_w, tile_h = tile_size
    grey = _upscale_bilinear(lut_indices(_cropped(anatomy, slices, crop), BRAIN_WINDOW_HU), tile_w, tile_h)
    rgb = GREY_LUT[grey].astype(np.float32)
    core_big = _upscale_nearest(_cropped(core, slices, crop), tile_w, tile_h)
    hypo_big = _upscale_nearest(_cropped(hypoperfused, slices, crop), tile_w, tile_h) & ~core_big
    for region, colour in ((hypo_big, HYPOPERFUSED_COLOUR), (core_big, CORE_COLOUR)):
        colour = np.array(colour, dtype=np.float32)
        rgb[region] = (1.0 - OVERLAY_ALPHA) * rgb[region] + OVERLAY_ALPHA * colour
        rgb[_outline(region)] = colour
    return rgb.astype(np.uint8)


def render_map(path: Path, values: np.ndarray, *, name: str, units: str, window: tuple[float, float],
               colormap: str, mask: np.ndarray | None = None, title: str | None = None,
               geometry: Geometry | None = None, language: str = DEFAULT_LANGUAGE) -> Layout:
    """Write one colour-mapped map as a montage PNG with a colour bar.

    Parameters
    ----------
    path : Path
        Output PNG (RGB).
    values : ndarray (z, y, x)
        Map in ``units``. Values outside ``window`` get the end colours of the bar; non-finite
        values and voxels outside ``mask`` are black. Voxels are drawn as blocks (no interpolation).
    name, units : str
        Map name and units, shown in the title and under the colour bar; the names of
        ``MAP_STYLES`` (any case) are shown as "CBF", "CBV", "MTT", "Tmax", "TTP".
    window : (low, high)
        Value range of the colour bar.
    colormap : str
        Name of a LUT in ``triage.report.colormaps.COLORMAPS`` ("perfusion", "grey").
    mask : ndarray (z, y, x), bool, optional
        Voxels where the map is meaningful (brain parenchyma); slices without any are left out,
        and slices are cropped to the drawn voxels.
    title : str, optional
        Title line; default "<display name> (<units>)".
    geometry : Geometry, optional
        Grid of the array, for orientation and pixel aspect.

    Returns
    -------
    Layout of the picture (with the colour bar box).
    """
    if not name:
        raise InputError("map name must not be empty")
    values = _volume(values, name)
    lut = get_lut(colormap)
    indices = lut_indices(values, window)
    shown = np.isfinite(values)
    if mask is not None:
        shown &= _mask(mask, "mask", values.shape)
    slices = _choose_slices(shown.any(axis=(1, 2)))
    crop = _crop_box(shown[slices])
    display_name = DISPLAY_NAMES.get(name.lower(), name)

    header = _TextBlock()
    header.add(title or f"{display_name} ({units})", _font(48, bold=True), TEXT)
    colorbar_height = 170
    layout = _layout(slices, crop, header.height, colorbar_height, geometry)
    picture = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, WIDTH, MARGIN + header.height), fill=BAND)
    header.draw(draw, MARGIN, MARGIN)
    _draw_slice_note(draw, MARGIN + header.height // 2, len(slices), values.shape[0], language)

    tile_w, tile_h = layout.tiles[0][2:]
    rgb = lut[_upscale_nearest(_cropped(indices, slices, crop), tile_w, tile_h)]
    rgb[~_upscale_nearest(_cropped(shown, slices, crop), tile_w, tile_h)] = BACKGROUND
    _paste_tiles(picture, layout, rgb)
    _label_tiles(draw, layout, geometry)
    montage_bottom = max(top + h for _, top, _, h in layout.tiles)
    bar = (MARGIN + 40, montage_bottom + 30, WIDTH - 2 * MARGIN - 80, 40)
    _draw_colorbar(picture, draw, bar, lut, window, f"{display_name} [{units}]")
    _draw_footer(draw, layout.size, language)
    _save(picture, path)
    return replace(layout, colorbar=bar)


def render_colorbar(name: str, width: int = 720) -> Image.Image:
    """The colour bar of map ``name`` (a key of ``MAP_STYLES``) as drawn under its map picture:
    its window, ticks, values and units, ``width`` pixels wide, on the black background."""
    units, window, colormap = MAP_STYLES[name]
    picture = Image.new("RGB", (width, 140), BACKGROUND)
    _draw_colorbar(picture, ImageDraw.Draw(picture), (40, 8, width - 80, 36), get_lut(colormap), window,
                   f"{DISPLAY_NAMES[name]} [{units}]")
    return picture


# ----------------------------------------------------------------------------- input checks

def _volume(array: np.ndarray, label: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3 or min(array.shape) < 1:
        raise InputError(f"{label} must be a non-empty 3D (z, y, x) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{label} must be numeric, got {array.dtype}")
    return array.astype(np.float32, copy=False)


def _mask(array: np.ndarray, label: str, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != shape:
        raise InputError(f"{label} has shape {array.shape}, expected {shape}")
    return array != 0


def _check_lines(lines: list[str], label: str) -> None:
    if not isinstance(lines, (list, tuple)) or not all(isinstance(line, str) for line in lines):
        raise InputError(f"{label} must be a list of strings")


# ----------------------------------------------------------------------------- geometry

def _choose_slices(coverage: np.ndarray) -> list[int]:
    """Indices of the covered slices (all slices if none), at most MAX_TILES chosen evenly."""
    covered = np.flatnonzero(coverage)
    if covered.size == 0:
        covered = np.arange(coverage.size)
    if covered.size > MAX_TILES:
        covered = covered[np.rint(np.linspace(0, covered.size - 1, MAX_TILES)).astype(int)]
    return [int(z) for z in covered]


def axis_letters(direction: tuple[float, ...]) -> tuple[tuple[str, str], tuple[str, str]]:
    """Patient directions (toward low index, toward high index) of the x and y array axes."""
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    letters = []
    for axis in (0, 1):
        cosines = matrix[:, axis]
        k = int(np.argmax(np.abs(cosines)))
        positive, negative = "LPS"[k], "RAI"[k]
        letters.append((negative, positive) if cosines[k] > 0 else (positive, negative))
    return letters[0], letters[1]


def _radiological_flips(geometry: Geometry | None) -> tuple[bool, bool]:
    """Mirror x when it runs toward patient right, y when it runs toward anterior."""
    if geometry is None:
        return False, False
    (x_low, _), (y_low, _) = axis_letters(geometry.direction)
    return x_low == "L", y_low == "P"


def _crop_box(extent: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, x0, ny, nx) around the True voxels of ``extent`` (n, y, x) with a margin of 6 %."""
    _, ny, nx = extent.shape
    rows, cols = np.flatnonzero(extent.any(axis=(0, 2))), np.flatnonzero(extent.any(axis=(0, 1)))
    if rows.size == 0:
        return 0, 0, ny, nx
    margin = max(2, round(0.06 * max(ny, nx)))
    y0, y1 = max(0, rows[0] - margin), min(ny, rows[-1] + 1 + margin)
    x0, x1 = max(0, cols[0] - margin), min(nx, cols[-1] + 1 + margin)
    return int(y0), int(x0), int(y1 - y0), int(x1 - x0)


def _cropped(volume: np.ndarray, slices: list[int], crop: tuple[int, int, int, int]) -> np.ndarray:
    y0, x0, ny, nx = crop
    return volume[slices, y0:y0 + ny, x0:x0 + nx]


def _layout(slices: list[int], crop: tuple[int, int, int, int], header_height: int, below_height: int,
            geometry: Geometry | None) -> Layout:
    """Grid of equal tiles under the header band, ``below_height`` px reserved under it."""
    n = len(slices)
    columns = 1 if n == 1 else 2 if n <= 4 else 3 if n <= 9 else 4
    rows = -(-n // columns)
    _, _, ny, nx = crop
    tile_w = (WIDTH - 2 * MARGIN - (columns - 1) * GAP) // columns
    sx, sy = geometry.spacing[:2] if geometry is not None else (1.0, 1.0)
    tile_h = max(1, round(tile_w * (ny * sy) / (nx * sx)))
    top = 2 * MARGIN + header_height
    tiles = tuple((MARGIN + (i % columns) * (tile_w + GAP), top + (i // columns) * (tile_h + GAP),
                   tile_w, tile_h) for i in range(n))
    height = top + rows * tile_h + (rows - 1) * GAP + below_height + _FOOTER_HEIGHT
    return Layout((WIDTH, height), tuple(slices), tiles, crop, *_radiological_flips(geometry))


# ----------------------------------------------------------------------------- pixels

def _upscale_nearest(stack: np.ndarray, width: int, height: int) -> np.ndarray:
    """(n, y, x) -> (n, height, width) by nearest neighbour (each voxel a block)."""
    _, ny, nx = stack.shape
    rows = ((np.arange(height) + 0.5) * ny / height).astype(np.intp)
    cols = ((np.arange(width) + 0.5) * nx / width).astype(np.intp)
    return stack[:, rows[:, None], cols[None, :]]


def _upscale_bilinear(stack: np.ndarray, width: int, height: int) -> np.ndarray:
    """(n, y, x) uint8 -> (n, height, width) uint8, bilinear."""
    return np.stack([np.asarray(Image.fromarray(s).resize((width, height), Image.Resampling.BILINEAR))
                     for s in stack])


def _outline(region: np.ndarray, thickness: int = 2) -> np.ndarray:
    """Inner border of ``region`` (n, h, w), ``thickness`` px wide (4-neighbour erosion)."""
    interior = region
    for _ in range(thickness):
        eroded = interior.copy()
        eroded[:, 1:, :] &= interior[:, :-1, :]
        eroded[:, :-1, :] &= interior[:, 1:, :]
        eroded[:, :, 1:] &= interior[:, :, :-1]
        eroded[:, :, :-1] &= interior[:, :, 1:]
        interior = eroded
    return region & ~interior


def _paste_tiles(picture: Image.Image, layout: Layout, rgb: np.ndarray) -> None:
    """Paste (n, h, w, 3) uint8 tiles, mirrored as the layout says."""
    if layout.flip_x:
        rgb = rgb[:, :, ::-1]
    if layout.flip_y:
        rgb = rgb[:, ::-1]
    for tile, (left, top, _, _) in zip(rgb, layout.tiles):
        picture.paste(Image.fromarray(np.ascontiguousarray(tile)), (left, top))


# ----------------------------------------------------------------------------- text

_FOOTER_HEIGHT = 2 * MARGIN + 28
_BUNDLED_FONTS = Path(__file__).parent.parent / "fonts"
_ASCII_FALLBACK = str.maketrans({"\u2014": "-", "\u2013": "-", "\u2265": ">=", "\u2264": "<=",
                                 "\u00d7": "x", "\u03bc": "u", "\u2192": "->", "\u0111": "d", "\u0110": "D"})


@lru_cache(maxsize=None)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans from ``triage/fonts/`` or the system, else Pillow's built-in scalable font
    (fewer glyphs, see ``_printable``), else its bitmap font."""
    names = (("DejaVuSans-Bold.ttf",) if bold else ()) + ("DejaVuSans.ttf",)
    for name in names:
        for candidate in (_BUNDLED_FONTS / name, name):
            try:
                return ImageFont.truetype(str(candidate), size)
            except OSError:
                continue
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _printable(text: str, font) -> str:
    """``text`` as the font can draw it: Pillow's built-in font lacks dashes, >=, accents."""
    if getattr(font, "getname", lambda: ("",))()[0].startswith("DejaVu"):
        return text
    text = unicodedata.normalize("NFKD", text.translate(_ASCII_FALLBACK))
    return "".join(c for c in text if not unicodedata.combining(c))


def _wrap(text: str, font, width: int) -> list[str]:
    """Split ``text`` at spaces into lines no wider than ``width`` px (long words stay whole)."""
    lines, current = [], ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and font.getlength(candidate) > width:
            lines.append(current)
            candidate = word
        current = candidate
    return lines + [current]


class _TextBlock:
    """Lines of text stacked top-down, wrapped to the picture width."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str, object, tuple[int, int, int]]] = []
        self.height = 0

    def add(self, text: str, font, colour: tuple[int, int, int]) -> None:
        text = _printable(text, font)
        line_height = int(font.size * 1.3) if hasattr(font, "size") else 14
        for line in _wrap(text, font, WIDTH - 2 * MARGIN):
            self.lines.append((self.height, line, font, colour))
            self.height += line_height

    def space(self, pixels: int) -> None:
        self.height += pixels

    def draw(self, draw: ImageDraw.ImageDraw, left: int, top: int) -> None:
        for offset, line, font, colour in self.lines:
            draw.text((left, top + offset), line, font=font, fill=colour)


def _outlined_text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, font, colour, anchor: str) -> None:
    """Text with a dark outline so it reads on any image content."""
    draw.text(xy, _printable(text, font), font=font, fill=colour, anchor=anchor,
              stroke_width=2, stroke_fill=(0, 0, 0))


def _label_tiles(draw: ImageDraw.ImageDraw, layout: Layout, geometry: Geometry | None) -> None:
    """Frame, slice number (1-based z) top-left, orientation letters in the bottom corners."""
    (x_low, x_high), _ = axis_letters(geometry.direction if geometry else (1, 0, 0, 0, 1, 0, 0, 0, 1))
    left_letter, right_letter = (x_high, x_low) if layout.flip_x else (x_low, x_high)
    number_font, letter_font = _font(26, bold=True), _font(28, bold=True)
    for z, (left, top, width, height) in zip(layout.slices, layout.tiles):
        draw.rectangle((left - 1, top - 1, left + width, top + height), outline=TILE_FRAME)
        _outlined_text(draw, (left + 8, top + 6), f"{z + 1}", number_font, TEXT, "la")
        bottom = top + height - 6
        _outlined_text(draw, (left + 8, bottom), left_letter, letter_font, ORIENTATION_TEXT, "ld")
        _outlined_text(draw, (left + width - 8, bottom), right_letter, letter_font, ORIENTATION_TEXT, "rd")


def _draw_legend(draw: ImageDraw.ImageDraw, top: int, entries: list[tuple[tuple[int, int, int], str]]) -> None:
    font, x = _font(30), MARGIN
    for colour, label in entries:
        draw.rectangle((x, top + 4, x + 32, top + 36), fill=colour)
        text = _printable(label, font)
        draw.text((x + 44, top + 20), text, font=font, fill=TEXT, anchor="lm")
        x += 40 + int(font.getlength(text)) + 48


def _draw_slice_note(draw: ImageDraw.ImageDraw, middle: int, shown: int, total: int, language: str) -> None:
    """Right-aligned "n of N slices shown" (or "all N slices"), so nothing looks hidden."""
    text = (render("picture.all_slices", language, total=total) if shown == total
            else render("picture.some_slices", language, shown=shown, total=total))
    draw.text((WIDTH - MARGIN, middle), text, font=_font(26), fill=DETAIL_TEXT, anchor="rm")


def _nice_ticks(low: float, high: float) -> np.ndarray:
    """Round tick values from low to high: the smallest 1/2/2.5/5 x 10^k step giving <= 8 intervals."""
    span = high - low
    magnitude = 10.0 ** np.floor(np.log10(span / 8))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if span / (m * magnitude) <= 8 + 1e-9)
    first = np.ceil(low / step - 1e-9) * step
    return np.arange(first, high + step * 1e-6, step)


def _draw_colorbar(picture: Image.Image, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int],
                   lut: np.ndarray, window: tuple[float, float], label: str) -> None:
    """Horizontal colour bar over ``box`` with ticks, values and the units label."""
    left, top, width, height = box
    columns = lut[np.clip((np.arange(width) + 0.5) * 256 / width, 0, 255).astype(np.intp)]
    picture.paste(Image.fromarray(np.ascontiguousarray(np.broadcast_to(columns, (height, width, 3)))), (left, top))
    draw.rectangle((left - 1, top - 1, left + width, top + height), outline=(160, 160, 160))
    low, high = float(window[0]), float(window[1])
    font = _font(28)
    ticks = _nice_ticks(low, high)
    integer = np.allclose(ticks, np.round(ticks))
    for value in ticks:
        x = left + round((value - low) / (high - low) * (width - 1))
        draw.line((x, top + height, x, top + height + 8), fill=TEXT, width=2)
        text = f"{value + 0.0:.0f}" if integer else f"{value + 0.0:g}"
        if np.isclose(value, high):
            text = "\u2265" + text
        elif np.isclose(value, low) and low > 0:
            text = "\u2264" + text
        draw.text((x, top + height + 12), _printable(text, font), font=font, fill=TEXT, anchor="ma")
    label_font = _font(30, bold=True)
    draw.text((left + width // 2, top + height + 56), _printable(label, label_font),
              font=label_font, fill=TEXT, anchor="ma")


def _draw_footer(draw: ImageDraw.ImageDraw, size: tuple[int, int], language: str) -> None:
    width, height = size
    top = height - _FOOTER_HEIGHT + MARGIN // 2
    draw.rectangle((0, top, width, height), fill=BAND)
    font = _font(26)
    draw.text((width // 2, top + (height - top) // 2), _printable(render("picture.footer", language), font), font=font,
              fill=FOOTER_TEXT, anchor="mm")


def _save(picture: Image.Image, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="PNG", compress_level=1)
