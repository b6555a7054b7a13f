"""``triage analyze`` against the hostile corpus (tests/support/hostile.py): each case ends in
one ``error:`` line and exit status 2, no traceback, no output left, within a memory cap far
below what the lying headers claim; junk beside a good series is skipped."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from sample_data.phantom import CASES, make_phantom, write_dicom

from tests.support import hostile

REPO = Path(__file__).resolve().parents[1]
MEMORY_CAP_BYTES = 3 * 2**30      # the bombs claim 6.4 and 8 GiB per file


def analyze(source: Path, out: Path) -> subprocess.CompletedProcess:
    command = ["prlimit", f"--as={MEMORY_CAP_BYTES}", "--", sys.executable, "-m", "triage.cli",
               "analyze", str(source), "--out", str(out), "--quiet"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


EXPECTED = {
    "truncated_mid_header": "no SeriesInstanceUID",
    "truncated_mid_pixels": "t002_z001.dcm is truncated: 256 of 512 pixel bytes",
    "garbage": "2 files ignored (e.g. noise.dcm: not DICOM)",
    "huge_matrix": "images of 65535x65535 pixels: larger than 4096x4096 are refused",
    "rle_bomb": "would decode to 6400 MiB (4096x4096, 200 frames): more than 1024 MiB",
    "wrong_vrs": "no image position/orientation",
    "deep_sequence": "unreadable DICOM header (RecursionError",
    "bad_uids": "found 2 series",
    "mixed_geometry": "mixed image sizes in one series: 16x16 (10 images), 20x20 (1 image)",
    "lying_frame_count": "only 4 time points",
    "missing_meta": "found 2 series",
    "many_series": "found 3000 series",
}


@pytest.mark.parametrize("case", sorted(hostile.CASES))
def test_each_hostile_case_is_one_clear_error(tmp_path, case):
    source, out = tmp_path / "in", tmp_path / "out"
    hostile.CASES[case](source)
    run = analyze(source, out)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "Warning" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert EXPECTED[case] in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


def test_mixed_geometry_other_orientation_and_spacing(tmp_path):
    """With the odd-sized image gone, the tilted and the differently spaced ones are named."""
    source = tmp_path / "in"
    hostile.mixed_geometry(source)
    (source / "rows.dcm").unlink()
    run = analyze(source, tmp_path / "out")
    assert run.returncode == 2
    assert run.stderr.strip() == ("error: mixed image orientations in one series: 1 image not "
                                  "oriented like the first")
    (source / "tilted.dcm").unlink()
    run = analyze(source, tmp_path / "out")
    assert run.stderr.strip() == "error: mixed pixel spacings in one series"


def test_junk_beside_a_good_series_is_skipped(tmp_path):
    """Every case that makes files of series of their own, in one folder with a good perfusion
    series: the good series is analysed (exit 0), the junk does not stop it."""
    source = tmp_path / "in"
    phantom = make_phantom(replace(CASES["mismatch"], matrix=64, n_slices=4))
    write_dicom(phantom, source / "good")
    for case in ("truncated_mid_header", "garbage", "wrong_vrs", "deep_sequence", "bad_uids",
                 "missing_meta"):
        hostile.CASES[case](source / case)
    out = tmp_path / "out"
    run = analyze(source, out)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "complete" and result["series_description"] != ""
