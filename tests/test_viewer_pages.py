"""The viewer's pages in Debian's headless Chromium (helpers and browser of tests/test_viewer.py),
over a phantom with non-square pixels analysed by ``triage analyze``
(:mod:`tests.support.webdata`): rows 2.1 mm apart, columns 1.5 mm, on a 128 x 128 matrix.

Checked: every page (sign-in, list, study) comes with the one shared head, research-use line,
header bar and footer (:mod:`triage.web.pages`); the map panels have the slice's physical
proportions, the AIF ring is round and on its voxel, and a click at a voxel's physical place
reads that voxel.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.support.webdata import ADMIN, SMALL, make_analysed_data, serve_api
from tests.support.browser import (  # noqa: F401  (browser: the fixture)
    RESEARCH_LINE,
    WORKSTATION,
    browser,
    need_chromium,
    new_page,
    screenshot,
)
from tests.test_viewer import MAPS, open_study, shown_slice, sign_in

SPACING_MM = (2.1, 1.5)  # PixelSpacing: between rows, between columns


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The API over a data directory with the non-square phantom analysed: {"base", "data"}."""
    need_chromium()
    data = make_analysed_data(tmp_path_factory.mktemp("stretched"), replace(SMALL, pixel_spacing_mm=SPACING_MM))
    with serve_api(data.data_dir) as (base, _app, _store):
        yield {"base": base, "data": data}


def test_every_page_shows_the_shared_head_header_and_footer(site, browser):
    """The sign-in page, the list and a study page, each from the one layout (triage/web/pages.py):
    the style sheet applied, the viewport set, the research-use line, the header bar and footer."""
    page = new_page(browser, WORKSTATION)
    seen = []
    for path in ("/login", "/", f"/studies/{site['data'].study_id}"):
        if path == "/":
            sign_in(page, site, user=ADMIN)
        else:
            page.goto(site["base"] + path)
        page.wait_for_load_state("networkidle")
        assert page.title().endswith(" – stroke-triage"), path
        assert page.inner_text(".ruo") == RESEARCH_LINE
        assert page.inner_text("header.bar .brand") == "stroke-triage"
        assert page.inner_text("footer").startswith("CT perfusion triage software that is not clinically validated")
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(16, 18, 20)"  # viewer.css
        assert page.get_attribute("meta[name=viewport]", "content") == "width=device-width, initial-scale=1"
        seen.append(page.title())
    assert seen[:2] == ["Sign in – stroke-triage", "Studies – stroke-triage"] and page.errors == []


def test_non_square_pixels_are_shown_to_scale_and_a_click_reads_its_voxel(site, browser):
    """Every map panel has the slice's physical width / height (0.71, where square pixels would
    show 1.0), the AIF ring is round and on its voxel, and a click at a voxel's physical place
    reads that voxel."""
    data = site["data"]
    page = new_page(browser, WORKSTATION)
    sign_in(page, site, user=ADMIN)
    open_study(page, site)
    detail = page.evaluate(f"fetch('/api/studies/{data.study_id}').then(r => r.json())")
    dx, dy, _ = detail["spacing_mm"]
    rows, columns = detail["matrix"]
    assert (dx, dy, rows, columns) == (1.5, 2.1, SMALL.matrix, SMALL.matrix)
    physical = columns * dx / (rows * dy)
    for name in MAPS:
        image = page.locator(f".map[data-map={name}] .map-image")
        assert image.evaluate("i => [i.naturalHeight, i.naturalWidth]") == [rows, columns]
        box = image.bounding_box()
        assert abs(box["width"] / box["height"] / physical - 1) < 0.02, (name, box)

    box = page.locator(".map[data-map=cbf] .map-image").bounding_box()
    scale = box["width"] / (columns * dx)  # screen pixels per mm, the same down the image

    def screen(x: int, y: int) -> tuple[float, float]:
        """Where the centre of voxel (x, y) is on screen."""
        return box["x"] + (x + 0.5) * dx * scale, box["y"] + (y + 0.5) * dy * scale

    assert abs(box["height"] - rows * dy * scale) < 0.02 * box["height"]
    x, y, z = detail["result"]["quality"]["aif"]["location"]["source_xyz"]
    assert shown_slice(page) == z
    ring = page.locator(".map[data-map=cbf] circle.mark-aif").bounding_box()
    centre = screen(x, y)
    assert abs(ring["x"] + ring["width"] / 2 - centre[0]) < 1.5
    assert abs(ring["y"] + ring["height"] / 2 - centre[1]) < 1.5
    assert abs(ring["width"] - ring["height"]) < 1.5  # a circle, not an ellipse

    for target in ((20, 100), (100, 20)):  # far from the middle: a wrong row scale misses
        page.click("#pick-aif")  # armed for one pick
        page.mouse.click(*screen(*target))
        assert page.locator("#confirm-aif").is_visible()
        assert f"column {target[0]}, row {target[1]}, slice {z}?" in page.inner_text("#confirm-aif-text")
        page.click("#confirm-aif button[value=cancel]")
    screenshot(page, "workstation-non-square-pixels")
    assert page.errors == []
