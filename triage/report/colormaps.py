"""Colour look-up tables for the rendered pictures (256 RGB entries, uint8).

A LUT is built by linear interpolation in RGB between a few control points. ``perfusion``
runs dark blue - blue - cyan - green - yellow - orange - red - dark red with lightness
rising to yellow and falling again, so that neither end is confused with the black
background and no band looks like a sharp edge; ``grey`` is a plain ramp.
"""

from __future__ import annotations

import numpy as np

from triage.base.errors import InputError


def lut_from_control_points(points: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    """Interpolate a 256-entry RGB LUT between ``(position, (r, g, b))`` control points.

    Positions run from 0 to 1 in increasing order; colours are 0-255. Returns uint8 (256, 3).
    """
    positions = np.array([p for p, _ in points], dtype=np.float64)
    colours = np.array([c for _, c in points], dtype=np.float64)
    grid = np.linspace(0.0, 1.0, 256)
    channels = [np.interp(grid, positions, colours[:, i]) for i in range(3)]
    return np.rint(np.stack(channels, axis=1)).astype(np.uint8)


PERFUSION_LUT = lut_from_control_points([
    (0.000, (40, 24, 110)),
    (0.125, (55, 85, 220)),
    (0.250, (35, 165, 240)),
    (0.375, (40, 225, 170)),
    (0.500, (150, 245, 70)),
    (0.625, (240, 215, 50)),
    (0.750, (250, 135, 30)),
    (0.875, (215, 55, 10)),
    (1.000, (135, 10, 5)),
])
GREY_LUT = lut_from_control_points([(0.0, (0, 0, 0)), (1.0, (255, 255, 255))])

COLORMAPS: dict[str, np.ndarray] = {"perfusion": PERFUSION_LUT, "grey": GREY_LUT}


def get_lut(name: str) -> np.ndarray:
    """The LUT called ``name`` (one of ``COLORMAPS``)."""
    if name not in COLORMAPS:
        raise InputError(f"unknown colour map {name!r} (known: {', '.join(sorted(COLORMAPS))})")
    return COLORMAPS[name]


def lut_indices(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """LUT index 0-255 (uint8) of each value, ``window = (low, high)`` in the values' units.

    Values at or below ``low`` get 0, at or above ``high`` 255; non-finite values get 0
    (callers paint them as background separately).
    """
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise InputError(f"display window must have high > low, got {window}")
    scaled = (np.asarray(values, dtype=np.float32) - low) * np.float32(255.0 / (high - low))
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
