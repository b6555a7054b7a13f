"""The words a person reads, in each supported language: captions, quality warnings, alert text.

Each text has a key in the catalogs ``triage/base/languages/<language>.json`` (``en``, the
default, and ``vi``, Vietnamese), a template in :meth:`str.format` syntax. Numbers are formatted
by the template's format specification and are the same in every language: a decimal point, SI
units and their symbols (mL, s, mm, HU, mL/100 g/min), trial names (DEFUSE 3, DAWN) untranslated.

:class:`Text` is a ``str`` (its English rendering, so logs, ``result.json`` and the DICOM
objects keep reading as before) that also holds its key and values, so that it can be rendered
in another language later (:meth:`Text.render`) and stored as data (:meth:`Text.as_dict`,
:meth:`Text.from_dict`). A value that is a Text, or a list of Texts, is rendered in the same
language; a list is joined with "; " (Texts) or ", " (anything else).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from triage.base.errors import InputError

LANGUAGES = ("en", "vi")
DEFAULT_LANGUAGE = "en"
CATALOGS = Path(__file__).with_name("languages")


@cache
def catalog(language: str) -> dict[str, str]:
    """The templates of ``language`` by key (``en`` has every key)."""
    return json.loads((CATALOGS / f"{check_language(language)}.json").read_text(encoding="utf-8"))


def check_language(language: str) -> str:
    """``language`` if supported; InputError (one line) otherwise."""
    if language not in LANGUAGES:
        raise InputError(f"language {language!r} is not supported: {' or '.join(LANGUAGES)}")
    return language


def render(key: str, language: str = DEFAULT_LANGUAGE, **values) -> str:
    """The text of ``key`` in ``language`` with ``values`` (English where the catalog lacks it)."""
    templates = catalog(language)
    template = templates.get(key) or templates.get(key.removesuffix(".one")) or catalog(DEFAULT_LANGUAGE)[key]
    return template.format(**{name: _rendered(value, language) for name, value in values.items()})


def counted(key: str, n: int, **values) -> "Text":
    """The Text of ``key`` with ``n`` (``key.one`` when ``n`` is 1 and the catalog has it:
    English singulars; a language without plurals uses ``key`` for every ``n``)."""
    return Text(f"{key}.one" if n == 1 and f"{key}.one" in catalog(DEFAULT_LANGUAGE) else key, n=n, **values)


def _rendered(value, language: str):
    if isinstance(value, Text):
        return value.render(language)
    if isinstance(value, (list, tuple)):
        joined = "; " if value and all(isinstance(v, Text) for v in value) else ", "
        return joined.join(str(_rendered(v, language)) for v in value)
    return value


def _plain(value):
    """``value`` as JSON data: NumPy scalars as Python numbers, Texts as dictionaries."""
    if isinstance(value, Text):
        return value.as_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


class Text(str):
    """A text for a person: the English rendering of catalog ``key`` with ``values``."""

    key: str
    values: dict

    def __new__(cls, key: str, **values) -> "Text":
        values = {name: _plain(value) for name, value in values.items()}
        values = {name: _revived(value) for name, value in values.items()}
        text = super().__new__(cls, render(key, DEFAULT_LANGUAGE, **values))
        text.key, text.values = key, values
        return text

    def __reduce__(self):  # copies and pickles are made again from the key and values
        return _from_parts, (self.key, self.values)

    def render(self, language: str) -> str:
        """This text in ``language``."""
        return render(self.key, language, **self.values)

    def as_dict(self) -> dict:
        """``{"key": ..., "values": {...}}``, JSON data (nested Texts as dictionaries)."""
        return {"key": self.key, "values": {name: _plain(value) for name, value in self.values.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "Text":
        """The Text that :meth:`as_dict` gave ``data``; InputError for an unknown key."""
        if data.get("key") not in catalog(DEFAULT_LANGUAGE):
            raise InputError(f"unknown text key {data.get('key')!r}")
        return cls(data["key"], **data.get("values", {}))


def _from_parts(key: str, values: dict) -> Text:
    return Text(key, **values)


def _revived(value):
    """Nested ``as_dict`` data back to Texts (a Text's values keep Texts as Texts)."""
    if isinstance(value, dict) and set(value) == {"key", "values"}:
        return Text.from_dict(value)
    if isinstance(value, list):
        return [_revived(v) for v in value]
    return value


def in_language(text: str, language: str) -> str:
    """``text`` rendered in ``language`` when it is a Text; a plain string as it is."""
    return text.render(language) if isinstance(text, Text) else text
