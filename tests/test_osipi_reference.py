"""Our models on OSIPI's DSC reference curves (external truth; reader: tests/support/osipi.py).

14 cases (CBV 2 and 4 mL/100 mL, CBF 5-70 mL/100 mL/min), gamma-distributed transit times
(shape 3), no delay or dispersion, compared in OSIPI's convention (no k_H, no ρ). The target is
OSIPI's own: CBF and CBV of every case within 10 % of the truth, asserted for the default model
(``AnalysisSettings().model``), with the checks it misses today marked as strict known gaps (an
unexpected pass fails, so the marks go when the gap closes); every case is held within 20 %. The other models are held to the accuracy they reach today (a
regression guard, not the target). ``benchmarks/bench_osipi.py`` prints the full table.

The curves are read from ``tests/data/osipi-dsc/`` (an unchanged Apache-2.0 copy) or from
``$TRIAGE_OSIPI_DSC``; a missing file fails these tests, it does not skip them.
"""

import numpy as np
import pytest

from models import MODELS
from tests.support import osipi
from triage.settings import AnalysisSettings

DEFAULT_MODEL = AnalysisSettings().model
N_CASES, N_POINTS, TR = 14, 161, 1.243
TRUTH = [(4.0, float(f)) for f in range(10, 80, 10)] + [(2.0, float(f)) for f in range(5, 40, 5)]  # (CBV, CBF)
# Largest |relative error| of each model today (max measured: CBF 27 %, CBV 19 %): a guard.
GUARD_CBF, GUARD_CBV = 0.30, 0.20


@pytest.fixture(scope="module")
def cases():
    return osipi.read_cases()


@pytest.fixture(scope="module")
def measured(cases):
    """Each model's fit of all cases, computed once."""
    return {name: osipi.fit_cases(name, cases) for name in MODELS}


def _table(cases, values, name):
    truth = np.array([getattr(c, name) for c in cases])
    errors = 100 * osipi.relative_errors(values, truth)
    return "\n".join(f"{c.label}: true {t:g}, measured {v:.2f} ({e:+.1f} %)"
                     for c, t, v, e in zip(cases, truth, values, errors))


def test_reader_parses_the_fourteen_cases(cases):
    assert len(cases) == N_CASES
    assert len({c.label for c in cases}) == N_CASES
    for case in cases:
        assert case.tissue.shape == case.aif.shape == (N_POINTS,)
        assert case.tr == pytest.approx(TR)
        assert np.all(np.isfinite(case.tissue)) and np.all(np.isfinite(case.aif))
        assert case.times[-1] == pytest.approx(TR * (N_POINTS - 1))
    assert sorted((c.cbv, c.cbf) for c in cases) == sorted(TRUTH)


def test_cases_share_one_aif_so_one_fit_per_model(cases, measured):
    assert all(np.array_equal(c.aif, cases[0].aif) for c in cases)
    assert {fit.fits for fit in measured.values()} == {1}


def test_the_path_can_be_overridden(tmp_path, monkeypatch, cases):
    copy = tmp_path / osipi.CSV_NAME
    copy.write_bytes(osipi.reference_csv().read_bytes())
    for override in (tmp_path, copy):
        monkeypatch.setenv(osipi.ENV_VAR, str(override))
        assert osipi.reference_csv() == copy
        assert [c.label for c in osipi.read_cases()] == [c.label for c in cases]


def test_a_missing_file_is_an_error_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(osipi.ENV_VAR, str(tmp_path / "absent.csv"))
    with pytest.raises(FileNotFoundError, match=osipi.ENV_VAR):
        osipi.read_cases()


CBF_GAP = (
    "known gap (issue 11): the gamma-2 residue reads CBF 12-18 % low on every case (gamma-3 transit times "
    "generated with a left-rectangle convolution, which weighs lag 0 fully); the exponential reads +2 to +23 %, "
    "the shape search +2 to +23 %: the shape is not determined well enough by the curves to reach 10 %"
)
CBV_GAP = (
    "known gap (issue 11): at MTT <= 4.8 s the curves' area ratio is CBV * (1 + tr / (2 MTT)), "
    "+13 to +18 % (see test_the_area_ratio_carries_the_generators_rectangle_rule)"
)
CBV_GAP_CASES = {(4.0, 50.0), (4.0, 60.0), (4.0, 70.0), (2.0, 20.0), (2.0, 25.0), (2.0, 30.0), (2.0, 35.0)}


def _target_cases():
    """(CBV, CBF, quantity) of every check of the 10 % target, the known gaps marked."""
    for cbv, cbf in TRUTH:
        for quantity in ("cbf", "cbv"):
            marks = []
            if quantity == "cbf":
                marks = [pytest.mark.xfail(strict=True, reason=CBF_GAP)]
            elif (cbv, cbf) in CBV_GAP_CASES:
                marks = [pytest.mark.xfail(strict=True, reason=CBV_GAP)]
            yield pytest.param(cbv, cbf, quantity, marks=marks, id=f"CBV{cbv:g}-CBF{cbf:g}-{quantity}")


def test_default_model_within_20_percent(cases, measured):
    """What the default model reaches today on every case: CBF and CBV within 20 %."""
    fit = measured[DEFAULT_MODEL]
    for name in ("cbf", "cbv"):
        errors = osipi.relative_errors(getattr(fit, name), [getattr(c, name) for c in cases])
        assert np.abs(errors).max() <= 0.20, _table(cases, getattr(fit, name), name)


@pytest.mark.parametrize("cbv, cbf, quantity", list(_target_cases()))
def test_default_model_within_osipi_tolerance(cases, measured, cbv, cbf, quantity):
    """The target: every case's CBF and CBV within 10 % (OSIPI's relative tolerance)."""
    index = [(c.cbv, c.cbf) for c in cases].index((cbv, cbf))
    case = cases[index]
    value = getattr(measured[DEFAULT_MODEL], quantity)[index]
    truth = getattr(case, quantity)
    assert abs(value / truth - 1) <= osipi.TOLERANCE, (
        f"{DEFAULT_MODEL} {quantity.upper()} of {case.label}: {value:.2f}, true {truth:g} "
        f"({100 * (value / truth - 1):+.1f} %)")


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_stays_within_todays_accuracy(cases, measured, name):
    """Regression guard for all models (the 10 % target applies to the default model above)."""
    fit = measured[name]
    assert np.all(np.isfinite(fit.cbf)) and np.all(np.isfinite(fit.cbv))
    cbf_errors = osipi.relative_errors(fit.cbf, [c.cbf for c in cases])
    cbv_errors = osipi.relative_errors(fit.cbv, [c.cbv for c in cases])
    assert np.abs(cbf_errors).max() <= GUARD_CBF, _table(cases, fit.cbf, "cbf")
    assert np.abs(cbv_errors).max() <= GUARD_CBV, _table(cases, fit.cbv, "cbv")


def test_the_area_ratio_carries_the_generators_rectangle_rule(cases):
    """100·∫C_t/∫C_a is not the true CBV here but CBV·(1 + tr/(2·MTT)), within the noise.

    The tissue curves look generated as F·tr·Σ_j C_a[j]·R[i−j] with R(0) = 1 (a left-rectangle
    discrete convolution), whose area exceeds F·MTT·∫C_a by F·(tr/2)·∫C_a. So at MTT ≈ 3.4 s
    the area ratio reads +18 %: a model whose CBV is that ratio cannot meet 10 % on these cases.
    """
    for case in cases:
        ratio = 100 * np.trapezoid(case.tissue) / np.trapezoid(case.aif) / case.cbv
        mtt = 60 * case.cbv / case.cbf
        assert ratio == pytest.approx(1 + case.tr / (2 * mtt), rel=0.07), case.label
