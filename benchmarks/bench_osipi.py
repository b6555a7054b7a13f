"""Accuracy and fit time of every model on OSIPI's DSC reference curves (a script, not a test).

Run from the repository root: ``python3 benchmarks/bench_osipi.py [--csv PATH] [--model NAME ...]``.
The curves (external truth, Apache-2.0, see their README) are read by ``tests/support/osipi.py``
from ``tests/data/osipi-dsc/dsc_data.csv`` (an unchanged copy), or from
``$TRIAGE_OSIPI_DSC`` / ``--csv``. Values are in OSIPI's convention (no k_H, no ρ): CBF
mL/100 mL/min, CBV mL/100 mL. Per model and case: truth, measured value and relative error; per
model: max and mean |error|, cases within OSIPI's 10 %, and the wall time of building the model
and fitting (all cases share one AIF, so one fit call per model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import MODELS  # noqa: E402
from tests.support import osipi  # noqa: E402
from triage.settings import AnalysisSettings  # noqa: E402


def report(name: str, cases: list, fit: osipi.OsipiFit) -> None:
    """Print one model's per-case table and its summary."""
    true_cbf = np.array([c.cbf for c in cases])
    true_cbv = np.array([c.cbv for c in cases])
    cbf_error = 100 * osipi.relative_errors(fit.cbf, true_cbf)
    cbv_error = 100 * osipi.relative_errors(fit.cbv, true_cbv)
    default = " (default)" if name == AnalysisSettings().model else ""
    print(f"\n{name}{default}: {fit.seconds * 1000:.0f} ms for {len(cases)} cases in {fit.fits} fit call(s)")
    print(f"  {'case':12s} {'CBF true':>8s} {'meas.':>7s} {'err %':>7s}   {'CBV true':>8s} {'meas.':>6s} {'err %':>7s}")
    for case, cbf, cbf_e, cbv, cbv_e in zip(cases, fit.cbf, cbf_error, fit.cbv, cbv_error):
        short = f"CBV{case.cbv:g}-CBF{case.cbf:g}"
        print(f"  {short:12s} {case.cbf:8g} {cbf:7.2f} {cbf_e:+7.1f}   {case.cbv:8g} {cbv:6.2f} {cbv_e:+7.1f}")
    limit = 100 * osipi.TOLERANCE
    for label, errors in (("CBF", cbf_error), ("CBV", cbv_error)):
        within = int(np.sum(np.abs(errors) <= limit))
        print(f"  {label}: max |err| {np.abs(errors).max():5.1f} %, mean |err| {np.abs(errors).mean():5.1f} %, "
              f"mean err {errors.mean():+5.1f} %, within {limit:g} %: {within}/{len(cases)}")
    both = int(np.sum((np.abs(cbf_error) <= limit) & (np.abs(cbv_error) <= limit)))
    print(f"  CBF and CBV both within {limit:g} %: {both}/{len(cases)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=None, help="OSIPI dsc_data.csv (default: $TRIAGE_OSIPI_DSC or "
                                                                "tests/data/osipi-dsc/)")
    parser.add_argument("--model", action="append", choices=list(MODELS), help="model(s) to run (default: all)")
    args = parser.parse_args(argv)
    path = args.csv or osipi.reference_csv()
    try:
        cases = osipi.read_cases(path)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"OSIPI DSC reference: {path}, {len(cases)} cases, {cases[0].aif.size} points, tr {cases[0].tr:g} s; "
          f"OSIPI convention (ours × ρ/k_H = {osipi.CT_TO_OSIPI:.4f})")
    for name in args.model or list(MODELS):
        report(name, cases, osipi.fit_cases(name, cases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
