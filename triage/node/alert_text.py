"""Every sentence a person reads in an alert, in one place (so that it can be translated).

The JSON alert's ``message`` paragraph (:func:`result_paragraph`, :func:`failure_paragraph`,
:func:`incomplete_paragraph`) and the chat and e-mail text (:func:`chat_message`, built from the
JSON alert body alone, and :func:`plain_text`, :func:`email_subject`) are made here; the
adapters of :mod:`triage.node.channels` only arrange them in each service's payload. Text is
``str`` throughout (non-ASCII characters such as "≥" are kept; the payloads are UTF-8). Volumes
are in mL with one decimal, as in the alert. The words are those of the catalogs of
:mod:`triage.base.language` in the alert's ``language`` (the setting ``language``); numbers and
units are the same in every language.

Research use only.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.base.language import DEFAULT_LANGUAGE, in_language, render


@dataclass(frozen=True)
class ChatMessage:
    """An alert for a person on a phone: a ``title`` line, ``facts`` as (label, value) pairs,
    ``notes`` (warnings, the error, what is missing), the viewer ``link`` (None without a
    viewer), all in ``language``."""

    title: str
    facts: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    link: str | None
    language: str = DEFAULT_LANGUAGE

    @property
    def statement(self) -> str:
        """The research-use statement."""
        return statement(self.language)

    @property
    def link_label(self) -> str:
        return render("alert.viewer_link", self.language)


def statement(language: str) -> str:
    """The research-use statement every alert carries."""
    return render("alert.statement", language)


def result_paragraph(series_uid: str, generation: int, volumes: dict, eligibility: dict, quality_level: str,
                     warnings: list[str], language: str = DEFAULT_LANGUAGE) -> str:
    """One paragraph for a person reading the JSON alert of a result (chat, pager);
    ``eligibility`` as in ``result.json`` with its reasons in ``language``."""
    ratio = volumes["mismatch_ratio"]
    return render("alert.result_paragraph", language, series_uid=series_uid, again=_again(generation, language),
                  core_ml=volumes["core_ml"], tmax6_ml=volumes["tmax6_ml"], mismatch_ml=volumes["mismatch_ml"],
                  ratio=render("summary.not_available", language) if ratio is None else ratio,
                  defuse3=render("alert.met" if eligibility["defuse3"] else "alert.not_met", language),
                  dawn=eligibility["reasons"]["dawn"], quality=_quality(quality_level, language),
                  warnings=f" ({'; '.join(warnings)})" if warnings else "", statement=statement(language))


def failure_paragraph(series_uid: str, generation: int, reason: str, language: str = DEFAULT_LANGUAGE) -> str:
    what = render("alert.reanalysis", language, generation=generation) if generation >= 2 else \
        render("alert.analysis", language)
    return render("alert.failure_paragraph", language, what=what, series_uid=series_uid, reason=reason)


def incomplete_paragraph(series_uid: str, missing: str, quiet_s: float, language: str = DEFAULT_LANGUAGE) -> str:
    return render("alert.incomplete_paragraph", language, series_uid=series_uid, quiet_s=quiet_s,
                  missing=in_language(missing, language))


def chat_message(alert: dict) -> ChatMessage:
    """The chat and e-mail text of a JSON alert body (:mod:`triage.node.alerts`), in its
    ``language``: for a result the core, Tmax > 6 s and mismatch volumes, the mismatch ratio,
    DEFUSE 3 and DAWN, the quality and its warnings; for a failure the error; for an incomplete
    series what is missing; always the series and the viewer link."""
    study, kind, language = alert["study"], alert["kind"], alert.get("language", DEFAULT_LANGUAGE)
    def t(key, **values):
        return render(key, language, **values)
    again = _again(study["generation"], language)
    series = (t("alert.series"), f"{study['series_description'] or t('alert.unnamed')} ({study['series_uid']})")
    link = alert["links"]["study"]
    if kind == "failure":
        return ChatMessage(t("alert.failed_title", again=again), (series,),
                           (t("alert.error", error=alert["error"]), t("alert.no_result")), link, language)
    if kind == "incomplete":
        return ChatMessage(t("alert.incomplete_title"), (series,),
                           (t("alert.missing", missing=alert["missing"]), t("alert.analysed_when_complete")),
                           link, language)
    v, eligibility, quality = alert["volumes"], alert["eligibility"], alert["quality"]
    ratio = t("summary.no_core") if v["mismatch_ratio"] is None else f"{v['mismatch_ratio']:g}"
    facts = ((t("alert.core"), f"{v['core_ml']:.1f} mL"), ("Tmax > 6 s", f"{v['tmax6_ml']:.1f} mL"),
             (t("alert.mismatch"), f"{v['mismatch_ml']:.1f} mL"), (t("alert.mismatch_ratio"), ratio),
             ("DEFUSE 3", eligibility["reasons"]["defuse3"]), ("DAWN", eligibility["reasons"]["dawn"]),
             (t("alert.quality"), _quality(quality["level"], language)), series)
    return ChatMessage(t("alert.result_title", again=again, core_ml=v["core_ml"], mismatch_ml=v["mismatch_ml"]),
                       facts, tuple(t("summary.warning", warning=w) for w in quality["warnings"]), link, language)


def plain_text(message: ChatMessage) -> str:
    """``message`` as plain text lines (Telegram, the e-mail body)."""
    lines = [message.title, "", *(f"{label}: {value}" for label, value in message.facts)]
    lines += ["", *message.notes] if message.notes else []
    lines += ["", f"{message.link_label}: {message.link}"] if message.link else []
    return "\n".join([*lines, "", message.statement])


def email_subject(message: ChatMessage) -> str:
    return render("alert.subject", message.language, title=message.title)


def _again(generation: int, language: str) -> str:
    return render("alert.again", language, generation=generation) if generation >= 2 else ""


def _quality(level: str, language: str) -> str:
    """A quality level (``good``, ``limited``) in ``language``; another word as it is."""
    return render(f"quality.{level}", language) if level in ("good", "limited") else level
