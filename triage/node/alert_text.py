"""Every sentence a person reads in an alert, in one place (so that it can be translated).

The JSON alert's ``message`` paragraph (:func:`result_paragraph`, :func:`failure_paragraph`,
:func:`incomplete_paragraph`) and the chat and e-mail text (:func:`chat_message`, built from the
JSON alert body alone, and :func:`plain_text`, :func:`email_subject`) are made here; the
adapters of :mod:`triage.node.channels` only arrange them in each service's payload. Text is
``str`` throughout (non-ASCII characters such as "≥" are kept; the payloads are UTF-8). Volumes
are in mL with one decimal, as in the alert.

Research use only.
"""

from __future__ import annotations

from dataclasses import dataclass

STATEMENT = ("Research use only: not clinically validated and not for clinical decisions; "
             "verify against the source images.")
VIEWER_LINK_LABEL = "Open in the viewer"


@dataclass(frozen=True)
class ChatMessage:
    """An alert for a person on a phone: a ``title`` line, ``facts`` as (label, value) pairs,
    ``notes`` (warnings, the error, what is missing), the viewer ``link`` (None without a
    viewer) and the research-use ``statement``."""

    title: str
    facts: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    link: str | None
    statement: str = STATEMENT
    link_label: str = VIEWER_LINK_LABEL


def result_paragraph(series_uid: str, generation: int, volumes: dict, eligibility: dict,
                     quality_level: str, warnings: list[str]) -> str:
    """One paragraph for a person reading the JSON alert of a result (chat, pager)."""
    ratio = volumes["mismatch_ratio"]
    return (f"Stroke triage result for series {series_uid}{_again(generation)}: core {volumes['core_ml']:.1f} mL, "
            f"Tmax > 6 s {volumes['tmax6_ml']:.1f} mL, mismatch {volumes['mismatch_ml']:.1f} mL "
            f"(ratio {'n/a' if ratio is None else ratio}). DEFUSE 3 imaging criteria "
            f"{'met' if eligibility['defuse3'] else 'not met'}; DAWN {eligibility['reasons']['dawn']}. "
            f"Quality {quality_level}" + (f" ({'; '.join(warnings)})" if warnings else "") + f". {STATEMENT}")


def failure_paragraph(series_uid: str, generation: int, reason: str) -> str:
    what = f"re-analysis {generation}" if generation >= 2 else "analysis"
    return (f"Stroke triage: the {what} of series {series_uid} failed: {reason}. "
            "No result will come from it: read the images without it.")


def incomplete_paragraph(series_uid: str, missing: str, quiet_s: float) -> str:
    return (f"Stroke triage: CT perfusion series {series_uid} is incomplete after {quiet_s:.0f} s "
            f"without new images ({missing}); it is analysed when the missing images arrive. Read the "
            "images without waiting for it.")


def chat_message(alert: dict) -> ChatMessage:
    """The chat and e-mail text of a JSON alert body (:mod:`triage.node.alerts`): for a result
    the core, Tmax > 6 s and mismatch volumes, the mismatch ratio, DEFUSE 3 and DAWN, the
    quality and its warnings; for a failure the error; for an incomplete series what is
    missing; always the series and the viewer link."""
    study, kind = alert["study"], alert["kind"]
    series = ("Series", f"{study['series_description'] or 'unnamed'} ({study['series_uid']})")
    link = alert["links"]["study"]
    if kind == "failure":
        return ChatMessage(f"Stroke triage: analysis failed{_again(study['generation'])}", (series,),
                           (f"Error: {alert['error']}", "No result will come from it: read the images without it."),
                           link)
    if kind == "incomplete":
        return ChatMessage("Stroke triage: CT perfusion series incomplete", (series,),
                           (f"Missing: {alert['missing']}",
                            "It is analysed when the missing images arrive: read the images without waiting."),
                           link)
    v, eligibility, quality = alert["volumes"], alert["eligibility"], alert["quality"]
    ratio = "n/a (no core)" if v["mismatch_ratio"] is None else f"{v['mismatch_ratio']:g}"
    facts = (("Core", f"{v['core_ml']:.1f} mL"), ("Tmax > 6 s", f"{v['tmax6_ml']:.1f} mL"),
             ("Mismatch", f"{v['mismatch_ml']:.1f} mL"), ("Mismatch ratio", ratio),
             ("DEFUSE 3", eligibility["reasons"]["defuse3"]), ("DAWN", eligibility["reasons"]["dawn"]),
             ("Quality", quality["level"]), series)
    return ChatMessage(f"Stroke triage result{_again(study['generation'])}: core {v['core_ml']:.1f} mL, "
                       f"mismatch {v['mismatch_ml']:.1f} mL", facts,
                       tuple(f"Warning: {w}" for w in quality["warnings"]), link)


def plain_text(message: ChatMessage) -> str:
    """``message`` as plain text lines (Telegram, the e-mail body)."""
    lines = [message.title, "", *(f"{label}: {value}" for label, value in message.facts)]
    lines += ["", *message.notes] if message.notes else []
    lines += ["", f"{message.link_label}: {message.link}"] if message.link else []
    return "\n".join([*lines, "", message.statement])


def email_subject(message: ChatMessage) -> str:
    return f"{message.title} (research use only)"


def _again(generation: int) -> str:
    return f" (re-analysis {generation})" if generation >= 2 else ""
