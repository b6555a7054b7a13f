"""The AIF/VOF picture: markers at the measured voxels, one line per curve."""

import numpy as np
from PIL import Image

from triage.report.render import MARGIN
from triage.report.render_curves import AIF_COLOUR, PANEL, VOF_COLOUR, render_arterial_input


def test_markers_and_curves(tmp_path):
    times = np.arange(30) * 2.0
    aif = 300 * np.exp(-((times - 14) / 4) ** 2)
    vof = 250 * np.exp(-((times - 20) / 5) ** 2)
    peak = np.zeros((4, 64, 64), np.float32)
    peak[1, 20, 30] = peak[3, 50, 10] = 300
    path = tmp_path / "aif.png"
    render_arterial_input(path, times, peak, aif=aif, aif_voxels=np.array([[1, 20, 30]]), vof=vof,
                          vof_voxels=np.array([[3, 50, 10]]), tissue=aif / 20, notes=["note one", "note two"])
    picture = np.asarray(Image.open(path).convert("RGB")).astype(int)
    header = MARGIN + 48 + 32 * 2
    top = header + MARGIN // 2

    def colour_near(colour, box):
        x0, y0, x1, y1 = box
        region = picture[y0:y1, x0:x1]
        return (np.abs(region - np.array(colour)).sum(axis=2) < 30).any()

    scale = PANEL / 64
    ax, ay = MARGIN + int(30.5 * scale), top + int(20.5 * scale)
    assert colour_near(AIF_COLOUR, (ax - 12, ay - 12, ax + 12, ay + 12))  # ring at the AIF voxel
    vx, vy = MARGIN + int(10.5 * scale), top + PANEL + MARGIN + int(50.5 * scale)
    assert colour_near(VOF_COLOUR, (vx - 12, vy - 12, vx + 12, vy + 12))
    plot = (2 * MARGIN + PANEL, top, picture.shape[1], top + 2 * PANEL)
    assert colour_near(AIF_COLOUR, plot) and colour_near(VOF_COLOUR, plot)


def test_without_vof(tmp_path):
    times = np.arange(10) * 2.0
    render_arterial_input(tmp_path / "a.png", times, np.zeros((2, 8, 8), np.float32), aif=times, aif_voxels=np.array([[0, 1, 1]]),
                          vof=None, vof_voxels=None, tissue=times / 10, notes=[])
    assert Image.open(tmp_path / "a.png").mode == "RGB"
