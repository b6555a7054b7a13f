"""`triage serve` end to end, with real processes: DCMTK storescu/echoscu send a phantom study to the
node, DCMTK storescp plays the PACS; the node is killed and restarted at the awkward moments.

What must hold in every test: nothing the node acknowledged is lost, each complete perfusion
series is analysed once per generation, and each result object arrives at the PACS exactly once
(storescp runs with ``+uf``: one file per received C-STORE, so a duplicate shows as a second file
with the same SOP Instance UID).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from sample_data.dicom_writer import DicomVariant
from sample_data.phantom import CASES, make_phantom, write_dicom
from tests.support import peers
from tests.support.node import ROOT, NodeProcess
from triage.base.names import safe_name

N_SLICES, N_FRAMES = 8, 25
QUIET_S = 1.5  # NodeProcess's default --quiet-seconds
SECONDARY_CAPTURE = {"1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.4"}
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A small phantom CTP series (128 x 128 x 8 slices x 25 frames) and an NCCT series of the
    same study: {"ctp": files in frame order, "ncct": files, "series_uid": CTP series UID}."""
    root = tmp_path_factory.mktemp("study")
    phantom = make_phantom(replace(CASES["mismatch"], matrix=128, n_slices=N_SLICES, n_frames=N_FRAMES))
    paths = write_dicom(phantom, root, variant=DicomVariant(extra_series=True))
    ctp = [p for p in paths if p.parent.name == "perfusion"]
    ncct = [p for p in paths if p.parent.name == "ncct"]
    series_uid = str(pydicom.dcmread(ctp[0], stop_before_pixels=True).SeriesInstanceUID)
    assert len(ctp) == N_SLICES * N_FRAMES and len(ncct) == N_SLICES
    return {"ctp": ctp, "ncct": ncct, "series_uid": series_uid}


def send(node: NodeProcess, files: list[Path], *, calling: str = "CT1") -> subprocess.CompletedProcess:
    result = peers.storescu(node.port, files, calling=calling)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def pacs_objects(directory: Path) -> dict[str, list[pydicom.Dataset]]:
    """Received datasets by SOP Instance UID (one entry per received file)."""
    found: dict[str, list[pydicom.Dataset]] = {}
    for path in sorted(directory.iterdir()):
        ds = pydicom.dcmread(path)
        found.setdefault(str(ds.SOPInstanceUID), []).append(ds)
    return found


def wait_for_files(directory: Path, count: int, timeout: float = 90.0, node: NodeProcess | None = None) -> float:
    """Wait until ``directory`` holds ``count`` files; returns when that was seen
    (time.monotonic()). Read them once the node has logged the send (all responses in)."""
    deadline = time.monotonic() + timeout
    while len(list(directory.iterdir())) < count:
        if time.monotonic() > deadline:
            log = node.log()[-4000:] if node else ""
            raise AssertionError(f"{len(list(directory.iterdir()))} of {count} objects at the PACS "
                                 f"after {timeout} s\n{log}")
        time.sleep(0.05)
    return time.monotonic()


def result_objects(node: NodeProcess, series_uid: str, generation: int) -> list[Path]:
    return sorted((node.result_dir(series_uid, generation) / "dicom").glob("*.dcm"))


def job_states(node: NodeProcess, series_uid: str) -> list[tuple[int, str, str]]:
    """(generation, kind, state) of the series' jobs in the node's database."""
    store = node.store()
    try:
        return [(j.generation, j.kind, j.state) for j in store.jobs(series_uid)]
    finally:
        store.close()


def sop_uids(paths: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}


def sr_core_volume(ds: pydicom.Dataset) -> float:
    """The volume of the "Ischemic core" measurement group of a TID 1500 report (mL)."""
    report = hd.sr.ComprehensiveSR.from_dataset(ds)
    groups = [g for g in report.content.get_volumetric_roi_measurement_groups()
              if g.tracking_identifier == "Ischemic core"]
    assert len(groups) == 1
    (volume,) = groups[0].get_measurements(name=codes.SCT.Volume)
    return float(volume.value)


def test_ctp_analysed_once_ncct_ignored_results_at_pacs_then_late_frame(study, tmp_path):
    """The CTP is analysed once and its SC, SEG and SR arrive once at the PACS, the SR carrying
    the core volume of result.json; the NCCT is recorded and left alone with its reason; an
    unknown calling AE is rejected; a late time point starts generation 2, leaving generation 1
    untouched."""
    uid = study["series_uid"]
    first_frames, last_frame = study["ctp"][:-N_SLICES], study["ctp"][-N_SLICES:]
    with peers.storescp(tmp_path / "pacs", extra=("+uf",)) as (pacs_port, _):
        node = NodeProcess(tmp_path / "node", pacs=f"PACS@127.0.0.1:{pacs_port}").start()
        try:
            assert peers.echoscu(node.port, calling="INTRUDER").returncode != 0
            node.wait_for_log(r"INTRUDER")
            assert peers.echoscu(node.port, calling="CT1").returncode == 0

            send(node, first_frames + study["ncct"])
            last_image = time.monotonic()
            node.wait_for_log(r"analysis of .* generation 1 finished")
            expected = result_objects(node, uid, 1)
            arrived = wait_for_files(tmp_path / "pacs", len(expected), node=node)
            latency = arrived - last_image
            node.wait_for_log(r"sent \d+ objects of series .* generation 1")
            print(f"last image acknowledged -> {len(expected)} result objects stored at the PACS: {latency:.1f} s")

            objects = pacs_objects(tmp_path / "pacs")
            assert all(len(copies) == 1 for copies in objects.values())
            assert set(objects) == sop_uids(expected)
            classes = Counter(str(copies[0].SOPClassUID) for copies in objects.values())
            assert sum(classes[c] for c in SECONDARY_CAPTURE) >= 2
            assert (classes[SEGMENTATION], classes[COMPREHENSIVE_SR]) == (1, 1)
            (sr,) = [c[0] for c in objects.values() if str(c[0].SOPClassUID) == COMPREHENSIVE_SR]
            result = json.loads((expected[0].parent.parent / "result.json").read_text())
            assert sr_core_volume(sr) == pytest.approx(result["core_ml"], abs=0.051)
            assert all(str(c[0].StudyInstanceUID) == str(sr.StudyInstanceUID) for c in objects.values())

            log = node.log()
            assert len(re.findall(r"analysis of .* started", log)) == 1
            ncct_uid = str(pydicom.dcmread(study["ncct"][0], stop_before_pixels=True).SeriesInstanceUID)
            assert re.search(rf"received series {re.escape(ncct_uid)}: {N_SLICES} instances from CT1 "
                             r"\(not analysed: single time point \(NCCT or CTA\)\)", log)
            assert re.search(rf"received series {re.escape(uid)}: {N_SLICES * (N_FRAMES - 1)} instances "
                             rf"from CT1 \(CTP, complete: {N_SLICES} positions x {N_FRAMES - 1} time points\)", log)

            generation_1 = {p.name: p.read_bytes() for p in expected}
            send(node, last_frame)
            node.wait_for_log(r"sent \d+ objects of series .* generation 2")
            wait_for_files(tmp_path / "pacs", 2 * len(expected), node=node)
            objects = pacs_objects(tmp_path / "pacs")
            assert len(objects) == 2 * len(expected) and all(len(c) == 1 for c in objects.values())
            assert {p.name: p.read_bytes() for p in result_objects(node, uid, 1)} == generation_1
            assert result["acquisition"]["frames"] == N_FRAMES - 1
            result_2 = json.loads((node.result_dir(uid, 2) / "result.json").read_text())
            assert result_2["acquisition"]["frames"] == N_FRAMES
        finally:
            assert node.stop() == 0
        assert "stopped" in node.log()
        store = node.store()
        analyses = [(j.generation, j.state) for j in store.jobs(uid, "analyse")]
        store.close()
        assert analyses == [(1, "done"), (2, "done")]


def test_late_time_point_during_the_analysis_supersedes_it(study, tmp_path):
    """A time point arriving while generation 1 is being analysed stops that analysis: only
    generation 2's objects reach the PACS, once each, named as a re-analysis (the RLE pictures
    decompressed for this storescp, which accepts only uncompressed transfer syntaxes)."""
    uid = study["series_uid"]
    with peers.storescp(tmp_path / "pacs", extra=("+uf",)) as (pacs_port, _):
        node = NodeProcess(tmp_path / "node", pacs=f"PACS@127.0.0.1:{pacs_port}").start()
        try:
            send(node, study["ctp"][:-N_SLICES])
            (started,) = node.wait_for_log(r"analysis of .* generation 1 started .*pid \d+")
            child = int(re.search(r"pid (\d+)", started).group(1))
            # Paused, so that generation 2 finds it running however fast this machine analyses;
            # the node's SIGTERM stays pending until it continues.
            os.killpg(child, signal.SIGSTOP)
            try:
                send(node, study["ctp"][-N_SLICES:])
                node.wait_for_log(r"analysis generation 2 queued")
            finally:
                os.killpg(child, signal.SIGCONT)
            node.wait_for_log(rf"analysis of {re.escape(uid)} generation 1 superseded by generation 2: "
                              "stopped")
            assert _gone_within(child, 5.0)
            (sent,) = node.wait_for_log(r"sent \d+ objects of series .* generation 2")
            expected = result_objects(node, uid, 2)
            wait_for_files(tmp_path / "pacs", len(expected), node=node)
            objects = pacs_objects(tmp_path / "pacs")
            assert set(objects) == sop_uids(expected)
            assert all(len(c) == 1 and "(re-analysis 2, research use)" in c[0].SeriesDescription
                       for c in objects.values())
            # storescp accepts only uncompressed syntaxes: the RLE pictures went decompressed.
            pictures = [p for p in expected if p.name.startswith("sc-")]
            assert f"; {len(pictures)} sent decompressed" in sent
            results = node.result_dir(uid, 1).parent
            assert not (results / "1").exists() and not list(results.glob(".1.partial-*"))
        finally:
            assert node.stop() == 0
    assert job_states(node, uid) == [(1, "analyse", "superseded"), (2, "analyse", "done"), (2, "send", "done")]


def test_kill_during_transfer_loses_nothing_acknowledged(study, tmp_path):
    """kill -9 while storescu is sending: every instance acknowledged before the kill is in the
    spool; after a restart and a resend the series is analysed once, complete."""
    uid = study["series_uid"]
    node = NodeProcess(tmp_path / "node").start()
    sender = subprocess.Popen(
        [peers.dcmtk("storescu"), "-v", "-aet", "CT1", "-aec", "TRIAGE", "127.0.0.1", str(node.port),
         *map(str, study["ctp"])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=peers.nodelay_env(True))
    try:
        spool = node.data_dir / "spool"
        deadline = time.monotonic() + 30
        while len(list(spool.glob("*/*/*.dcm"))) < 40:
            assert time.monotonic() < deadline, "the transfer did not start"
            time.sleep(0.005)
        node.kill9()
        output, _ = sender.communicate(timeout=30)
    finally:
        peers.stop_process(sender)
    acknowledged = re.findall(r"Sending file: (\S+)\n(?:(?!Sending file).*\n)*?I: Received Store Response \(Success\)",
                              output)
    assert 0 < len(acknowledged) < len(study["ctp"]), output[-1000:]
    spooled = {p.name for p in spool.glob("*/*/*.dcm")}
    for path in acknowledged:
        sop = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert safe_name(sop) + ".dcm" in spooled, f"{sop} was acknowledged but is not in the spool"

    node.start()
    try:
        send(node, study["ctp"])
        node.wait_for_log(r"analysis of .* generation 1 finished")
        time.sleep(QUIET_S + 1.0)  # room for a wrong second analysis to show up
        assert len(re.findall(r"analysis of .* started", node.log())) == 1
    finally:
        assert node.stop() == 0
    store = node.store()
    series = store.series(uid)
    jobs = [(j.generation, j.state) for j in store.jobs(uid, "analyse")]
    store.close()
    assert (series.n_instances, series.n_positions, series.n_times, series.generation) == (
        N_SLICES * N_FRAMES, N_SLICES, N_FRAMES, 1)
    assert jobs == [(1, "done")]


def test_kill_during_analysis_result_arrives_once(study, tmp_path):
    """kill -9 while the analysis child runs: the child dies with the node; after the restart the
    analysis runs again and each result object reaches the PACS exactly once."""
    with peers.storescp(tmp_path / "pacs", extra=("+uf",)) as (pacs_port, _):
        node = NodeProcess(tmp_path / "node", pacs=f"PACS@127.0.0.1:{pacs_port}").start()
        try:
            send(node, study["ctp"])
            (started,) = node.wait_for_log(r"analysis of .* generation 1 started .*pid \d+")
            child = int(re.search(r"pid (\d+)", started).group(1))
            time.sleep(1.0)
            node.kill9()
            assert _gone_within(child, 5.0), "the analysis outlived the node"
            assert list((tmp_path / "pacs").iterdir()) == []

            node.start()
            node.wait_for_log(r"resumed after a stop: 1 unfinished job")
            node.wait_for_log(r"sent \d+ objects of series .* generation 1")
            expected = result_objects(node, study["series_uid"], 1)
            wait_for_files(tmp_path / "pacs", len(expected), node=node)
            time.sleep(2.0)  # a duplicate send would arrive now
            objects = pacs_objects(tmp_path / "pacs")
            assert len(objects) == len(expected) and all(len(c) == 1 for c in objects.values())
            assert len(re.findall(r"analysis of .* started", node.log())) == 2
        finally:
            assert node.stop() == 0


def test_pacs_down_then_up_and_kill_during_dispatch(study, tmp_path):
    """The PACS is down: the node retries with growing delays and stops gracefully (exit 0) with
    the send pending. Restarted with a slow PACS up, it is killed -9 while sending; after the
    next restart every result object is at the PACS, sent again only under its own SOP Instance
    UID (a PACS keeps one copy), and the send job is done."""
    pacs_port = peers.free_port()
    node = NodeProcess(tmp_path / "node", pacs=f"PACS@127.0.0.1:{pacs_port}").start()
    try:
        send(node, study["ctp"])
        retries = node.wait_for_log(r"PACS .*unreachable.* retry in \d+ s", count=2)
        delays = [int(re.search(r"retry in (\d+) s", line).group(1)) for line in retries]
        assert delays[1] > delays[0]
    finally:
        assert node.stop() == 0
    assert "stopped" in node.log()
    store = node.store()
    assert [j.state for j in store.jobs(kind="send")] == ["pending"]
    store.close()
    expected = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                for p in result_objects(node, study["series_uid"], 1)}

    pacs = tmp_path / "pacs"
    with peers.storescp(pacs, port=pacs_port, extra=("+uf", "--sleep-after", "1")):
        node.start()
        try:
            wait_for_files(pacs, 2, node=node)
            node.kill9()
            before_kill = len(list(pacs.iterdir()))
            assert before_kill < len(expected)
            node.start()
            node.wait_for_log(r"sent \d+ objects of series")
            objects = pacs_objects(pacs)
            assert set(objects) == expected
            assert sum(len(c) for c in objects.values()) <= len(expected) + before_kill + 1
            assert len(re.findall(r"analysis of .* started", node.log())) == 1
        finally:
            assert node.stop() == 0
    store = node.store()
    assert [j.state for j in store.jobs(kind="send")] == ["done"]
    store.close()


def test_incomplete_series_waits_and_a_failing_study_blocks_nothing(study, tmp_path):
    """A perfusion series missing one image is not analysed but reported, and analysed once the
    image arrives; meanwhile a study whose analysis fails on bad input (a 64 x 64 phantom: no
    usable arterial bolus) is failed once with its reason, without retry or effect on the other."""
    uid = study["series_uid"]
    missing = study["ctp"][10 * N_SLICES + 3]
    bad = write_dicom(make_phantom(replace(CASES["mismatch"], matrix=64, n_slices=4, n_frames=12)),
                      tmp_path / "bad")
    bad_uid = str(pydicom.dcmread(bad[0], stop_before_pixels=True).SeriesInstanceUID)
    node = NodeProcess(tmp_path / "node", extra=("--incomplete-warn-seconds", "3")).start()
    try:
        send(node, [p for p in study["ctp"] if p != missing] + bad)
        (failed,) = node.wait_for_log(rf"analysis of {re.escape(bad_uid)} generation 1 failed")
        assert "not retried" in failed and "bolus" in failed
        (waiting,) = node.wait_for_log(rf"series {re.escape(uid)} still incomplete")
        assert "1 of 8 positions lack time points (1 images missing of 200)" in waiting
        assert not re.search(rf"analysis of {re.escape(uid)}", node.log())

        send(node, [missing])
        node.wait_for_log(rf"analysis of {re.escape(uid)} generation 1 finished")
    finally:
        assert node.stop() == 0
    store = node.store()
    jobs = {j.series_uid: (j.state, j.attempts) for j in store.jobs(kind="analyse")}
    store.close()
    assert jobs == {bad_uid: ("failed", 1), uid: ("done", 1)}


def sr_texts(ds: pydicom.Dataset) -> list[str]:
    """Every TEXT value of an SR content tree."""
    texts = []
    for item in ds.get("ContentSequence", []):
        if item.ValueType == "TEXT":
            texts.append(str(item.TextValue))
        texts += sr_texts(item)
    return texts


def test_aborted_scan_analysed_on_its_complete_time_points_then_completed(study, tmp_path):
    """The last time point lacks its last 3 of 8 slices: after --incomplete-warn-seconds the 24
    complete time points are analysed and the results reach the PACS once, the SR saying what was
    left out (quality limited); the missing images arriving later start generation 2, whole."""
    uid = study["series_uid"]
    aborted, late = study["ctp"][:-3], study["ctp"][-3:]
    warning = "last time point incomplete (5 of 8 slices): 1 time point left out (aborted scan?)"
    with peers.storescp(tmp_path / "pacs", extra=("+uf",)) as (pacs_port, _):
        node = NodeProcess(tmp_path / "node", pacs=f"PACS@127.0.0.1:{pacs_port}", quiet_seconds=1,
                           extra=("--incomplete-warn-seconds", "3")).start()
        try:
            send(node, aborted)
            (started,) = node.wait_for_log(rf"series {re.escape(uid)}: last time point")
            assert re.search(r": last time point incomplete \(5 of 8 slices\) after 3 s quiet: analysing "
                             r"the 24 complete time points; analysis generation 1 queued$", started)
            node.wait_for_log(r"sent \d+ objects of series .* generation 1")
            expected = result_objects(node, uid, 1)
            wait_for_files(tmp_path / "pacs", len(expected), node=node)
            objects = pacs_objects(tmp_path / "pacs")
            assert len(objects) == len(expected) and all(len(c) == 1 for c in objects.values())
            (sr,) = [c[0] for c in objects.values() if str(c[0].SOPClassUID) == COMPREHENSIVE_SR]
            texts = sr_texts(sr)
            assert warning in texts and "limited" in texts
            assert "still incomplete" not in node.log()

            send(node, late)
            node.wait_for_log(r"sent \d+ objects of series .* generation 2")
            wait_for_files(tmp_path / "pacs", 2 * len(expected), node=node)
            result_2 = json.loads((node.result_dir(uid, 2) / "result.json").read_text())
            assert (result_2["acquisition"]["frames"], result_2["acquisition"]["frames_left_out"]) == (N_FRAMES, 0)
            assert warning not in result_2["quality"]["warnings"]
        finally:
            assert node.stop() == 0
    store = node.store()
    analyses = [(j.generation, j.state) for j in store.jobs(uid, "analyse")]
    store.close()
    assert analyses == [(1, "done"), (2, "done")]


def test_retention_removes_finished_series_and_keeps_unsent_results(study, tmp_path):
    """With a retention of a few seconds: the analysed and sent CTP series and the ignored NCCT
    series are removed (spooled images, results, database rows); sent again, the CTP is a new
    series, analysed and sent again. While its results cannot reach the PACS, it is kept."""
    uid = study["series_uid"]
    ncct_uid = str(pydicom.dcmread(study["ncct"][0], stop_before_pixels=True).SeriesInstanceUID)
    retention_s = 4.0
    pacs_port = peers.free_port()
    node = NodeProcess(tmp_path / "node", pacs=f"PACS@127.0.0.1:{pacs_port}",
                       extra=("--retention-days", f"{retention_s / 86400:.8f}"))
    spool = tmp_path / "node" / "spool"
    try:
        with peers.storescp(tmp_path / "pacs", port=pacs_port, extra=("+uf",)):
            node.start()
            send(node, study["ctp"] + study["ncct"])
            node.wait_for_log(r"sent \d+ objects of series .* generation 1")
            removed = node.wait_for_log(r"retention: removed series", count=2, timeout=60)
            assert {re.search(r"removed series (\S+)", line).group(1) for line in removed} == {uid, ncct_uid}
            assert all(f"({len(study['ctp'])} images" in line for line in removed if uid in line)
            assert not [p for p in spool.rglob("*.dcm")]
            assert not (tmp_path / "node" / "results" / safe_name(uid)).exists()
            store = node.store()
            assert (store.series(uid), store.series(ncct_uid), store.instances(uid), store.jobs(uid)) == (None, None, [], [])
            store.close()
            send(node, study["ctp"])  # the same series again: analysed and sent again
            node.wait_for_log(r"sent \d+ objects of series .* generation 1", count=2)
        # The PACS is gone: the third reception's results cannot be sent, so they stay.
        node.wait_for_log(r"retention: removed series", count=3, timeout=60)
        send(node, study["ctp"])
        node.wait_for_log(r"PACS .*unreachable.* retry in", timeout=90)
        time.sleep(3 * retention_s)
        assert len(re.findall(r"retention: removed series", node.log())) == 3
        assert len(list(spool.rglob("*.dcm"))) == len(study["ctp"])
    finally:
        assert node.stop() == 0


def test_failed_re_analysis_sends_the_earlier_result(study, tmp_path):
    """The PACS is down when generation 1 is analysed; then a stray image with another pixel
    spacing arrives for the series: generation 2 starts (generation 1's send is dropped) and
    fails on the mixed geometry. Generation 1's results are then sent in its place, and reach
    the PACS once it is up, instead of nothing."""
    uid = study["series_uid"]
    stray = pydicom.dcmread(study["ctp"][0])
    stray.SOPInstanceUID = generate_uid()
    stray.PixelSpacing = [float(v) * 1.5 for v in stray.PixelSpacing]
    stray_path = tmp_path / "stray.dcm"
    stray.save_as(stray_path)
    pacs_port = peers.free_port()
    node = NodeProcess(tmp_path / "node", pacs=f"PACS@127.0.0.1:{pacs_port}").start()
    try:
        send(node, study["ctp"])
        node.wait_for_log(r"analysis of .* generation 1 finished")
        node.wait_for_log(r"PACS .*unreachable.* retry in")
        send(node, [stray_path])
        (failed,) = node.wait_for_log(rf"analysis of {re.escape(uid)} generation 2 failed after")
        assert "mixed pixel spacings" in failed, failed
        node.wait_for_log(rf"series {re.escape(uid)}: sending generation 1's results in place of "
                          "generation 2, whose analysis failed")
        with peers.storescp(tmp_path / "pacs", port=pacs_port, extra=("+uf",)):
            node.wait_for_log(r"sent \d+ objects of series .* generation 1", timeout=120)
            expected = result_objects(node, uid, 1)
            wait_for_files(tmp_path / "pacs", len(expected), node=node)
            objects = pacs_objects(tmp_path / "pacs")
        assert set(objects) == sop_uids(expected)
        assert all(len(copies) == 1 for copies in objects.values())
    finally:
        assert node.stop() == 0
    assert job_states(node, uid) == [(1, "analyse", "done"), (1, "send", "done"), (2, "analyse", "failed")]


def test_dicom_tls_both_ways(study, tmp_path):
    """The scanner sends over DICOM TLS with its client certificate, the node sends its results
    to a storescp that requires DICOM TLS and a client certificate (--pacs-tls)."""
    uid = study["series_uid"]
    certs = peers.make_certificates(tmp_path)
    ours = ("--tls-cert", str(certs["server.pem"]), "--tls-key", str(certs["server.key"]),
            "--tls-ca", str(certs["ca.pem"]), "--pacs-tls")
    pacs_tls = ("+tls", str(certs["server.key"]), str(certs["server.pem"]), "+cf", str(certs["ca.pem"]), "+xa")
    with peers.storescp(tmp_path / "pacs", extra=pacs_tls) as (pacs_port, _):
        node = NodeProcess(tmp_path / "node", pacs=f"PACS@127.0.0.1:{pacs_port}", extra=ours).start()
        try:
            node.wait_for_log(r"results go to PACS@127\.0\.0\.1:\d+ over DICOM TLS")
            scanner = ("+tls", str(certs["client.key"]), str(certs["client.pem"]), "+cf", str(certs["ca.pem"]))
            run = peers.storescu(node.port, study["ctp"], calling="CT1", extra=scanner)
            assert run.returncode == 0, run.stderr[-2000:]
            node.wait_for_log(r"sent \d+ objects of series .* generation 1", timeout=120)
            expected = result_objects(node, uid, 1)
            wait_for_files(tmp_path / "pacs", len(expected), node=node)
            assert set(pacs_objects(tmp_path / "pacs")) == sop_uids(expected)
        finally:
            assert node.stop() == 0


def test_startup_errors_are_one_line(tmp_path):
    """Settings the node cannot run with end it at once with one line and exit status 2."""
    def serve(*flags):
        command = [sys.executable, "-m", "triage.cli", "serve", "--data-dir", str(tmp_path), *flags]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        return result.returncode, result.stderr.strip().splitlines()[-1]

    assert serve("--pacs", "nonsense", "--allow-aet", "CT1") == (2, "error: invalid PACS address 'nonsense': expected "
                                              "AET@HOST:PORT, e.g. PACS@10.0.0.5:104 or PACS@[fd00::5]:104")
    assert serve("--quiet-seconds", "0", "--allow-aet", "CT1") == (2, "error: --quiet-seconds must be positive")
    assert serve("--pacs", "PACS@127.0.0.1:104", "--pacs-tls", "--allow-aet", "CT1") == (
        2, "error: --pacs-tls needs --pacs and --tls-cert/--tls-key")
    assert serve() == (2, "error: no calling AE title is allowed: name the senders with --allow-aet "
                          "NAME (repeatable) or accept any caller with --accept-any-aet")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert serve("--listen-address", "127.0.0.1", "--dicom-port", str(port), "--accept-any-aet") == (
            2, f"error: cannot listen on 127.0.0.1:{port}: Address already in use")


def _gone_within(pid: int, seconds: float) -> bool:
    """The process has exited (or is a zombie waiting for init) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False
