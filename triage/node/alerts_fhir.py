"""The FHIR R4 form of an alert (``alert_fhir``): a DiagnosticReport with contained Observations.

A result is a report of status ``final`` (``preliminary`` when time points of an aborted scan
were left out: the missing images may still come and start a re-analysis), one contained
Observation per volume (UCUM ``mL``; ``1`` for the two ratios; a ratio that does not exist,
e.g. without core, has a ``dataAbsentReason`` instead of a value) and a conclusion with the
decision and the research-use statement; the ImagingStudy is referenced by its Study
Instance UID. A failure is a report of status ``cancelled`` whose
conclusion says why. The report's identifier is the message's idempotency key; its subject is a
reference by identifier (the PatientID) only with ``alert_patient_details``, else absent. Codes
are local (system ``urn:stroke-triage``), except the HL7 category RAD.

Documents are validated with the ``fhir.resources`` models of FHIR 4.3 (R4B), whose
DiagnosticReport and Observation are those of R4 (4.0.1) in every element used here.
"""

from __future__ import annotations

from fhir.resources.R4B.diagnosticreport import DiagnosticReport

CODE_SYSTEM = "urn:stroke-triage"
UCUM = "http://unitsofmeasure.org"
CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD",
                        "display": "Radiology"}]}
ABSENT = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                      "code": "not-applicable", "display": "Not Applicable"}]}
REPORT_CODE = {"coding": [{"system": CODE_SYSTEM, "code": "ctp-triage",
                           "display": "CT perfusion stroke triage (research use only)"}],
               "text": "CT perfusion stroke triage (research use only)"}


def result_report(key: str, alert: dict, result: dict, patient: dict | None) -> bytes:
    """The report of a result alert (the JSON ``alert`` of :func:`triage.node.alerts.result_messages`
    and its ``result.json``), validated, as JSON bytes."""
    profile = result["profile"]
    names = {
        "core_ml": f"Ischaemic core volume (rCBF < {profile['core_rcbf_below'] * 100:g} %)",
        "tmax6_ml": f"Volume with Tmax > {profile['hypoperfusion_tmax_above_s']:g} s",
        "tmax10_ml": f"Volume with Tmax > {profile['severe_tmax_above_s']:g} s",
        "mismatch_ml": "Mismatch volume (hypoperfused minus core)",
        "mismatch_ratio": "Mismatch ratio (hypoperfused / core)",
        "hir": "Hypoperfusion intensity ratio (Tmax > "
               f"{profile['severe_tmax_above_s']:g} s / Tmax > {profile['hypoperfusion_tmax_above_s']:g} s)",
    }
    status = "preliminary" if result["acquisition"].get("frames_left_out") else "final"
    observations = [_observation(name, display, alert["volumes"][name], status, alert)
                    for name, display in names.items()]
    report = _report(key, alert, status, patient)
    report["contained"] = observations
    report["result"] = [{"reference": f"#{o['id']}", "display": o["code"]["text"]} for o in observations]
    return _validated(report)


def failure_report(key: str, alert: dict, patient: dict | None) -> bytes:
    """The report of a failure alert: status ``cancelled``, the reason in the conclusion."""
    return _validated(_report(key, alert, "cancelled", patient))


def _report(key: str, alert: dict, status: str, patient: dict | None) -> dict:
    """The report without its results; the conclusion is the alert's message and statement."""
    study, times, message = alert["study"], alert["times"], alert["message"]
    report = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": f"{CODE_SYSTEM}:idempotency-key", "value": key}],
        "status": status,
        "category": [CATEGORY],
        "code": REPORT_CODE,
        "effectiveDateTime": times["last_image_received_utc"],
        "issued": times.get("result_ready_utc") or times["failed_utc"],
        "conclusion": message if alert["statement"] in message else f"{message} {alert['statement']}",
        "imagingStudy": [{"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{study['study_uid']}"},
                          "display": f"series {study['series_uid']}, analysis generation {study['generation']}"}],
    }
    if patient:
        report["subject"] = {"identifier": {"value": patient["id"]}}
    return report


def _observation(name: str, display: str, value: float | None, status: str, alert: dict) -> dict:
    code = name.removesuffix("_ml").replace("_", "-")
    observation = {
        "resourceType": "Observation", "id": code, "status": status,
        "code": {"coding": [{"system": CODE_SYSTEM, "code": code, "display": display}], "text": display},
        "effectiveDateTime": alert["times"]["last_image_received_utc"],
    }
    unit = "mL" if name.endswith("_ml") else "1"
    if value is None:
        observation["dataAbsentReason"] = ABSENT
    else:
        observation["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    return observation


def _validated(document: dict) -> bytes:
    """``document`` through the DiagnosticReport model (pydantic ValidationError if invalid)."""
    return DiagnosticReport.model_validate(document).model_dump_json(exclude_none=True).encode()
