"""The command line as a user meets it: bad input gives one line, exit 2, no traceback, no output."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.dicom_factory import ct_instance, slice_positions, write_perfusion_series

REPO = Path(__file__).resolve().parents[1]


def triage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "triage.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def small_series(root: Path, frames: int = 12, **kwargs):
    hu = np.full((frames, 2, 16, 16), 30, np.int16)
    return write_perfusion_series(root, hu, np.arange(frames) * 1.5, **kwargs)


def empty(root):
    root.mkdir()


def not_dicom(root):
    root.mkdir()
    (root / "notes.txt").write_text("not an image\n")
    (root / "scan.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))


def mr_series(root):
    small_series(root, modality="MR")


def single_time_point(root):
    small_series(root, frames=1)


def mixed_geometry(root):
    paths, _, series_uid = small_series(root)
    study = __import__("pydicom").dcmread(paths[0]).StudyInstanceUID
    ct_instance(root / "odd.dcm", np.zeros((20, 20), np.int16), position=slice_positions(2)[0], time_s=36000.5,
                study_uid=study, series_uid=series_uid)


def missing_pixel_data(root):
    paths, _, _ = small_series(root)
    import pydicom

    ds = pydicom.dcmread(paths[3])
    del ds.PixelData
    ds.save_as(paths[3])


def truncated_file(root):
    paths, _, _ = small_series(root)
    data = paths[5].read_bytes()
    paths[5].write_bytes(data[: len(data) - 300])


def corrupt_header(root):
    paths, _, _ = small_series(root)
    paths[7].write_bytes(bytes(128) + b"DICM" + bytes(range(256)) * 4)


def too_few_frames(root):
    small_series(root, frames=6)


@pytest.mark.parametrize(
    "make, expected",
    [
        (empty, "no files"),
        (not_dicom, "no DICOM"),
        (mr_series, "MR"),
        (single_time_point, "time point"),
        (mixed_geometry, "mixed image sizes"),
        (missing_pixel_data, "pixel data"),
        (truncated_file, "truncated"),
        (corrupt_header, "could not be read"),
        (too_few_frames, "time points"),
    ],
)
def test_bad_input_one_line_no_traceback_no_output(tmp_path, make, expected):
    source = tmp_path / "in"
    make(source)
    out = tmp_path / "out"
    run = triage("analyze", str(source), "--out", str(out))
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len([line for line in lines if line.startswith("error:")]) == 1, run.stderr
    assert lines[-1].startswith("error: ")
    assert expected.lower() in lines[-1].lower(), lines[-1]
    assert "Traceback" not in run.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_missing_input_directory(tmp_path):
    run = triage("analyze", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error: input path does not exist")


def test_unknown_profile_and_series(tmp_path):
    small_series(tmp_path / "in")
    run = triage("analyze", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--profile", "nonsense")
    assert run.returncode == 2 and "unknown threshold profile 'nonsense'" in run.stderr
    run = triage("analyze", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--series", "1.2.3.999")
    assert run.returncode == 2 and "1.2.3.999" in run.stderr


def test_refuses_to_overwrite_a_foreign_directory(tmp_path):
    small_series(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    run = triage("analyze", str(tmp_path / "in"), "--out", str(out))
    assert run.returncode == 2 and "not an earlier triage output" in run.stderr
    assert (out / "precious.txt").read_text() == "keep me"


def test_two_perfusion_series_are_each_analysed(tmp_path):
    from dataclasses import replace

    from sample_data.phantom import CASES, make_phantom, write_dicom

    small = replace(CASES["mismatch"], matrix=128, n_slices=8)
    for seed in (1, 2):
        write_dicom(make_phantom(replace(small, seed=seed)), tmp_path / "in" / f"s{seed}")
    out = tmp_path / "out"
    run = triage("analyze", str(tmp_path / "in"), "--out", str(out), "--quiet")
    assert run.returncode == 0, run.stderr
    index = json.loads((out / "series.json").read_text())
    assert len(index) == 2
    for entry in index:
        result = json.loads((out / entry["result"]).read_text())
        assert result["series_uid"] == entry["series_uid"] and result["status"] == "complete"
    assert run.stdout.count("Core (rCBF < 30%)") == 2


def test_aborted_scan_is_analysed_on_request_with_limited_quality(tmp_path):
    """The last time point lacks its last 3 of 8 slices: refused by default (one line); with
    --allow-incomplete-end the 24 complete time points are analysed, and result.json says what
    was left out, at quality level "limited"."""
    from dataclasses import replace

    from sample_data.phantom import CASES, make_phantom, write_dicom

    phantom = make_phantom(replace(CASES["mismatch"], matrix=128, n_slices=8, n_frames=25))
    paths = write_dicom(phantom, tmp_path / "in")               # frame by frame, slice by slice
    for path in paths[-3:]:
        path.unlink()
    refused = triage("analyze", str(tmp_path / "in"), "--out", str(tmp_path / "refused"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: 3 of 8 slice positions are incomplete (fewer than 25 time points)")

    out = tmp_path / "out"
    run = triage("analyze", str(tmp_path / "in"), "--out", str(out), "--quiet", "--allow-incomplete-end",
                 "--language", "vi")
    assert run.returncode == 0, run.stderr
    result = json.loads((out / "result.json").read_text())
    warning = "last time point incomplete (5 of 8 slices): 1 time point left out (aborted scan?)"
    quality = result["quality"]
    assert warning in quality["warnings"] and quality["level"] == "limited"
    # result.json's fields are English in every language; its texts say them in Vietnamese too
    from triage.report.folder import Result

    warnings = Result.from_document(result).warnings
    assert warnings[quality["warnings"].index(warning)].render("vi") == (
        "thời điểm cuối không đủ (5 trên 8 lát cắt): đã bỏ 1 thời điểm (lần chụp bị dừng giữa chừng?)")
    # nothing else here limits the quality (a short baseline does not)
    assert all(w.startswith("short baseline") for w in quality["warnings"] if w != warning)
    assert not quality["bolus"]["truncated"] and not quality["motion"]["excluded_frames"]
    assert quality["motion"]["max_displacement_mm"] < 5.0
    assert (result["acquisition"]["frames"], result["acquisition"]["frames_left_out"]) == (24, 1)
    assert f"! {warning}" in run.stdout
