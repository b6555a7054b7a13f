"""DEFUSE 3 and DAWN criteria at and around their cut-offs."""

import pytest

from triage.imaging.eligibility import assess, dawn, defuse3_imaging


@pytest.mark.parametrize(
    "core, tmax6, expected",
    [
        (20, 100, True),     # typical target mismatch
        (69, 130, True),     # just under the core limit, ratio 1.88, mismatch 61
        (70, 200, False),    # core at the limit
        (10, 17, False),     # ratio 1.7
        (10, 24, False),     # ratio 2.4 but mismatch 14 mL
        (10, 25, True),      # mismatch exactly 15 mL, ratio 2.5
        (0, 30, True),       # no core: ratio infinite
        (0, 10, False),      # no core, mismatch 10 mL
    ],
)
def test_defuse3_imaging(core, tmax6, expected):
    met, reason = defuse3_imaging(core, tmax6)
    assert met is expected
    assert reason.startswith("met" if expected else "not met")


@pytest.mark.parametrize(
    "core, age, nihss, expected",
    [
        (20, 85, 10, True),    # group A
        (21, 85, 12, False),   # core at the group A limit
        (30, 70, 10, True),    # group B
        (31, 70, 15, False),   # above B, NIHSS too low for C
        (50, 70, 20, True),    # group C
        (51, 70, 25, False),
        (5, 70, 9, False),     # NIHSS below every group
        (5, None, 12, None),
        (5, 70, None, None),
    ],
)
def test_dawn(core, age, nihss, expected):
    met, _ = dawn(core, age, nihss)
    assert met is expected


def test_assess_reports_reasons():
    result = assess(80, 120, age=None, nihss=None)
    assert result.defuse3 is False and result.dawn is None
    assert "core 80 mL ≥ 70 mL" in result.reasons["defuse3"]
    assert "age and NIHSS" in result.reasons["dawn"]
