"""Debian's headless Chromium driven by Playwright, for the viewer's tests: the ``browser``
fixture (one browser per test module; a test module imports it), pages of fresh contexts
(no cookies) collecting their JavaScript errors, the screen sizes tested and screenshots into
``tests/artifacts/`` (not kept in git). Never ``playwright install``: the Debian build is
launched, with the flags that keep it off the network.
"""

from __future__ import annotations

from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).parents[1] / "artifacts"
RESEARCH_LINE = "Research use only — not for clinical decisions"
WORKSTATION = {"viewport": {"width": 1920, "height": 1080}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2}


def need_chromium() -> None:
    """Skip the test when Debian's chromium is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is missing: run scripts/setup.sh (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def watched(page):
    """``page`` with its uncaught JavaScript errors and Content Security Policy violations
    (console messages) collected in ``page.errors``."""
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: page.errors.append(message.text)
            if "Content Security Policy" in message.text else None)
    return page


def new_page(browser, device: dict):
    """A page of a fresh browser context (no cookies)."""
    return watched(browser.new_context(**device).new_page())


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
