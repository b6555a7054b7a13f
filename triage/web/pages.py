"""The viewer's pages, each made of the one layout ``static/layout.html`` and its own main part.

The layout holds what every page shares, defined there once: the head (character set,
viewport, icon, style sheet, the title's " – stroke-triage"), the research-use line, the header
bar (brand, the signed-in user and the sign-out button, which ``common.js`` fills in) and the
footer. A page adds its title, its script module and any links of its own in the header bar
(:data:`PAGES`), and its ``<main>`` element (``static/<name>``). The placeholders of the layout
are ``string.Template`` names (``$language``, ``$title``, ``$script``, ``$links``, ``$texts``,
``$main``). The fixed words of the layout and the main parts are written ``{{viewer.key}}`` and
replaced, HTML-escaped, by the catalog's text of that key in the page's language
(:mod:`triage.base.language`); the page also carries every ``viewer.*`` template of its language
as JSON in ``<script type="application/json" id="texts">``, which ``common.js`` reads.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from triage.base.language import DEFAULT_LANGUAGE, catalog, check_language, render as text

STATIC_DIR = Path(__file__).parent / "static"
LAYOUT = "layout.html"
WORD = re.compile(r"\{\{(viewer\.[a-z_.]+)\}\}")


@dataclass(frozen=True)
class Page:
    """What one page adds to the layout: ``title`` (a catalog key; its text goes before
    " – stroke-triage"), ``script`` (a file of ``static/``) and header ``links`` as
    ``(element id, href, catalog key of the text)``."""

    title: str
    script: str
    links: tuple[tuple[str, str, str], ...] = ()


PAGES = {
    "index.html": Page("viewer.studies", "studies.js"),
    "login.html": Page("viewer.sign_in", "login.js"),
    "study.html": Page("viewer.study", "study.js", links=(("all-studies", "/", "viewer.all_studies"),)),
}


def render(name: str, language: str = DEFAULT_LANGUAGE) -> bytes:
    """The HTML of page ``name`` (a key of :data:`PAGES`) in ``language``, UTF-8; OSError when a
    file is missing."""
    check_language(language)
    page = PAGES[name]
    layout = Template((STATIC_DIR / LAYOUT).read_text(encoding="utf-8"))
    links = " ".join(f'<a href="{html.escape(href)}" id="{html.escape(key)}">{html.escape(text(words, language))}</a>'
                     for key, href, words in page.links)
    filled = layout.substitute(language=language, title=html.escape(text(page.title, language)),
                               script=html.escape(page.script), links=links, texts=texts_element(language),
                               main=(STATIC_DIR / name).read_text(encoding="utf-8").rstrip("\n"))
    return fill(filled, language).encode("utf-8")


def fill(markup: str, language: str) -> str:
    """``markup`` with each ``{{viewer.key}}`` replaced by its text in ``language``, HTML-escaped."""
    return WORD.sub(lambda found: html.escape(text(found[1], language)), markup)


def texts_element(language: str) -> str:
    """The ``viewer.*`` templates of ``language`` (English where it lacks one) as a JSON script
    element, ``<`` written ``\\u003c`` so that no text can end the element."""
    templates = {key: _template(key, language)
                 for key in catalog(DEFAULT_LANGUAGE) if key.startswith("viewer.")}
    data = json.dumps(templates, ensure_ascii=False).replace("<", "\\u003c")
    return f'<script type="application/json" id="texts">{data}</script>'


def _template(key: str, language: str) -> str:
    return catalog(language).get(key) or catalog(DEFAULT_LANGUAGE)[key]
