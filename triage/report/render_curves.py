"""PNG of what the perfusion numbers rest on: where the AIF and VOF were measured, and the curves.

Left, the slice through the AIF with the maximum enhancement over time (arteries and veins
bright, window 0–300 HU) and the AIF voxels ringed in red, and the slice through the VOF with
its voxels ringed in blue. Right, the AIF (red), the VOF (blue) and the mean parenchyma
enhancement ×10 (grey) against time, so a truncated bolus, a noisy or late AIF, or a VOF
smaller than the AIF can be seen at a glance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from triage.base.language import DEFAULT_LANGUAGE, render
from triage.report.colormaps import GREY_LUT, lut_indices
from triage.report.render import (
    _FOOTER_HEIGHT,
    BACKGROUND,
    BAND,
    DETAIL_TEXT,
    MARGIN,
    TEXT,
    _draw_footer,
    _font,
    _printable,
    _save,
)

PEAK_WINDOW_HU = (0.0, 300.0)
AIF_COLOUR, VOF_COLOUR, TISSUE_COLOUR, AXIS_COLOUR = (255, 70, 70), (80, 150, 255), (200, 200, 200), (120, 120, 130)
TISSUE_SCALE = 10.0
PANEL = 420  # px, side of each slice panel
PLOT_W, PLOT_H = 760, 2 * PANEL + MARGIN



def _slice_panel(peak: np.ndarray, voxels: np.ndarray, colour, label: str) -> Image.Image:
    """The slice of the first voxel, greyscale, with every voxel of that slice ringed."""
    z = int(voxels[0][0])
    grey = GREY_LUT[lut_indices(peak[z], PEAK_WINDOW_HU)]
    image = Image.fromarray(grey.astype(np.uint8)).resize((PANEL, PANEL), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    sy, sx = PANEL / peak.shape[1], PANEL / peak.shape[2]
    for _, y, x in (v for v in voxels if v[0] == z):
        cx, cy = (x + 0.5) * sx, (y + 0.5) * sy
        draw.ellipse((cx - 9, cy - 9, cx + 9, cy + 9), outline=colour, width=3)
    draw.text((8, 6), _printable(f"{label}: slice {z + 1}", _font(24, bold=True)), font=_font(24, bold=True),
              fill=colour, stroke_width=2, stroke_fill=(0, 0, 0))
    return image


def _plot(times: np.ndarray, curves: list[tuple[str, np.ndarray, tuple]], language: str) -> Image.Image:
    image = Image.new("RGB", (PLOT_W, PLOT_H), BACKGROUND)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 90, 50, PLOT_W - 20, PLOT_H - 70
    values = np.concatenate([c for _, c, _ in curves])
    low, high = min(0.0, float(values.min())), float(values.max()) * 1.05 or 1.0
    t_end = float(times[-1]) or 1.0

    def xy(t, v):
        return left + (right - left) * t / t_end, bottom - (bottom - top) * (v - low) / (high - low)

    small = _font(22)
    for tick in np.arange(0.0, t_end + 1e-6, 10.0):
        x, _ = xy(tick, low)
        draw.line((x, bottom, x, bottom + 6), fill=AXIS_COLOUR, width=2)
        draw.text((x, bottom + 10), f"{tick:.0f}", font=small, fill=DETAIL_TEXT, anchor="ma")
    step = 10 ** np.floor(np.log10(max(high - low, 1e-6) / 2))
    for tick in np.arange(np.ceil(low / step) * step, high, step * (2 if (high - low) / step > 8 else 1)):
        _, y = xy(0, tick)
        draw.line((left - 6, y, right, y), fill=(40, 42, 48) if tick else AXIS_COLOUR, width=1)
        draw.text((left - 10, y), f"{tick:.0f}", font=small, fill=DETAIL_TEXT, anchor="rm")
    draw.line((left, top, left, bottom), fill=AXIS_COLOUR, width=2)
    draw.text(((left + right) / 2, bottom + 40), render("aif.picture_time", language), font=small, fill=DETAIL_TEXT, anchor="ma")
    draw.text((left, top - 40), render("aif.picture_enhancement", language), font=small, fill=DETAIL_TEXT)
    for row, (label, curve, colour) in enumerate(curves):
        points = [xy(t, v) for t, v in zip(times, curve)]
        draw.line(points, fill=colour, width=3)
        for x, y in points:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        draw.text((right - 8, top + 8 + 30 * row), _printable(label, small), font=small, fill=colour, anchor="ra")
    return image


def render_arterial_input(path: Path, times: np.ndarray, peak: np.ndarray, *, aif: np.ndarray,
                          aif_voxels: np.ndarray, vof: np.ndarray | None, vof_voxels: np.ndarray | None,
                          tissue: np.ndarray, notes: list[str], language: str = DEFAULT_LANGUAGE) -> None:
    """Write the AIF/VOF picture.

    Parameters
    ----------
    times : (t,) s; peak : (z, y, x) maximum enhancement over time, HU
    aif, vof : (t,) enhancement curves, HU (vof may be None); tissue : (t,) mean parenchyma curve, HU
    aif_voxels, vof_voxels : (n, 3) voxel indices (z, y, x), best voxel first
    notes : lines printed under the title (peak, scale, warnings)
    language : of the title, the axis labels and the footer (:mod:`triage.base.language`)
    """
    title_font, note_font = _font(34, bold=True), _font(24)
    header = MARGIN + 48 + 32 * len(notes)
    width = MARGIN * 3 + PANEL + PLOT_W
    picture = Image.new("RGB", (width, header + PLOT_H + MARGIN + _FOOTER_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, width, header), fill=BAND)
    draw.text((MARGIN, MARGIN), render("aif.picture_title", language), font=title_font, fill=TEXT)
    for row, note in enumerate(notes):
        draw.text((MARGIN, MARGIN + 48 + 32 * row), _printable(note, note_font), font=note_font, fill=DETAIL_TEXT)
    top = header + MARGIN // 2
    picture.paste(_slice_panel(peak, aif_voxels, AIF_COLOUR, "AIF"), (MARGIN, top))
    curves = [("AIF", aif, AIF_COLOUR)]
    if vof is not None and vof_voxels is not None and len(vof_voxels):
        picture.paste(_slice_panel(peak, vof_voxels, VOF_COLOUR, "VOF"), (MARGIN, top + PANEL + MARGIN))
        curves.append(("VOF", vof, VOF_COLOUR))
    curves.append((render("aif.picture_tissue", language, scale=TISSUE_SCALE), TISSUE_SCALE * np.asarray(tissue), TISSUE_COLOUR))
    picture.paste(_plot(np.asarray(times, float), curves, language), (2 * MARGIN + PANEL, top))
    _draw_footer(draw, picture.size, language)
    _save(picture, path)
