"""The viewer's pages in a real browser: Debian's headless Chromium driven by Playwright, against
the web API served by a real uvicorn over a data directory with a phantom series analysed by
``triage analyze`` (:mod:`tests.support.webdata`). The admin signs in with an account made by the
``triage user add`` command.

Checked: sign-in and sign-out, the study list (volumes of result.json, newest first, refreshing
by itself), the study page (volumes, criteria, quality, curves, AIF/VOF marks), scrolling slices
by slider, wheel, keys and buttons, the overlays toggling, a re-run with the AIF clicked on a map
(the clicked pixel mapped through the CSS scaling to the acquisition matrix: the job store holds
the AIF of result.json) whose result then replaces the shown one, a limited result made
prominent, no re-run control for the viewer role, no horizontal overflow at phone size, labels,
alt texts and WCAG contrast. The re-run tests play the node's part (claim the job, ``triage
analyze`` with its AIF) and run in file order: after them the shown result is generation 3.
Last, the same pages over a real ``triage serve --http-port`` node fed by DCMTK storescu: the open
list shows the series arriving, and the node itself analyses the re-run asked for on the page.
Screenshots of each page at workstation and phone size are written to ``tests/artifacts/`` (not
kept in git).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sample_data.phantom import make_phantom, write_dicom
from tests.support import peers
from tests.support.browser import (PHONE, RESEARCH_LINE, WORKSTATION, browser, need_chromium,  # noqa: F401 (fixture)
                                   new_page, playwright_api, screenshot, watched)
from tests.support.node import NodeProcess
from tests.support.webdata import SMALL, VIEWER, make_analysed_data, serve_api
from triage.base.names import safe_name
from triage.cli import main as triage_main
from triage.store.jobs import JobStore

expect = playwright_api.expect

ADMIN = ("lead", "lead-password-1")  # made with ``triage user add``
MAPS = ("cbf", "cbv", "mtt", "tmax")


def add_admin(data_dir: Path) -> None:
    """Make the ``ADMIN`` account with ``triage user add`` (the password on stdin)."""
    added = subprocess.run([sys.executable, "-m", "triage.cli", "user", "add", ADMIN[0], "--role", "admin",
                            "--data-dir", str(data_dir)], input=ADMIN[1] + "\n", text=True,
                           capture_output=True, timeout=60)
    assert added.returncode == 0, added.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The API over an analysed data directory: {"base": its URL, "data": AnalysedData,
    "result": generation 1's result.json}."""
    need_chromium()
    data = make_analysed_data(tmp_path_factory.mktemp("viewer"))
    add_admin(data.data_dir)
    result = json.loads((data.result_dir(1) / "result.json").read_text())
    with serve_api(data.data_dir) as (base, _app, _store):
        yield {"base": base, "data": data, "result": result}


def sign_in(page, site, user=ADMIN, path="/"):
    page.goto(site["base"] + path)
    page.wait_for_url("**/login*")
    page.fill("#username", user[0])
    page.fill("#password", user[1])
    page.click("button[type=submit]")
    page.wait_for_url(site["base"] + path)


def open_study(page, site):
    page.goto(f"{site['base']}/studies/{site['data'].study_id}")
    page.wait_for_selector("#viewer:not([hidden])")
    page.wait_for_function("""() => [...document.querySelectorAll('.map:not([hidden]) img')]
                              .every(image => image.complete && image.naturalWidth > 0)""")


def ml(value) -> str:
    return "–" if value is None else f"{value:.1f} mL"


def ratio(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def shown_slice(page, name="cbf") -> int:
    """The slice of the map ``name`` on screen, from its image URL (``.../{z}.png?...``)."""
    src = page.get_attribute(f".map[data-map={name}] .map-image", "src")
    return int(src.split("/")[-1].split(".")[0])


def no_horizontal_overflow(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def click_pixel(page, x: int, y: int, name="cbf") -> None:
    """Click the middle of acquisition pixel (x, y) of map ``name`` as displayed (CSS-scaled),
    once its slice has loaded."""
    page.wait_for_function(f"() => document.querySelector('.map[data-map={name}] .map-image').naturalWidth > 0")
    box = page.locator(f".map[data-map={name}] .map-image").bounding_box()
    columns, rows = page.evaluate(f"""(() => {{ const i = document.querySelector(
        '.map[data-map={name}] .map-image'); return [i.naturalWidth, i.naturalHeight]; }})()""")
    assert box["width"] != columns  # the image is scaled: the mapping is put to the test
    page.mouse.click(box["x"] + (x + 0.5) * box["width"] / columns, box["y"] + (y + 0.5) * box["height"] / rows)


def analyse_queued(site) -> dict:
    """Play the node's part in a re-run: claim the queued analysis, run ``triage analyze`` on the
    phantom series with the job's AIF into ``results/<id>/<generation>/``, finish the job; the
    new result.json."""
    data = site["data"]
    store = JobStore(data.data_dir / "triage.db")
    try:
        job = store.claim_job("analyse")
        aif = ",".join(str(v) for v in job.analysis_options()["aif"])
        status = triage_main(["analyze", str(data.data_dir.parent / "dicom" / "perfusion"), "--out",
                              str(data.result_dir(job.generation)), "--series", data.series_uid,
                              "--aif", aif, "--quiet"])
        assert status == 0 and store.finish_job(job.id)
    finally:
        store.close()
    return json.loads((data.result_dir(job.generation) / "result.json").read_text())


def analyse_jobs(site) -> list:
    store = JobStore(site["data"].data_dir / "triage.db")
    try:
        return store.jobs(site["data"].series_uid, "analyse")
    finally:
        store.close()


def test_sign_in_then_the_list_shows_the_volumes_and_refreshes(site, browser):
    page = new_page(browser, WORKSTATION)
    page.goto(site["base"] + "/")
    page.wait_for_url("**/login*")
    assert page.inner_text(".ruo") == RESEARCH_LINE
    page.fill("#username", ADMIN[0])
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("Wrong user name or password.")
    assert page.url.endswith("/login?next=%2F")
    screenshot(page, "workstation-login")

    page.fill("#password", ADMIN[1])
    page.click("button[type=submit]")
    page.wait_for_url(site["base"] + "/")
    row = page.locator(f"#studies tr[data-id='{site['data'].study_id}']")
    row.wait_for()
    result = site["result"]
    cells = {label: row.locator(f"td[data-label='{label}']").inner_text()
             for label in ("Status", "Core", "Tmax > 6 s", "Mismatch", "Ratio", "DEFUSE 3", "Quality")}
    assert cells == {"Status": "done", "Core": ml(result["core_ml"]), "Tmax > 6 s": ml(result["tmax6_ml"]),
                     "Mismatch": ml(result["mismatch_ml"]), "Ratio": ratio(result["mismatch_ratio"]),
                     "DEFUSE 3": "eligible" if result["eligibility"]["defuse3"] else "not eligible",
                     "Quality": result["quality"]["level"]}
    listed = page.evaluate("fetch('/api/studies').then(r => r.json())")["studies"]
    assert len(listed) == 2  # and the ignored NCCT series
    assert [s["last_received"] for s in listed] == sorted((s["last_received"] for s in listed), reverse=True)
    assert [row.get_attribute("data-id") for row in page.locator("#studies tbody tr").all()] == [
        s["id"] for s in listed]  # newest first
    assert page.inner_text("#user") == f"{ADMIN[0]} (admin)"
    assert page.inner_text(".ruo") == RESEARCH_LINE
    with page.expect_response("**/api/studies", timeout=10_000) as polled:
        pass
    assert polled.value.status == 200
    screenshot(page, "workstation-list")
    assert no_horizontal_overflow(page) and page.errors == []


def test_study_page_shows_the_result_curves_and_marks(site, browser):
    page = new_page(browser, WORKSTATION)
    sign_in(page, site)
    page.click(f"#studies tr[data-id='{site['data'].study_id}'] a")
    page.wait_for_url(f"**/studies/{site['data'].study_id}")
    open_study(page, site)
    result = site["result"]
    assert page.inner_text(".ruo") == RESEARCH_LINE
    for field in ("core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml"):
        assert page.inner_text(f"dd[data-field={field}]") == ml(result[field])
    for field in ("mismatch_ratio", "hir"):
        assert page.inner_text(f"dd[data-field={field}]") == ratio(result[field])
    reasons = result["eligibility"]["reasons"]
    assert reasons["defuse3"] in page.inner_text("li[data-decision=defuse3]")
    assert reasons["dawn"] in page.inner_text("li[data-decision=dawn]")
    quality = result["quality"]
    assert page.inner_text("#quality-level .chip") == quality["level"]
    assert page.locator("#warnings li").all_inner_texts() == quality["warnings"]
    assert page.locator("#quality-banner").is_visible() == (quality["level"] == "limited")

    detail = page.evaluate(f"fetch('/api/studies/{site['data'].study_id}').then(r => r.json())")
    for name in MAPS:
        low, high = detail["maps"][name]["window"]
        window = page.inner_text(f".map[data-map={name}] .window")
        assert window.startswith(f"window {low:g}–{high:g} ") and window.endswith(detail["maps"][name]["units"])
        image = page.locator(f".map[data-map={name}] .map-image")
        assert image.evaluate("i => [i.naturalHeight, i.naturalWidth]") == result["acquisition"]["matrix"]
        assert page.locator(f".map[data-map={name}] .colorbar").evaluate("i => i.naturalWidth") > 0
        assert image.get_attribute("alt").startswith(name.upper() if name != "tmax" else "Tmax")
        # patient right at the image's left (the phantom is axial), each letter at its edge
        box = image.bounding_box()
        for side, letter in detail["edges"].items():
            mark = page.locator(f".map[data-map={name}] .edge-{side}")
            assert mark.inner_text() == letter
            at = mark.bounding_box()
            centre = (at["x"] + at["width"] / 2 - box["x"]) / box["width"], (at["y"] + at["height"] / 2 - box["y"]) / box["height"]
            assert {"left": centre[0] < 0.1, "right": centre[0] > 0.9, "top": centre[1] < 0.1,
                    "bottom": centre[1] > 0.9}[side], (side, centre)
    assert detail["edges"] == {"left": "R", "right": "L", "top": "A", "bottom": "P"}

    times = result["acquisition"]["times_s"]
    for curve in ("aif", "vof", "tissue"):
        points = page.get_attribute(f"polyline[data-curve={curve}]", "points").split()
        assert len(points) == len(times)
    axis_titles = page.locator("svg.curves .axis-title").all_text_contents()
    assert "time (s)" in axis_titles and "AIF, VOF (HU)" in axis_titles
    # The AIF peak is the highest point of its line (SVG y grows downwards).
    aif_y = [float(p.split(",")[1]) for p in page.get_attribute("polyline[data-curve=aif]", "points").split()]
    curve = quality["aif"]["curve_hu"]
    assert aif_y.index(min(aif_y)) == curve.index(max(curve))

    x, y, z = quality["aif"]["location"]["source_xyz"]
    assert shown_slice(page) == z  # the page opens at the AIF's slice
    ring = page.locator(".map[data-map=cbf] circle.mark-aif")
    assert (float(ring.get_attribute("cx")), float(ring.get_attribute("cy"))) == (x + 0.5, y + 0.5)
    assert f"column {x}, row {y}, slice {z}" in page.inner_text("#curve-caption")
    screenshot(page, "workstation-study")
    assert no_horizontal_overflow(page) and page.errors == []


def test_slices_scroll_and_overlays_toggle(site, browser):
    page = new_page(browser, WORKSTATION)
    sign_in(page, site)
    open_study(page, site)
    slices = site["result"]["acquisition"]["slices"]
    aif_z = site["result"]["quality"]["aif"]["location"]["source_xyz"][2]
    page.focus("#slice")
    page.keyboard.press("Home")
    assert [shown_slice(page, name) for name in MAPS] == [0] * 4
    assert page.get_attribute(".map[data-map=cbf] .map-image", "src").endswith("/maps/cbf/0.png?generation=1")
    assert page.get_attribute(".map[data-map=cbf] .overlay-core", "src").endswith("/overlays/core/0.png?generation=1")
    page.keyboard.press("ArrowRight")
    assert shown_slice(page) == 1 and page.inner_text("#slice-label") == f"1 of 0–{slices - 1}"

    box = page.locator(".map[data-map=mtt] .stack").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    scrolled = page.evaluate("window.scrollY")
    page.mouse.wheel(0, 100)
    page.wait_for_function("() => document.querySelector('#slice').value === '2'")
    assert shown_slice(page, "tmax") == 2 and page.evaluate("window.scrollY") == scrolled
    page.mouse.wheel(0, -100)
    page.wait_for_function("() => document.querySelector('#slice').value === '1'")

    page.click("h2#viewer-heading")  # focus leaves the slider: the page's own arrow keys
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert shown_slice(page) == 3
    page.keyboard.press("End")
    assert shown_slice(page) == slices - 1
    page.click("#slice-up")  # stays at the last slice
    assert shown_slice(page) == slices - 1
    page.click("#slice-down")
    assert shown_slice(page) == slices - 2
    page.click("#to-aif")
    assert shown_slice(page) == aif_z and page.input_value("#slice") == str(aif_z)

    core = page.locator(".overlay-core")
    hypoperfusion = page.locator(".overlay-hypoperfusion")
    assert core.count() == hypoperfusion.count() == 4
    assert all(core.nth(i).is_visible() and hypoperfusion.nth(i).is_visible() for i in range(4))
    page.uncheck("#show-core")
    assert not any(core.nth(i).is_visible() for i in range(4))
    assert all(hypoperfusion.nth(i).is_visible() for i in range(4))
    page.uncheck("#show-hypoperfusion")
    assert not any(hypoperfusion.nth(i).is_visible() for i in range(4))
    page.check("#show-core")
    assert all(core.nth(i).is_visible() for i in range(4))
    page.uncheck("#show-markers")
    assert not page.locator(".map[data-map=cbf] circle.mark-aif").is_visible()

    page.check("input[name=layout][value=tmax]")
    assert [page.locator(f".map[data-map={name}]").is_visible() for name in MAPS] == [False, False, False, True]
    page.check("input[name=layout][value=all]")
    assert all(page.locator(f".map[data-map={name}]").is_visible() for name in MAPS)
    assert page.errors == []


def test_viewer_role_has_no_rerun_control(site, browser):
    page = new_page(browser, WORKSTATION)
    sign_in(page, site, VIEWER)
    open_study(page, site)
    assert page.inner_text("#user") == f"{VIEWER[0]} (viewer)"
    assert page.locator("#pick-aif").count() == 1 and not page.locator("#pick-aif").is_visible()
    page.locator(".map[data-map=cbf] .stack").click()
    assert not page.locator("#confirm-aif").is_visible()
    answer = page.request.post(f"{site['base']}/api/studies/{site['data'].study_id}/reprocess",
                               data={"aif": [1, 1, 0]})
    assert answer.status == 403
    assert [job.generation for job in analyse_jobs(site)] == [1]

    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(site["base"] + "/")
    page.wait_for_url("**/login?next=%2F")  # the session has ended


def test_a_session_ending_under_the_list_leads_to_sign_in_and_back(site, browser):
    page = new_page(browser, WORKSTATION)
    sign_in(page, site, VIEWER)
    page.locator("#studies tbody tr").first.wait_for()
    assert page.request.post(f"{site['base']}/api/logout").status == 403  # no CSRF token
    csrf = {c["name"]: c["value"] for c in page.context.cookies()}["triage_csrf"]
    assert page.request.post(f"{site['base']}/api/logout", headers={"X-CSRF-Token": csrf}).status == 200  # another tab
    page.wait_for_url("**/login?next=%2F", timeout=10_000)  # at the list's next refresh
    page.fill("#username", VIEWER[0])
    page.fill("#password", VIEWER[1])
    page.click("button[type=submit]")
    page.wait_for_url(site["base"] + "/")
    page.locator("#studies tbody tr").first.wait_for()


def test_phone_layout_fits_and_maps_a_tap_to_the_acquisition_pixel(site, browser):
    page = new_page(browser, PHONE)
    page.goto(site["base"] + "/login")
    assert page.inner_text(".ruo") == RESEARCH_LINE and no_horizontal_overflow(page)
    screenshot(page, "phone-login")
    sign_in(page, site)
    page.locator("#studies tbody tr").first.wait_for()
    assert no_horizontal_overflow(page)
    assert page.locator("#studies thead").bounding_box()["height"] <= 1  # one card per study
    row = page.locator(f"#studies tr[data-id='{site['data'].study_id}']")
    assert row.bounding_box()["width"] <= 390
    assert row.locator("td[data-label=Core]").inner_text() == ml(site["result"]["core_ml"])
    screenshot(page, "phone-list")

    open_study(page, site)
    assert page.inner_text(".ruo") == RESEARCH_LINE
    assert [page.locator(f".map[data-map={name}]").is_visible() for name in MAPS] == [True, False, False, False]
    assert page.locator(".map[data-map=cbf] .map-image").bounding_box()["width"] <= 390
    for control in ("#slice-up", "#slice-down", "#pick-aif", "#to-aif"):
        assert page.locator(control).bounding_box()["height"] >= 44
    start = shown_slice(page)
    page.tap("#slice-down")
    assert shown_slice(page) == start - 1
    page.tap("#to-aif")
    assert no_horizontal_overflow(page)
    screenshot(page, "phone-study")

    x, y, z = site["result"]["quality"]["aif"]["location"]["source_xyz"]
    jobs_before = len(analyse_jobs(site))
    page.tap("#pick-aif")
    page.locator(".map[data-map=cbf] .map-image").scroll_into_view_if_needed()
    click_pixel(page, x, y)
    assert page.locator("#confirm-aif").is_visible()
    assert f"column {x}, row {y}, slice {z}?" in page.inner_text("#confirm-aif-text")
    page.click("#confirm-aif button[value=cancel]")
    assert not page.locator("#confirm-aif").is_visible()
    assert len(analyse_jobs(site)) == jobs_before and page.errors == []


def test_admin_reruns_with_the_aif_clicked_on_a_map(site, browser):
    """Near the end of the module: the study's shown result becomes generation 2."""
    page = new_page(browser, WORKSTATION)
    sign_in(page, site)
    listing = watched(page.context.new_page())  # the study list stays open beside the study
    listing.goto(site["base"] + "/")
    status = listing.locator(f"#studies tr[data-id='{site['data'].study_id}'] td[data-label=Status]")
    assert status.inner_text() == "done"

    open_study(page, site)
    x, y, z = site["result"]["quality"]["aif"]["location"]["source_xyz"]
    page.click("#pick-aif")
    assert page.get_attribute("#pick-aif", "aria-pressed") == "true"
    page.keyboard.press("Escape")
    assert page.get_attribute("#pick-aif", "aria-pressed") == "false"
    click_pixel(page, x, y, "tmax")  # not armed: nothing happens
    assert not page.locator("#confirm-aif").is_visible()
    page.click("#pick-aif")
    click_pixel(page, x, y, "tmax")
    assert f"column {x}, row {y}, slice {z}?" in page.inner_text("#confirm-aif-text")
    screenshot(page, "workstation-rerun-confirm")
    page.click("#confirm-aif-ok")
    page.wait_for_function("() => document.querySelector('#rerun-status').textContent.includes('queued')")
    assert page.inner_text("#rerun-status") == f"Generation 2 queued: re-analysis with the AIF at column {x}, row {y}, slice {z}."

    jobs = analyse_jobs(site)
    assert [(job.generation, job.state) for job in jobs] == [(1, "done"), (2, "pending")]
    assert jobs[1].analysis_options() == {"aif": [x, y, z]}
    listing.wait_for_function(f"""() => document.querySelector("#studies tr[data-id='{site['data'].study_id}'] """
                              """td[data-label=Status]").textContent === 'queued'""", timeout=10_000)
    page.wait_for_function("() => document.querySelector('#rerun-status').textContent.startsWith('Generation 2 queued (')",
                           timeout=10_000)
    assert page.inner_text("dd[data-field=core_ml]") == ml(site["result"]["core_ml"])  # generation 1 until 2 is done

    second = analyse_queued(site)
    expect(page.locator("#rerun-status")).to_have_text(
        "Generation 2 is done; the result shown is the new one.", timeout=10_000)
    assert second["quality"]["aif"]["manual"] and second["quality"]["aif"]["location"]["source_xyz"] == [x, y, z]
    assert "AIF (chosen by hand) at" in page.inner_text("#curve-caption")
    assert page.inner_text("dd[data-field=core_ml]") == ml(second["core_ml"])
    assert page.get_attribute(".map[data-map=cbf] .map-image", "src").endswith(f"/maps/cbf/{z}.png?generation=2")
    expect(status).to_have_text("done", timeout=10_000)
    assert page.errors == [] and listing.errors == []


def test_a_rerun_with_a_wrong_aif_shows_its_limited_quality_prominently(site, browser):
    """After the re-run above: the admin clicks brain tissue instead of an artery; the result of
    that generation is flagged limited, on the study page (banner) and in the list."""
    page = new_page(browser, WORKSTATION)
    sign_in(page, site)
    open_study(page, site)
    assert not page.locator("#quality-banner").is_visible()
    x, y, z = site["result"]["quality"]["aif"]["location"]["source_xyz"]
    tissue = (site["result"]["acquisition"]["matrix"][1] // 2, 40)  # frontal white matter of the phantom
    page.click("#pick-aif")
    click_pixel(page, *tissue, "cbv")
    page.click("#confirm-aif-ok")
    expect(page.locator("#rerun-status")).to_contain_text("Generation 3 queued")
    third = analyse_queued(site)
    assert third["quality"]["level"] == "limited"
    expect(page.locator("#quality-banner")).to_be_visible(timeout=10_000)
    assert page.locator("#quality-banner li").all_inner_texts() == third["quality"]["warnings"]
    assert page.inner_text("#quality-level .chip") == "limited"
    assert f"column {tissue[0]}, row {tissue[1]}, slice {z}" in page.inner_text("#curve-caption")
    screenshot(page, "workstation-study-limited")

    phone = new_page(browser, PHONE)
    sign_in(phone, site)
    row = phone.locator(f"#studies tr[data-id='{site['data'].study_id}']")
    assert row.locator("td[data-label=Quality]").inner_text() == "limited"
    assert row.locator("td[data-label=Core]").inner_text() == ml(third["core_ml"])
    open_study(phone, site)
    banner = phone.locator("#quality-banner")
    assert banner.is_visible() and banner.bounding_box()["y"] < 844  # in the first screenful
    assert no_horizontal_overflow(phone)
    screenshot(phone, "phone-study-limited")
    assert page.errors == [] and phone.errors == []


ACCESSIBILITY_PROBLEMS = """() => {
  // WCAG 2 contrast of each visible element's own text against the first opaque background
  // behind it (4.5:1, or 3:1 for large text), images without alt text, unlabelled controls.
  const channels = (colour) => colour.match(/[\\d.]+/g).map(Number);
  const luminance = (rgb) => {
    const linear = rgb.slice(0, 3).map((c) => (c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2];
  };
  const background = (element) => {
    for (let e = element; e; e = e.parentElement) {
      const colour = channels(getComputedStyle(e).backgroundColor);
      if (colour.length < 4 || colour[3] > 0) return colour;
    }
    return [255, 255, 255];
  };
  const visible = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility === "visible";
  const problems = [];
  for (const element of document.body.querySelectorAll("*")) {
    if (element.closest("svg") || !visible(element)) continue;
    const text = [...element.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim();
    if (text) {
      const style = getComputedStyle(element);
      const [a, b] = [luminance(channels(style.color)), luminance(background(element))];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
      if (ratio < (large ? 3 : 4.5)) problems.push(`contrast ${ratio.toFixed(2)}: ${text.slice(0, 40)}`);
    }
    if (element.tagName === "IMG" && !element.getAttribute("alt")) problems.push(`no alt: ${element.src}`);
    if (element.matches("input, select, textarea") && element.labels.length === 0 && !element.getAttribute("aria-label")) {
      problems.push(`unlabelled ${element.tagName} ${element.id}`);
    }
    if (element.tagName === "BUTTON" && !element.textContent.trim() && !element.getAttribute("aria-label")) {
      problems.push(`nameless button ${element.id}`);
    }
  }
  return problems;
}"""


def test_pages_have_labels_alt_texts_and_contrast(site, browser):
    page = new_page(browser, WORKSTATION)
    page.goto(site["base"] + "/login")
    assert page.evaluate(ACCESSIBILITY_PROBLEMS) == []
    sign_in(page, site)
    page.locator("#studies tbody tr").first.wait_for()
    assert page.evaluate(ACCESSIBILITY_PROBLEMS) == []
    open_study(page, site)
    assert page.locator("img").count() >= 16  # 4 maps, 8 overlays, 4 colour bars
    assert page.evaluate(ACCESSIBILITY_PROBLEMS) == []
    assert page.errors == []


def test_a_series_without_result_says_why(site, browser):
    """The NCCT series of the study is recorded and ignored: its page has no maps, and says so."""
    page = new_page(browser, WORKSTATION)
    sign_in(page, site)
    page.goto(f"{site['base']}/studies/{safe_name(site['data'].ncct_uid)}")
    expect(page.locator("#no-result")).to_have_text("This series is not a CT perfusion series; it is not analysed.")
    assert page.inner_text("#meta").startswith("Status ignored")
    assert not page.locator("#viewer").is_visible() and not page.locator("#summary").is_visible()
    page.goto(f"{site['base']}/studies/no-such-series")
    expect(page.locator("#study-error")).to_have_text("The study could not be loaded: no such study.")
    assert page.inner_text(".ruo") == RESEARCH_LINE and page.errors == []


def test_a_series_sent_to_a_node_appears_in_the_open_list_and_is_rerun_by_it(browser, tmp_path):
    """A real ``triage serve --http-port`` node: the list is open before DCMTK storescu sends the
    phantom; the series appears and reaches "done" by itself; the admin's re-run at the AIF is
    analysed by the node as generation 2 and the open study page switches to it."""
    files = write_dicom(make_phantom(SMALL), tmp_path / "dicom")
    data_dir = tmp_path / "node"
    add_admin(data_dir)
    http_port = peers.free_port()
    node = NodeProcess(data_dir, extra=("--http-port", str(http_port))).start()
    try:
        peers.wait_for_port(http_port, process=node.process)
        site = {"base": f"http://127.0.0.1:{http_port}"}
        page = new_page(browser, WORKSTATION)
        sign_in(page, site)
        expect(page.locator("#empty")).to_be_visible()
        sent = peers.storescu(node.port, files, calling="CT1")
        assert sent.returncode == 0, sent.stderr[-2000:]
        status = page.locator("#studies tbody tr td[data-label=Status]")
        expect(status).to_have_text("done", timeout=90_000)
        study_id = page.get_attribute("#studies tbody tr", "data-id")
        result = json.loads((data_dir / "results" / study_id / "1" / "result.json").read_text())
        assert page.inner_text("#studies tbody td[data-label=Core]") == ml(result["core_ml"])

        page.click("#studies tbody a")
        page.wait_for_selector("#viewer:not([hidden])")
        x, y, z = result["quality"]["aif"]["location"]["source_xyz"]
        page.click("#pick-aif")
        click_pixel(page, x, y)
        page.click("#confirm-aif-ok")
        expect(page.locator("#rerun-status")).to_contain_text("Generation 2 queued")
        expect(page.locator("#rerun-status")).to_have_text(
            "Generation 2 is done; the result shown is the new one.", timeout=90_000)
        second = json.loads((data_dir / "results" / study_id / "2" / "result.json").read_text())
        assert second["quality"]["aif"]["location"]["source_xyz"] == [x, y, z]
        assert page.inner_text("dd[data-field=core_ml]") == ml(second["core_ml"])
        assert "AIF (chosen by hand) at" in page.inner_text("#curve-caption")
        assert page.errors == []
    finally:
        assert node.stop() == 0
