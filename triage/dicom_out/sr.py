"""The numbers of ``result.json`` as a Comprehensive SR measurement report (TID 1500, highdicom).

Structure of the document (root: TID 1500 "Imaging Measurement Report")::

    Language, observer context: device (this software, no person)
    Procedure reported: (39142-5, LN, "CT perfusion head with contrast IV")
    Imaging Measurements
      Measurement Group, TID 1411, references SEG segment 1, finding SCT "Infarct"
          Volume = core_ml [ml]
      Measurement Group, TID 1411, references SEG segment 2, finding SCT "Ischemia"
          Volume = tmax6_ml [ml]
      Measurement Group, TID 1501, finding "Hypoperfusion with Tmax > 10 s" (private code)
          Volume = tmax10_ml [ml];  Hypoperfusion intensity ratio = hir [{ratio}]
      Measurement Group, TID 1501, finding "Perfusion mismatch" (private code)
          Volume = mismatch_ml [ml];  Mismatch ratio = mismatch_ratio [{ratio}]
    Qualitative Evaluations (C0034375, UMLS)
      DEFUSE 3 imaging criteria met = SCT Yes/No, and the reason as text
      DAWN criteria met = SCT Yes/No (absent when unknown), and the reason as text
      Analysis quality (good/limited), one "Quality warning" text per warning
      Lesion definitions (profile, thresholds, reference tissue, model), side with most
      hypoperfusion, and the research-use statement (DCM "Comment")

Why this shape: core and Tmax > 6 s are regions with masks, so they are volumetric ROI groups
(TID 1411) that point at their segment in the SEG object and share its Tracking UID; the
Tmax > 10 s region and the mismatch have no segment of their own, so they are image-level
groups (TID 1501). Every group carries the algorithm (TID 4019) with the profile's thresholds
as parameters. Ratios that are undefined (``null`` in result.json: no core, no Tmax > 6 s
tissue) are not written as numbers: the Qualitative Evaluations then hold a text item with
the same concept name saying why. Concepts that neither SNOMED CT nor DCM define use the
private scheme ``99STROKETRIAGE`` (declared in the Coding Scheme Identification Sequence).

The document is COMPLETE, UNVERIFIED and PRELIMINARY: an automatic research result that no
person has signed.
"""

from __future__ import annotations

import highdicom as hd
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from triage.dicom_out.common import (
    MANUFACTURER,
    MODEL_NAME,
    RESEARCH_USE,
    ExportContext,
    algorithm_version,
    private_code,
)
from triage.dicom_out.seg import (
    ALGORITHM_NAME,
    CORE_SEGMENT,
    HYPOPERFUSION_SEGMENT,
    INFARCT,
    ISCHEMIA,
    THRESHOLDING,
)

MILLILITER = Code("ml", "UCUM", "milliliter")
RATIO = codes.UCUM.Ratio
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
SEVERE_HYPOPERFUSION = private_code("SEVERE_HYPO", "Hypoperfusion with Tmax > 10 s")
MISMATCH = private_code("MISMATCH", "Perfusion mismatch (Tmax > 6 s minus core)")
MISMATCH_RATIO = private_code("MISMATCH_RATIO", "Mismatch ratio (Tmax > 6 s / core volume)")
HIR = private_code("HIR", "Hypoperfusion intensity ratio (Tmax > 10 s / Tmax > 6 s volume)")
DEFUSE3 = private_code("DEFUSE3", "DEFUSE 3 imaging criteria met")
DEFUSE3_REASON = private_code("DEFUSE3_REASON", "DEFUSE 3 imaging criteria")
DAWN = private_code("DAWN", "DAWN criteria met")
DAWN_REASON = private_code("DAWN_REASON", "DAWN criteria")
QUALITY = private_code("QUALITY", "Analysis quality")
QUALITY_WARNING = private_code("QUALITY_WARNING", "Quality warning")
DEFINITIONS = private_code("DEFINITIONS", "Lesion definitions")
AFFECTED_SIDE = private_code("AFFECTED_SIDE", "Side with most hypoperfusion")
DEVICE_OBSERVER_UID = generate_uid(entropy_srcs=["stroke-triage", "device observer"])
SERIES_DESCRIPTION = "CTP measurement report (research use)"


def _yes_no(value: bool) -> Code:
    return codes.SCT.Yes if value else codes.SCT.No


def _algorithm(result: dict) -> hd.sr.AlgorithmIdentification:
    profile = result.get("profile") or {}
    return hd.sr.AlgorithmIdentification(
        name=ALGORITHM_NAME, version=algorithm_version(result),
        family=THRESHOLDING,
        parameters=[f"{k}={v}" for k, v in profile.items() if k not in ("name", "description")])


def _volume(value) -> list[hd.sr.Measurement]:
    return [hd.sr.Measurement(name=codes.SCT.Volume, value=float(value), unit=MILLILITER)]


def _ratio(concept: Code, value) -> list[hd.sr.Measurement]:
    return [] if value is None else [hd.sr.Measurement(name=concept, value=float(value), unit=RATIO)]


def measurement_groups(result: dict, segmentation: hd.seg.Segmentation, context: ExportContext) -> list:
    """The four measurement groups (see the module docstring)."""
    algorithm, brain = _algorithm(result), [hd.sr.FindingSite(anatomic_location=codes.SCT.Brain)]
    category = codes.SCT.MorphologicallyAbnormalStructure
    groups = []
    for number, finding, identifier, volume in (
            (CORE_SEGMENT, INFARCT, "Ischemic core", result["core_ml"]),
            (HYPOPERFUSION_SEGMENT, ISCHEMIA, "Hypoperfusion", result["tmax6_ml"])):
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=context.uid("tracking", str(number)),
                                                         identifier=identifier),
            referenced_segment=hd.sr.ReferencedSegment.from_segmentation(segmentation, number),
            finding_type=finding, finding_category=category, finding_sites=brain,
            algorithm_id=algorithm, measurements=_volume(volume)))
    for key, finding, identifier, measurements in (
            ("severe", SEVERE_HYPOPERFUSION, "Hypoperfusion Tmax>10s",
             _volume(result["tmax10_ml"]) + _ratio(HIR, result["hir"])),
            ("mismatch", MISMATCH, "Perfusion mismatch",
             _volume(result["mismatch_ml"]) + _ratio(MISMATCH_RATIO, result["mismatch_ratio"]))):
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=context.uid("tracking", key), identifier=identifier),
            finding_type=finding, finding_category=category, finding_sites=brain,
            algorithm_id=algorithm, measurements=measurements))
    return groups


def _definitions(result: dict) -> str:
    profile, reference = result.get("profile") or {}, result.get("reference") or {}
    text = (f"profile {profile.get('name', '?')}: core rCBF < {float(profile.get('core_rcbf_below', 0)):.0%} "
            f"of the reference CBF; hypoperfusion Tmax > {profile.get('hypoperfusion_tmax_above_s')} s; "
            f"severe Tmax > {profile.get('severe_tmax_above_s')} s")
    if reference.get("method"):
        text += f"; reference: {reference['method']} = {reference.get('cbf')} mL/100 g/min"
    return text + f"; deconvolution model {result.get('model', '?')}"


def qualitative_evaluations(result: dict) -> hd.sr.ContainerContentItem:
    """The root-level Qualitative Evaluations container of TID 1500."""
    eligibility, quality = result.get("eligibility") or {}, result.get("quality") or {}
    reasons = eligibility.get("reasons") or {}

    def text(name: Code, value: str) -> hd.sr.TextContentItem:
        return hd.sr.TextContentItem(name=name, value=value, relationship_type="CONTAINS")

    def code(name: Code, value: Code) -> hd.sr.CodeContentItem:
        return hd.sr.CodeContentItem(name=name, value=value, relationship_type="CONTAINS")

    items = []
    for key, met, why in (("defuse3", DEFUSE3, DEFUSE3_REASON), ("dawn", DAWN, DAWN_REASON)):
        if eligibility.get(key) is not None:  # unknown (DAWN without age and NIHSS): the text says why
            items.append(code(met, _yes_no(eligibility[key])))
        items.append(text(why, str(reasons.get(key) or "no reason given")))
    if result.get("mismatch_ratio") is None:
        items.append(text(MISMATCH_RATIO, "not defined: the core volume is 0 mL"))
    if result.get("hir") is None:
        items.append(text(HIR, "not defined: no tissue with Tmax > 6 s"))
    items.append(text(QUALITY, str(quality.get("level", "unknown"))))
    items += [text(QUALITY_WARNING, str(w)) for w in quality.get("warnings") or []]
    items.append(text(DEFINITIONS, _definitions(result)))
    if result.get("affected_side"):
        items.append(text(AFFECTED_SIDE, str(result["affected_side"])))
    items.append(text(codes.DCM.Comment, RESEARCH_USE))
    container = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type="CONTAINS")
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def measurement_report(result: dict, segmentation: hd.seg.Segmentation, evidence: list,
                       context: ExportContext) -> hd.sr.ComprehensiveSR:
    """The SR document; ``evidence`` are the source image headers the SEG references (the first
    gives the patient and study)."""
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_OBSERVER_UID, name=MODEL_NAME, manufacturer_name=MANUFACTURER, model_name=MODEL_NAME))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTPerfusionHeadWithContrastIV,
        imaging_measurements=measurement_groups(result, segmentation, context),
        title=codes.cid7021.ImagingMeasurementReport)
    report[0].ContentSequence.append(qualitative_evaluations(result))
    series_uid, series_number = context.series("sr")
    return hd.sr.ComprehensiveSR(
        evidence=[*evidence, segmentation],
        content=report[0],
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=context.uid("instance", "sr"),
        instance_number=1,
        is_complete=True, is_final=False, is_verified=False,
        **context.equipment(SERIES_DESCRIPTION),
    )
