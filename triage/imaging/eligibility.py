"""Imaging criteria of the late-window thrombectomy trials.

Only what the images (and, for DAWN, age and NIHSS) can tell: vessel occlusion site, onset time and
the other clinical criteria are for the stroke team. Research use only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from triage.base.language import Text


@dataclass(frozen=True)
class Eligibility:
    """Trial criteria met by the measured volumes.

    ``defuse3`` is the DEFUSE 3 imaging target mismatch: core < 70 mL, mismatch ratio ≥ 1.8 and
    mismatch volume ≥ 15 mL. ``dawn`` is the DAWN clinical-core mismatch, None when age or NIHSS
    is unknown. ``reasons`` says in words why each criterion is met or not.
    """

    defuse3: bool
    dawn: bool | None
    reasons: dict

    def as_dict(self) -> dict:
        return asdict(self)


def defuse3_imaging(core_ml: float, tmax6_ml: float) -> tuple[bool, str]:
    """DEFUSE 3 target mismatch from the core and Tmax > 6 s volumes (mL)."""
    mismatch_ml = tmax6_ml - core_ml
    ratio = tmax6_ml / core_ml if core_ml > 0 else float("inf")
    failed = []
    if core_ml >= 70:
        failed.append(Text("defuse3.core", core_ml=core_ml))
    if ratio < 1.8:
        failed.append(Text("defuse3.ratio", ratio=ratio))
    if mismatch_ml < 15:
        failed.append(Text("defuse3.volume", mismatch_ml=mismatch_ml))
    if failed:
        return False, Text("defuse3.not_met", failed=failed)
    return True, Text("defuse3.met")


def dawn(core_ml: float, age: float | None, nihss: int | None) -> tuple[bool | None, str]:
    """DAWN clinical-core mismatch groups A–C; None when age or NIHSS is unknown."""
    if age is None or nihss is None:
        return None, Text("dawn.unknown")
    if age >= 80:
        groups = [("A", nihss >= 10 and core_ml < 21, Text("dawn.rule_a"))]
    else:
        groups = [
            ("B", nihss >= 10 and core_ml < 31, Text("dawn.rule_b")),
            ("C", nihss >= 20 and core_ml < 51, Text("dawn.rule_c")),
        ]
    for group, met, rule in groups:
        if met:
            return True, Text("dawn.met", group=group, rule=rule)
    return False, Text("dawn.not_met", age=age, nihss=nihss, core_ml=core_ml, rules=[rule for _, _, rule in groups])


def assess(core_ml: float, tmax6_ml: float, *, age: float | None, nihss: int | None) -> Eligibility:
    """Both trials' criteria for one result."""
    defuse3_met, defuse3_reason = defuse3_imaging(core_ml, tmax6_ml)
    dawn_met, dawn_reason = dawn(core_ml, age, nihss)
    return Eligibility(defuse3_met, dawn_met, {"defuse3": defuse3_reason, "dawn": dawn_reason})
