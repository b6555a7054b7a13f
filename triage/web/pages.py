"""The viewer's pages, each made of the one layout ``static/layout.html`` and its own main part.

The layout holds what every page shares, defined there once: the head (character set,
viewport, icon, style sheet, the title's " – stroke-triage"), the research-use line, the header
bar (brand, the signed-in user and the sign-out button, which ``common.js`` fills in) and the
footer. A page adds its title, its script module and any links of its own in the header bar
(:data:`PAGES`), and its ``<main>`` element (``static/<name>``). The placeholders of the layout
are ``string.Template`` names (``$title``, ``$script``, ``$links``, ``$main``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from string import Template

STATIC_DIR = Path(__file__).parent / "static"
LAYOUT = "layout.html"


@dataclass(frozen=True)
class Page:
    """What one page adds to the layout: ``title`` (before " – stroke-triage"), ``script`` (a
    file of ``static/``) and header ``links`` as ``(element id, href, text)``."""

    title: str
    script: str
    links: tuple[tuple[str, str, str], ...] = ()


PAGES = {
    "index.html": Page("Studies", "studies.js"),
    "login.html": Page("Sign in", "login.js"),
    "study.html": Page("Study", "study.js", links=(("all-studies", "/", "All studies"),)),
}


def render(name: str) -> bytes:
    """The HTML of page ``name`` (a key of :data:`PAGES`), UTF-8; OSError when a file is missing."""
    page = PAGES[name]
    layout = Template((STATIC_DIR / LAYOUT).read_text(encoding="utf-8"))
    links = " ".join(f'<a href="{html.escape(href)}" id="{html.escape(key)}">{html.escape(text)}</a>'
                     for key, href, text in page.links)
    return layout.substitute(title=html.escape(page.title), script=html.escape(page.script), links=links,
                             main=(STATIC_DIR / name).read_text(encoding="utf-8").rstrip("\n")).encode("utf-8")
