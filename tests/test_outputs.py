"""Image outputs: NIfTI maps/masks on the acquisition grid and the PNG pictures."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image, ImageFont

from triage.base.errors import InputError
from triage.base.grid import Geometry
from triage.report.colormaps import PERFUSION_LUT, lut_indices
from triage.report.nifti import write_maps
from triage.report.render import MAP_STYLES, _nice_ticks, _printable, render_map, render_summary


def rotation_z(degrees: float) -> tuple[float, ...]:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)


def physical_point(geometry: Geometry, index_xyz) -> np.ndarray:
    """LPS mm of a (continuous) voxel index (x, y, z) on ``geometry``."""
    matrix = np.asarray(geometry.direction).reshape(3, 3)
    return np.asarray(geometry.origin) + matrix @ (np.asarray(index_xyz, float) * geometry.spacing)


def continuous_index(geometry: Geometry, point) -> np.ndarray:
    matrix = np.asarray(geometry.direction).reshape(3, 3)
    return matrix.T @ (np.asarray(point) - geometry.origin) / geometry.spacing


def assert_geometry(image: sitk.Image, geometry: Geometry, shape_zyx) -> None:
    assert image.GetSize() == tuple(reversed(shape_zyx))
    np.testing.assert_allclose(image.GetSpacing(), geometry.spacing, atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), geometry.origin, atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), geometry.direction, atol=1e-5)


# ----------------------------------------------------------------------------- NIfTI

GEOMETRY = Geometry((0.9, 0.8, 5.0), (-101.5, -120.25, 33.0), rotation_z(8.0))


def test_maps_and_masks_round_trip_on_the_processing_grid(tmp_path):
    rng = np.random.default_rng(1)
    cbf = rng.uniform(0, 90, (4, 24, 20)).astype(np.float32)
    tmax = rng.uniform(0, 14, (4, 24, 20)).astype(np.float64)  # converted to float32
    core = cbf < 20
    paths = write_maps(tmp_path, {"cbf": cbf, "tmax": tmax}, {"core": core}, GEOMETRY)

    assert set(paths) == {"cbf", "tmax", "core"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cbf.nii.gz", "core.nii.gz", "tmax.nii.gz"]
    cbf_image, core_image = sitk.ReadImage(str(paths["cbf"])), sitk.ReadImage(str(paths["core"]))
    assert cbf_image.GetPixelID() == sitk.sitkFloat32
    assert core_image.GetPixelID() == sitk.sitkUInt8
    assert_geometry(cbf_image, GEOMETRY, cbf.shape)
    assert_geometry(core_image, GEOMETRY, cbf.shape)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(cbf_image), cbf)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(core_image), core.astype(np.uint8))
    np.testing.assert_allclose(sitk.GetArrayFromImage(sitk.ReadImage(str(paths["tmax"]))), tmax, rtol=1e-6)

    # A known voxel: the file's physical point of index (x=5, y=7, z=2) is ours, with our value.
    point = cbf_image.TransformIndexToPhysicalPoint((5, 7, 2))
    np.testing.assert_allclose(point, physical_point(GEOMETRY, (5, 7, 2)), atol=1e-4)
    assert cbf_image.GetPixel(cbf_image.TransformPhysicalPointToIndex(point)) == cbf[2, 7, 5]


def test_non_finite_map_values_are_written_as_zero(tmp_path):
    values = np.full((2, 8, 8), 3.5, np.float32)
    values[0, 1, 2], values[1, 3, 4] = np.nan, np.inf
    paths = write_maps(tmp_path, {"mtt": values}, {}, GEOMETRY)
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(paths["mtt"])))
    assert written[0, 1, 2] == 0 and written[1, 3, 4] == 0
    assert np.count_nonzero(written == 3.5) == values.size - 2


def test_reduced_grid_is_resampled_onto_the_finer_acquisition_grid(tmp_path):
    acquisition = Geometry((0.5, 0.5, 5.0), (-16.0, -20.0, 10.0), rotation_z(-12.0))
    acquisition_shape = (4, 64, 64)
    # 2 x 2 in-plane reduction: a reduced voxel covers 2 x 2 source voxels, its centre between them.
    reduced = Geometry((1.0, 1.0, 5.0), tuple(physical_point(acquisition, (0.5, 0.5, 0.0))),
                       acquisition.direction)
    k, j, i = np.mgrid[0:4, 0:32, 0:32].astype(np.float32)
    ramp = 3.0 + 2.0 * i + 0.5 * j + 10.0 * k  # linear in the reduced voxel index
    rng = np.random.default_rng(2)
    core = rng.random((4, 32, 32)) < 0.3
    paths = write_maps(tmp_path, {"cbv": ramp}, {"core": core}, reduced,
                       acquisition_geometry=acquisition, acquisition_shape=acquisition_shape)

    cbv_image, core_image = sitk.ReadImage(str(paths["cbv"])), sitk.ReadImage(str(paths["core"]))
    assert_geometry(cbv_image, acquisition, acquisition_shape)
    assert_geometry(core_image, acquisition, acquisition_shape)
    cbv = sitk.GetArrayFromImage(cbv_image)
    assert cbv.dtype == np.float32

    # Every source voxel holds the ramp at its own physical point (clamped at the outer half voxel).
    fz, fy, fx = np.mgrid[0:4, 0:64, 0:64]
    ci = np.clip((fx - 0.5) / 2.0, 0, 31)
    cj = np.clip((fy - 0.5) / 2.0, 0, 31)
    np.testing.assert_allclose(cbv, 3.0 + 2.0 * ci + 0.5 * cj + 10.0 * fz, atol=1e-4)

    # A known source voxel via physical coordinates.
    point = cbv_image.TransformIndexToPhysicalPoint((21, 10, 1))
    x, y, z = continuous_index(reduced, point)
    assert cbv[1, 10, 21] == pytest.approx(3.0 + 2.0 * x + 0.5 * y + 10.0 * z, abs=1e-4)

    # Masks by nearest neighbour: each reduced voxel becomes its 2 x 2 source voxels, still 0/1.
    written_core = sitk.GetArrayFromImage(core_image)
    assert written_core.dtype == np.uint8
    assert set(np.unique(written_core)) == {0, 1}
    np.testing.assert_array_equal(written_core, np.repeat(np.repeat(core, 2, axis=1), 2, axis=2))
    assert written_core.sum() * acquisition.voxel_volume_ml == pytest.approx(core.sum() * reduced.voxel_volume_ml)


@pytest.mark.parametrize("call", [
    lambda d: write_maps(d, {"cbf": np.zeros((2, 4, 4))}, {"core": np.zeros((2, 4, 5), bool)}, GEOMETRY),
    lambda d: write_maps(d, {"cbf": np.zeros((4, 4))}, {}, GEOMETRY),
    lambda d: write_maps(d, {}, {"core": np.zeros((2, 4, 4), np.float32)}, GEOMETRY),
    lambda d: write_maps(d, {"x": np.zeros((2, 4, 4))}, {"x": np.zeros((2, 4, 4), bool)}, GEOMETRY),
    lambda d: write_maps(d, {"../cbf": np.zeros((2, 4, 4))}, {}, GEOMETRY),
    lambda d: write_maps(d, {"cbf": np.zeros((2, 4, 4))}, {}, GEOMETRY, acquisition_geometry=GEOMETRY),
    lambda d: write_maps(d, {}, {}, GEOMETRY),
])
def test_bad_inputs_raise_input_error_and_write_nothing(tmp_path, call):
    with pytest.raises(InputError):
        call(tmp_path)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- pictures

def head(nz: int = 8, n: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Baseline CT (HU) of an elliptic head: skull ring, 40 HU brain; and the brain mask."""
    _, y, x = np.mgrid[0:nz, 0:n, 0:n]
    r = np.hypot((y - n / 2) / (0.45 * n), (x - n / 2) / (0.4 * n))
    anatomy = np.where(r < 1.0, 1000.0, -1000.0).astype(np.float32)
    brain = r < 0.9
    anatomy[brain] = 40.0
    return anatomy, brain


def is_magenta(rgb) -> bool:
    r, g, b = (int(v) for v in rgb)
    return r - g > 80 and b - g > 80


def is_green(rgb) -> bool:
    r, g, b = (int(v) for v in rgb)
    return g - r > 80 and g - b > 80


def is_grey(rgb) -> bool:
    return len(set(int(v) for v in rgb)) == 1


def summary_case(tmp_path, warnings=("Motion 4.1 mm corrected",), geometry=None):
    anatomy, brain = head()
    core = np.zeros_like(brain)
    core[3, 40:60, 80:100] = True
    hypoperfused = np.zeros_like(brain)
    hypoperfused[2:6, 30:80, 70:110] = True
    path = tmp_path / "summary.png"
    layout = render_summary(path, anatomy, core, hypoperfused & brain,
                            headline=["Core (rCBF<30%): 18 mL   Tmax>6s: 104 mL", "DEFUSE 3: ELIGIBLE"],
                            details=["Reference CBF 40.2 mL/100 g/min"], warnings=list(warnings),
                            parenchyma=brain, geometry=geometry)
    return path, layout


def test_summary_shows_core_magenta_on_top_and_hypoperfusion_green(tmp_path):
    path, layout = summary_case(tmp_path)
    with Image.open(path) as picture:
        assert picture.mode == "RGB"
        assert picture.size == layout.size
        assert 1200 <= picture.width <= 1600
        pixels = np.asarray(picture)
    at = lambda z, y, x: pixels[layout.pixel_of(z, y, x)[::-1]]  # noqa: E731
    assert is_magenta(at(3, 50, 90))       # core (inside hypoperfusion too): magenta on top
    assert is_green(at(3, 70, 75))         # hypoperfused only
    assert is_green(at(2, 50, 90))         # same place, slice without core
    assert is_grey(at(3, 64, 30))          # normal brain
    assert at(3, 64, 30)[0] == pytest.approx(128, abs=3)  # 40 HU mid-grey in W80/L40


def test_summary_text_warnings_and_footer_are_drawn(tmp_path):
    path, layout = summary_case(tmp_path)
    pixels = np.asarray(Image.open(path)).astype(int)
    header = pixels[: layout.tiles[0][1] - 10]
    assert np.count_nonzero(header.min(axis=2) > 200) > 2000  # white headline text
    amber = (header[..., 0] > 200) & (header[..., 1] > 120) & (header[..., 1] < 220) & (header[..., 2] < 80)
    assert np.count_nonzero(amber) > 200
    footer = pixels[-50:]
    assert np.count_nonzero(footer.min(axis=2) > 150) > 300

    quiet_path, quiet_layout = summary_case(tmp_path / "quiet", warnings=())
    quiet = np.asarray(Image.open(quiet_path)).astype(int)[: quiet_layout.tiles[0][1] - 10]
    assert not np.any((quiet[..., 0] > 200) & (quiet[..., 2] < 80) & (quiet[..., 1] < 220) & (quiet[..., 1] > 120))
    assert quiet_layout.size[1] < layout.size[1]


def test_summary_shows_only_brain_slices_with_their_numbers(tmp_path):
    _, layout = summary_case(tmp_path)
    assert layout.slices == tuple(range(8))  # the phantom has brain in every slice
    anatomy, brain = head(nz=40, n=64)
    brain[:5] = False
    empty = np.zeros_like(brain)
    layout = render_summary(tmp_path / "many.png", anatomy, empty, empty, headline=["x"], details=[],
                            warnings=[], parenchyma=brain)
    assert len(layout.slices) == 16
    assert layout.slices[0] == 5 and layout.slices[-1] == 39
    assert np.all(np.diff(layout.slices) >= 2)


def test_summary_is_radiological_whatever_the_stored_column_direction(tmp_path):
    # Column index toward patient right (x cosine -1): the slice must be mirrored for display,
    # so a core at low column index (patient left) lands on the right half of its tile.
    flipped = Geometry((1.0, 1.0, 5.0), (0.0, 0.0, 0.0), (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    path, layout = summary_case(tmp_path, geometry=flipped)
    assert layout.flip_x and not layout.flip_y
    pixels = np.asarray(Image.open(path))
    column, row = layout.pixel_of(3, 50, 90)
    left, _, width, _ = layout.tiles[layout.slices.index(3)]
    assert column < left + width / 2  # x = 90 of 128 is patient right here: viewer's left
    assert is_magenta(pixels[row, column])


def test_summary_renders_32_slices_of_256_quickly(tmp_path):
    anatomy, brain = head(nz=32, n=256)
    core = brain & (np.arange(256) > 170)
    render_summary(tmp_path / "warm.png", anatomy[:2], core[:2], core[:2], headline=["x"], details=[], warnings=[])
    start = time.process_time()  # CPU time: the machine running the tests may be busy
    render_summary(tmp_path / "s.png", anatomy, core, brain, headline=["Core 18 mL", "Mismatch 86 mL"],
                   details=["d"], warnings=["w"], parenchyma=brain)
    assert time.process_time() - start < 0.5  # about 0.2 s measured


def test_map_has_monotone_colour_bar_black_background_and_lut_colours(tmp_path):
    anatomy, brain = head(nz=4, n=96)
    units, window, colormap = MAP_STYLES["cbf"]
    cbf = np.broadcast_to(np.linspace(0, 100, 96, dtype=np.float32), brain.shape).copy()
    cbf[1, 48, 48] = np.nan
    path = tmp_path / "cbf.png"
    layout = render_map(path, cbf, name="CBF", units=units, window=window, colormap=colormap, mask=brain)
    with Image.open(path) as picture:
        assert picture.mode == "RGB" and picture.size == layout.size
        pixels = np.asarray(picture).astype(int)

    left, top, width, height = layout.colorbar
    bar = pixels[top + height // 2, left + 2: left + width - 2]
    nearest = np.argmin(((bar[:, None, :] - PERFUSION_LUT[None].astype(int)) ** 2).sum(axis=2), axis=1)
    assert np.all(np.diff(nearest) >= 0)
    assert nearest[0] <= 2 and nearest[-1] >= 253

    at = lambda z, y, x: pixels[layout.pixel_of(z, y, x)[::-1]]  # noqa: E731
    assert tuple(at(1, 48, 48)) == (0, 0, 0)             # NaN: black
    assert tuple(at(1, 48, 10)) == (0, 0, 0)             # outside the brain mask: black
    for x in (25, 40, 55, 70):                            # inside: the LUT colour of the value
        expected = PERFUSION_LUT[lut_indices(cbf[1, 30, x], window)]
        np.testing.assert_array_equal(at(1, 30, x), expected)
    assert np.count_nonzero(pixels[: layout.tiles[0][1] - 10].min(axis=2) > 200) > 300  # title


@pytest.mark.parametrize("kwargs", [
    dict(colormap="jet"),
    dict(window=(10.0, 10.0)),
    dict(mask=np.ones((2, 8, 9), bool)),
    dict(name=""),
])
def test_bad_map_inputs_raise_input_error(tmp_path, kwargs):
    arguments = dict(name="cbv", units="mL/100 g", window=(0.0, 6.0), colormap="perfusion")
    arguments.update(kwargs)
    with pytest.raises(InputError):
        render_map(tmp_path / "m.png", np.ones((2, 8, 8), np.float32), **arguments)


def test_bad_summary_inputs_raise_input_error(tmp_path):
    anatomy, brain = head(nz=2, n=32)
    with pytest.raises(InputError):
        render_summary(tmp_path / "s.png", anatomy, brain[:, :16], brain, headline=[], details=[], warnings=[])
    with pytest.raises(InputError):
        render_summary(tmp_path / "s.png", anatomy[0], brain[0], brain[0], headline=[], details=[], warnings=[])
    with pytest.raises(InputError):
        render_summary(tmp_path / "s.png", anatomy, brain, brain, headline="Core 5 mL", details=[], warnings=[])


def test_colour_bar_ticks_are_round_numbers_covering_the_window():
    np.testing.assert_allclose(_nice_ticks(0, 14), np.arange(0, 15, 2))
    np.testing.assert_allclose(_nice_ticks(0, 80), np.arange(0, 81, 10))
    np.testing.assert_allclose(_nice_ticks(0, 6), np.arange(0, 7, 1))


def test_text_falls_back_to_ascii_for_the_builtin_font():
    builtin = ImageFont.load_default(size=20)
    assert _printable("Research use only \u2014 core \u2265 70 mL, \u00e9", builtin) == \
        "Research use only - core >= 70 mL, e"


def test_pictures_render_without_system_fonts(tmp_path, monkeypatch):
    import triage.report.render as render

    truetype = render.ImageFont.truetype

    def without_dejavu(font, *args, **kwargs):
        if "DejaVu" in str(font):
            raise OSError("no such font")
        return truetype(font, *args, **kwargs)

    monkeypatch.setattr(render.ImageFont, "truetype", without_dejavu)
    render._font.cache_clear()
    try:
        path, layout = summary_case(tmp_path)
        assert render._font(30).getname()[0] != "DejaVu Sans"
        header = np.asarray(Image.open(path))[: layout.tiles[0][1] - 10]
        assert np.count_nonzero(header.min(axis=2) > 200) > 1000
    finally:
        render._font.cache_clear()


def test_tiles_follow_the_in_plane_pixel_aspect(tmp_path):
    values = np.ones((1, 40, 40), np.float32)
    wide_pixels = Geometry((1.0, 0.5, 5.0), (0.0, 0.0, 0.0))  # rows 0.5 mm apart: half as tall
    layout = render_map(tmp_path / "m.png", values, name="cbv", units="mL/100 g", window=(0, 6),
                        colormap="perfusion", geometry=wide_pixels)
    _, _, width, height = layout.tiles[0]
    assert height == pytest.approx(width / 2, abs=1)
    assert Image.open(tmp_path / "m.png").size == layout.size
