"""The viewer's pages in each language: ``<html lang>``, the fixed words from the catalogs and
the ``viewer.*`` templates for the scripts (served over HTTP by the real application)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.support.browser import WORKSTATION, browser, need_chromium, new_page, playwright_api  # noqa: F401 (fixture)
from tests.support.webdata import serve_api
from triage.base.errors import InputError
from triage.base.language import LANGUAGES, catalog
from triage.store.jobs import JobStore
from triage.web import pages
from triage.web.app import create_app

LEAK = re.compile(r"\{\{|viewer\.[a-z_]+[a-z_.]*(?=<)")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", sorted(pages.PAGES))
def test_a_page_is_written_in_its_language(name, language):
    page = pages.render(name, language).decode("utf-8")
    assert f'<html lang="{language}">' in page
    assert LEAK.search(page) is None
    assert f'<p class="ruo">{catalog(language)["viewer.ruo"]}</p>' in page
    texts = re.search(r'<script type="application/json" id="texts">(.*?)</script>', page)[1]
    templates = json.loads(texts)
    assert templates["viewer.sign_out"] == catalog(language)["viewer.sign_out"]
    assert all(key.startswith("viewer.") for key in templates)


def test_vietnamese_login_page_words():
    page = pages.render("login.html", "vi").decode("utf-8")
    assert "<title>Đăng nhập – stroke-triage</title>" in page
    assert ">Tên người dùng<" in page and ">Mật khẩu<" in page
    assert "Chỉ dùng cho nghiên cứu" in page
    assert "Sign in" not in page and "Password" not in page


def test_a_text_cannot_end_the_script_element(monkeypatch):
    english = dict(catalog("en"), **{"viewer.sign_out": "</script><b>"})
    monkeypatch.setattr(pages, "catalog", lambda language: english)
    element = pages.texts_element("en")
    assert element.count("</script>") == 1 and "\\u003c/script>\\u003cb>" in element


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_application_serves_its_pages_in_its_language(language, tmp_path):
    with serve_api(tmp_path, language=language) as (base, _, _):
        page = httpx.get(f"{base}/login").text
    assert f'<html lang="{language}">' in page
    assert f"<h1>{catalog(language)['viewer.sign_in']}</h1>" in page
    assert ("Đăng nhập" in page) == (language == "vi")


def test_an_unsupported_language_is_refused_in_one_line(tmp_path):
    with pytest.raises(InputError, match=r"^language 'fr' is not supported: en or vi$"):
        create_app(tmp_path, JobStore(tmp_path / "triage.db"), language="fr")


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_login_page_in_chromium_speaks_its_language(language, tmp_path, browser):
    need_chromium()
    with serve_api(tmp_path, language=language) as (base, _, _):
        page = new_page(browser, WORKSTATION)
        page.goto(f"{base}/login")
        assert page.get_attribute("html", "lang") == language
        assert page.inner_text(".ruo") == catalog(language)["viewer.ruo"]
        page.fill("#username", "nobody")
        page.fill("#password", "not-the-password")
        page.click("button[type=submit]")
        playwright_api.expect(page.locator("#login-error")).to_have_text(catalog(language)["viewer.login_wrong"])
        assert re.search(r"viewer\.[a-z_.]+", page.inner_text("body")) is None
        assert page.errors == []
