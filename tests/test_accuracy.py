"""End-to-end accuracy against the phantom's known truth, at realistic noise.

Each case: the phantom is written as DICOM, ``triage analyze`` reads it back like any other input,
and its result.json is compared with the truth (the issue's tolerances: core within
max(5 mL, 15 %), Tmax > 6 s within max(10 mL, 10 %), the DEFUSE 3 decision right).
"""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from sample_data.phantom import CASES, make_phantom, write_dicom
from triage.cli import main
from triage.eligibility import defuse3_imaging


@pytest.fixture(scope="module")
def run_case(tmp_path_factory):
    """Analyse a named phantom case once per module: (phantom, result, output directory)."""
    done = {}

    def run(name):
        if name not in done:
            root = tmp_path_factory.mktemp(name)
            phantom = make_phantom(CASES[name])
            write_dicom(phantom, root / "dicom")
            assert main(["analyze", str(root / "dicom"), "--out", str(root / "out"), "--quiet"]) == 0
            result = json.loads((root / "out" / "result.json").read_text())
            done[name] = phantom, result, root / "out"
        return done[name]

    return run


@pytest.fixture(params=["mismatch", "large_core", "moved_noisy"])
def lesion_case(request, run_case):
    return run_case(request.param)


def test_volumes_within_tolerance(lesion_case):
    phantom, result, _ = lesion_case
    truth = phantom.truth.volumes
    assert abs(result["core_ml"] - truth["core_ml"]) <= max(5.0, 0.15 * truth["core_ml"]), (result["core_ml"], truth)
    assert abs(result["tmax6_ml"] - truth["tmax6_ml"]) <= max(10.0, 0.10 * truth["tmax6_ml"]), (result["tmax6_ml"], truth)


def test_defuse3_decision_matches_truth(lesion_case):
    phantom, result, _ = lesion_case
    truth = phantom.truth.volumes
    assert result["eligibility"]["defuse3"] is defuse3_imaging(truth["core_ml"], truth["tmax6_ml"])[0]


def test_lesion_side_and_overlap(lesion_case):
    phantom, result, out = lesion_case
    assert result["affected_side"] == phantom.truth.lesion_side
    core = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "maps" / "core.nii.gz"))).astype(bool)
    truth_core = phantom.truth.core
    dice = 2 * np.count_nonzero(core & truth_core) / (core.sum() + truth_core.sum())
    assert dice > 0.7


def test_moved_case_reports_motion(run_case):
    phantom, result, _ = run_case("moved_noisy")
    applied = float(phantom.truth.displacement_mm.max())
    assert applied > 2
    assert result["quality"]["motion"]["max_displacement_mm"] > 2
    assert any("motion" in w for w in result["quality"]["warnings"])


def test_no_lesion_case(run_case):
    _, result, _ = run_case("no_lesion")
    assert result["core_ml"] < 5
    assert result["tmax6_ml"] < 10
    assert result["eligibility"]["defuse3"] is False


def test_truncated_bolus_is_reported_next_to_the_numbers(run_case):
    _, result, out = run_case("truncated")
    assert result["quality"]["bolus"]["truncated"] is True
    assert result["quality"]["level"] == "limited"
    assert any("truncated" in w for w in result["quality"]["warnings"])
    assert (out / "summary.png").exists()


def test_clean_case_has_good_quality(run_case):
    _, result, _ = run_case("mismatch")
    assert result["quality"]["level"] == "good", result["quality"]["warnings"]
    assert result["quality"]["bolus"]["truncated"] is False
