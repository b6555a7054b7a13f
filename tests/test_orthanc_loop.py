"""The whole loop without a human, with a real Orthanc as the hospital PACS.

A phantom CT perfusion study is uploaded to Orthanc; Orthanc forwards it to ``triage serve``
(``/modalities/triage/store``); the node analyses the series and sends its Secondary Capture,
Segmentation and SR objects back; they must appear in Orthanc, in the source study, once each,
and say what the node's ``result.json`` says.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections import Counter
from dataclasses import replace

import highdicom as hd
import pydicom
import pytest
from pydicom.sr.codedict import codes

from sample_data.phantom import CASES, make_phantom, write_dicom
from tests.support.node import NodeProcess
from tests.support.orthanc import orthanc

N_SLICES, N_FRAMES = 8, 30
IDENTIFIERS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
               "StudyID", "AccessionNumber", "StudyDate", "StudyTime")
RESULT_MODALITIES = {"OT", "SC", "SEG", "SR"}
SEGMENT_LABELS = {1: "Ischemic core (rCBF<30%)", 2: "Hypoperfusion (Tmax>6s)"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A phantom CTP series, 128 x 128, 8 slices x 30 time points: its files and source header."""
    root = tmp_path_factory.mktemp("study")
    phantom = make_phantom(replace(CASES["mismatch"], matrix=128, n_slices=N_SLICES, n_frames=N_FRAMES))
    files = write_dicom(phantom, root)
    assert len(files) == N_SLICES * N_FRAMES
    return {"files": files, "source": pydicom.dcmread(files[0], stop_before_pixels=True)}


def measured_volumes(sr: pydicom.Dataset) -> dict[str, float]:
    """The Volume (mL) of each measurement group of a TID 1500 report, by tracking identifier."""
    report = hd.sr.ComprehensiveSR.from_dataset(sr).content
    volumes = {}
    for group in report.get_volumetric_roi_measurement_groups():
        (volume,) = group.get_measurements(name=codes.SCT.Volume)
        assert volume.unit.value == "ml"
        volumes[group.tracking_identifier] = float(volume.value)
    return volumes


def wait_for_results(pacs, study_id: str, expected: int, node: NodeProcess, timeout: float = 90.0) -> list[dict]:
    """The result series of the study once they hold ``expected`` instances together."""
    deadline = time.monotonic() + timeout
    while True:
        series = [s for s in pacs.series(study_id) if s["MainDicomTags"].get("Modality") in RESULT_MODALITIES]
        if sum(len(s["Instances"]) for s in series) >= expected and any(
                s["MainDicomTags"]["Modality"] == "SR" for s in series):
            return series
        if time.monotonic() > deadline:
            raise AssertionError(f"{sum(len(s['Instances']) for s in series)} of {expected} result objects "
                                 f"in Orthanc after {timeout} s; node log:\n{node.log()[-4000:]}")
        time.sleep(0.2)


def test_orthanc_forwards_the_study_and_gets_sc_seg_sr_back_once(study, tmp_path):
    """Orthanc's forward is acknowledged whole and analysed once; each result object the node
    wrote is in Orthanc's copy of the source study exactly once (none received twice), with the
    source's patient and study identifiers; the SR's core and Tmax > 6 s volumes are result.json's
    and the SEG holds both segments, referencing the source CT images."""
    source = study["source"]
    node = NodeProcess(tmp_path / "node", allow=("ORTHANC",))
    with orthanc(tmp_path / "orthanc", modalities={"triage": ("TRIAGE", "127.0.0.1", node.port)}) as pacs:
        (study_id,) = pacs.upload(study["files"])
        node.pacs = f"{pacs.aet}@127.0.0.1:{pacs.dicom_port}"
        node.start()
        try:
            started = time.monotonic()
            forwarded = pacs.send_to("triage", [study_id])
            assert forwarded["InstancesCount"] == N_SLICES * N_FRAMES and forwarded["FailedInstancesCount"] == 0
            forward_s = time.monotonic() - started

            (finished,) = node.wait_for_log(r"analysis of .* generation 1 finished", timeout=90)
            out_dir = node.result_dir(str(source.SeriesInstanceUID), 1)
            objects = sorted((out_dir / "dicom").glob("*.dcm"))
            wait_for_results(pacs, study_id, len(objects), node)
            back_s = time.monotonic() - started
            node.wait_for_log(rf"sent {len(objects)} objects of series .* generation 1 to {pacs.aet}@")
            print(f"Orthanc forwarded {N_SLICES * N_FRAMES} images in {forward_s:.1f} s; "
                  f"{len(objects)} result objects back in Orthanc {back_s:.1f} s after the forward began")
            time.sleep(1.0)  # room for a duplicate send to arrive
        finally:
            assert node.stop() == 0
        log = node.log()
        assert re.search(rf"received series {re.escape(str(source.SeriesInstanceUID))}: "
                         rf"{N_SLICES * N_FRAMES} instances from ORTHANC \(CTP, complete", log)
        assert len(re.findall(r"analysis of .* started", log)) == 1

        # Once each: every object of the node exactly once in the study, nothing delivered twice.
        result_series = [s for s in pacs.series(study_id) if s["MainDicomTags"]["Modality"] in RESULT_MODALITIES]
        received = {}
        for series in result_series:
            for instance_id in series["Instances"]:
                ds = pydicom.dcmread(io.BytesIO(pacs.instance_file(instance_id)))
                received[str(ds.SOPInstanceUID)] = ds
        sent = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in objects}
        assert set(received) == sent and sum(len(s["Instances"]) for s in result_series) == len(sent)
        stored, already_stored = pacs.stores()
        assert (stored, already_stored) == (N_SLICES * N_FRAMES + len(sent), 0)
        modalities = Counter(s["MainDicomTags"]["Modality"] for s in result_series)
        assert modalities["SEG"] == 1 and modalities["SR"] == 1 and modalities["OT"] >= 2, modalities

        # In the source study, with the source's patient and study identifiers.
        for ds in received.values():
            for keyword in IDENTIFIERS:
                assert ds.get(keyword) == source.get(keyword), (keyword, ds.SOPClassUID.name)

        # The report says what result.json says.
        result = json.loads((out_dir / "result.json").read_text())
        (sr,) = [ds for ds in received.values() if ds.Modality == "SR"]
        volumes = measured_volumes(sr)
        assert volumes["Ischemic core"] == pytest.approx(result["core_ml"], abs=0.051)
        assert volumes["Hypoperfusion"] == pytest.approx(result["tmax6_ml"], abs=0.051)
        assert result["core_ml"] > 0 and f"core {result['core_ml']:.1f} mL" in finished

        # The segmentation has the two segments and references the source CT images.
        (seg_ds,) = [ds for ds in received.values() if ds.Modality == "SEG"]
        seg = hd.seg.Segmentation.from_dataset(seg_ds)
        assert {int(s.SegmentNumber): s.SegmentLabel for s in seg.SegmentSequence} == SEGMENT_LABELS
        (referenced,) = seg.ReferencedSeriesSequence
        assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
        source_uids = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in study["files"]}
        assert len(referenced.ReferencedInstanceSequence) == N_SLICES
        assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} <= source_uids
        masks = seg.get_volume(segment_numbers=[1, 2]).array
        assert masks[..., 0].any() and masks[..., 1].sum() > masks[..., 0].sum()
