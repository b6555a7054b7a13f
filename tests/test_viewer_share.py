"""Share links in a real browser (Debian's headless Chromium through Playwright) against the web
API served by a real uvicorn over a data directory with a phantom series analysed by ``triage
analyze`` (:mod:`tests.support.webdata`): an admin makes a link on the study page and copies
it; a browser that never signed in opens it and sees that study's maps and volumes, marked as
a shared read-only view with its expiry, with no admin control; after the admin revokes the
link on the page, the same browser is refused; an open shared page takes the study off the
screen when its link expires. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import json

import pytest

from tests.support.browser import (PHONE, RESEARCH_LINE, WORKSTATION, browser, need_chromium,  # noqa: F401 (fixture)
                                   new_page, screenshot)
from tests.support.webdata import ADMIN, make_analysed_data, serve_api

MAPS = ("cbf", "cbv", "mtt", "tmax")
ALL_MAPS_SHOWN = """() => [...document.querySelectorAll('.map:not([hidden]) img.map-image')]
                    .every(image => image.complete && image.naturalWidth > 0)"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    need_chromium()
    data = make_analysed_data(tmp_path_factory.mktemp("viewer-share"))
    result = json.loads((data.result_dir(1) / "result.json").read_text())
    with serve_api(data.data_dir) as (base, _app, _store):
        yield {"base": base, "data": data, "result": result}


def admin_study_page(browser, site):
    page = new_page(browser, WORKSTATION)
    page.goto(f"{site['base']}/studies/{site['data'].study_id}")
    page.wait_for_url("**/login*")
    page.fill("#username", ADMIN[0])
    page.fill("#password", ADMIN[1])
    page.click("button[type=submit]")
    page.wait_for_selector("#share:not([hidden])")
    return page


def test_a_consultant_opens_a_share_link_without_signing_in_until_it_is_revoked(site, browser):
    admin = admin_study_page(browser, site)
    admin.select_option("#share-hours", "4")
    admin.fill("#share-note", "Dr Lan, Hue")
    admin.click("#share-create")
    admin.wait_for_selector("#share-new:not([hidden])")
    link = admin.input_value("#share-url")
    assert link.startswith(site["base"] + "/share/") and len(link.split("/share/")[1]) >= 43
    admin.click("#share-copy")
    admin.wait_for_selector("#share-copied:text('Copied.')")
    item = admin.locator("#share-links li").first
    item.wait_for()
    assert item.get_attribute("data-state") == "active" and "For Dr Lan, Hue" in item.inner_text()
    screenshot(admin, "workstation-share-control")

    for device, name in ((WORKSTATION, "workstation"), (PHONE, "phone")):
        consultant = new_page(browser, device)  # never signed in: no cookie
        answer = consultant.goto(link)
        assert answer.status == 200 and answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["cache-control"] == "no-store"
        consultant.wait_for_selector("#viewer:not([hidden])")
        consultant.wait_for_function(ALL_MAPS_SHOWN)
        banner = consultant.inner_text("#share-banner")
        assert "Shared read-only view" in banner and "expires" in banner and "research use" in banner
        assert consultant.inner_text(".ruo") == RESEARCH_LINE
        shown = [n for n in MAPS if consultant.locator(f".map[data-map={n}] img.map-image").is_visible()]
        assert shown == (list(MAPS) if device is WORKSTATION else ["cbf"])
        assert "/share/" in consultant.get_attribute(".map[data-map=cbf] img.map-image", "src")
        core = consultant.inner_text("#volumes dd[data-field=core_ml]")
        assert core == f"{site['result']['core_ml']:.1f} mL"
        for control in ("#share", "#rerun", "#pick-aif", "#all-studies", "#user-area", "#logout"):
            assert not consultant.locator(control).is_visible(), control
        assert consultant.request.get(f"{site['base']}/api/studies").status == 401
        assert consultant.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        screenshot(consultant, f"{name}-shared-view")
        assert consultant.errors == []

    admin.locator("#share-links li[data-state=active] .share-revoke").click()
    admin.wait_for_selector("#share-links li[data-state=revoked]")
    assert "revoked" in admin.inner_text("#share-status")
    refused = new_page(browser, WORKSTATION)
    answer = refused.goto(link)
    assert answer.status == 410
    assert "was revoked" in refused.inner_text("#share-refused")
    assert refused.inner_text(".ruo") == RESEARCH_LINE
    screenshot(refused, "workstation-share-refused")
    assert admin.errors == []


def csrf_of(page) -> str:
    """The CSRF token of the page's session (its ``triage_csrf`` cookie), for API requests."""
    return {cookie["name"]: cookie["value"] for cookie in page.context.cookies()}["triage_csrf"]


def test_a_shared_page_takes_the_study_off_the_screen_when_its_link_expires(site, browser):
    """A link made (through the API) for 18 s: the open page shows the maps, then, at the
    expiry, hides them and says the link has expired; opened again it is refused."""
    admin = admin_study_page(browser, site)
    made = admin.request.post(f"{site['base']}/api/studies/{site['data'].study_id}/shares", data={"hours": 0.005},
                                headers={"X-CSRF-Token": csrf_of(admin)})
    assert made.status == 201
    consultant = new_page(browser, WORKSTATION)
    assert consultant.goto(site["base"] + made.json()["path"]).status == 200
    consultant.wait_for_function(ALL_MAPS_SHOWN)
    consultant.wait_for_selector("#share-banner:text('has expired')", timeout=60_000)
    assert not consultant.locator("#viewer").is_visible() and not consultant.locator("#summary").is_visible()
    answer = consultant.reload()
    assert answer.status == 410 and "has expired" in consultant.inner_text("#share-refused")
    assert consultant.errors == [] and admin.errors == []
