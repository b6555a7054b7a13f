"""The result's announcement (triage.report.outputs): the volumes and the summary picture are in
place, whole, before the maps' pictures are drawn, and gone once the result folder is."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from models.profiles import load_profile
from sample_data.phantom import CASES, make_phantom
from triage.imaging.pipeline import analyse
from triage.imaging.series import PerfusionSeries
from triage.report import outputs
from triage.report.folder import ResultFolder
from triage.settings import AnalysisSettings


@pytest.fixture(scope="module")
def analysis():
    phantom = make_phantom(replace(CASES["mismatch"], matrix=128, n_slices=4, n_frames=25))
    series = PerfusionSeries(data=phantom.hu.copy(), times=phantom.times, geometry=phantom.geometry,
                             study_uid="1.2.3", series_uid="1.2.3.4")
    settings = AnalysisSettings()
    return analyse(series, settings, load_profile(settings.profile))


def _watching_render_map(monkeypatch, folder: ResultFolder) -> list:
    """Replace the map renderer by one that first notes what the announcement holds."""
    seen, render = [], outputs.render_map

    def noting(*args, **kwargs):
        announced = folder.announcement()
        seen.append((announced.read().core_ml, announced.summary_png.read_bytes()) if announced.has_result() else None)
        return render(*args, **kwargs)

    monkeypatch.setattr(outputs, "render_map", noting)
    return seen


def test_announcement_comes_before_the_map_pictures_and_goes_with_the_whole_result(analysis, tmp_path, monkeypatch):
    folder = ResultFolder(tmp_path / "out")
    seen = _watching_render_map(monkeypatch, folder)
    result = outputs.write_outputs(analysis, folder.path, started=time.perf_counter(), announce=True)
    assert len(seen) == len(analysis.maps) and all(note is not None for note in seen)
    assert {note[0] for note in seen} == {result["core_ml"]}
    assert seen[0][1] == folder.summary_png.read_bytes()
    assert not folder.announcement().path.exists()
    assert folder.read().core_ml == result["core_ml"]


def test_no_announcement_unless_asked(analysis, tmp_path, monkeypatch):
    folder = ResultFolder(tmp_path / "out")
    seen = _watching_render_map(monkeypatch, folder)
    outputs.write_outputs(analysis, folder.path, started=time.perf_counter())
    assert seen == [None] * len(analysis.maps) and not folder.announcement().path.exists()
