"""What every result object sent to PACS shares: identity of our software, the study it belongs
to, deterministic UIDs and series numbers, and the private codes of this project.

UIDs are derived from a seed (``uid_seed``, e.g. the source Series Instance UID plus the analysis
generation) with pydicom's ``generate_uid(entropy_srcs=...)``: the same seed always gives the same
Series and SOP Instance UIDs, so a re-run after a crash re-sends the same instances and the PACS
stores them once.

Every object carries the source's patient and study modules (copied by highdicom from a
reference source image), is written in UTF-8 (``ISO_IR 192``: names, reasons and warnings may
hold any character) and is flagged ``ContentQualification = RESEARCH``.

Concepts that no standard scheme defines use this project's private coding scheme
``99STROKETRIAGE`` (PS3.16 Section 8: private designators begin with "99"). An object that uses
one of its codes (the SEG's algorithm family, the SR's findings and evaluations) declares it in
its Coding Scheme Identification Sequence (0008,0110), with the scheme's name and responsible
organisation (it has no UID); the Secondary Captures use no coded concept of it and do not
(:func:`declare_private_scheme`).
"""

from __future__ import annotations

from dataclasses import dataclass

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from triage import __version__

CODING_SCHEME_DESIGNATOR = Tag("CodingSchemeDesignator")
MANUFACTURER = "stroke-triage (open source)"
MODEL_NAME = "stroke-triage"
DEVICE_SERIAL_NUMBER = "none"
RESEARCH_USE = ("Research use only: not clinically validated, not for clinical decisions; "
                "verify against the source images.")

PRIVATE_SCHEME = "99STROKETRIAGE"
PRIVATE_SCHEME_NAME = "stroke-triage private codes"
PRIVATE_SCHEME_ORGANIZATION = "stroke-triage project"

# Series numbers of the result objects: ``source series number * 100 + offset`` (or 9900 +
# offset when the source has none), so they sort right after each other and name their source;
# a re-analysis (generation g > 1) adds 10 * (g - 1): 511 ... 519 for generation 2 of series 5
# (generations after the 10th share 591 ... 599; their descriptions still tell them apart).
SERIES_OFFSETS = {"summary": 1, "cbf": 2, "cbv": 3, "mtt": 4, "tmax": 5, "ttp": 6, "aif": 7,
                  "seg": 8, "sr": 9}
MAX_NUMBERED_GENERATION = 10
RESEARCH_SUFFIX = " (research use)"   # every Series Description ends with it

# Patient/study attributes that highdicom reads from the reference image without a default:
# Type 2 in every CT image, but missing in some exports.
TYPE2_IDENTIFIERS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
                     "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")


def private_code(value: str, meaning: str) -> Code:
    """A concept of this project's private coding scheme (code value at most 16 characters)."""
    return Code(value, PRIVATE_SCHEME, meaning)


def declare_private_scheme(ds: Dataset) -> Dataset:
    """``ds`` with a Coding Scheme Identification Sequence that declares the private scheme
    exactly when a Coding Scheme Designator (0008,0102) anywhere in ``ds`` names it (and no
    such sequence otherwise)."""
    if "CodingSchemeIdentificationSequence" in ds:
        del ds.CodingSchemeIdentificationSequence
    if any(element.tag == CODING_SCHEME_DESIGNATOR and element.value == PRIVATE_SCHEME
           for element in ds.iterall()):
        ds.CodingSchemeIdentificationSequence = [CodingSchemeIdentificationItem(
            designator=PRIVATE_SCHEME, name=PRIVATE_SCHEME_NAME,
            responsible_organization=PRIVATE_SCHEME_ORGANIZATION)]
    return ds


def algorithm_version(result: dict) -> str:
    """Version of the software that computed ``result`` (result.json), else this one."""
    return str((result.get("software") or {}).get("version") or __version__)


def with_identifier_defaults(ds: Dataset) -> Dataset:
    """``ds`` with absent Type 2 patient/study identifiers set empty and an invalid PatientSex
    emptied (highdicom refuses anything but M, F, O)."""
    for keyword in TYPE2_IDENTIFIERS:
        if keyword not in ds:
            setattr(ds, keyword, "")
    if str(ds.PatientSex or "").upper() not in ("M", "F", "O"):
        ds.PatientSex = ""
    return ds


@dataclass(frozen=True)
class ExportContext:
    """Shared facts of one export.

    ``reference`` is a header of one source image (patient and study identifiers, institution,
    series number); ``uid_seed`` makes every UID of the export reproducible; ``generation`` is
    the node's analysis generation of the source series (2 and up: a re-analysis with more
    images, named in the Series Descriptions).
    """

    uid_seed: str
    reference: Dataset
    generation: int = 1

    def uid(self, *parts: str) -> str:
        """The UID of ``parts`` (e.g. ``("series", "seg")``) for this export's seed."""
        return generate_uid(entropy_srcs=[self.uid_seed, *parts])

    def series(self, kind: str) -> tuple[str, int]:
        """Series Instance UID and Series Number of the result series ``kind`` (SERIES_OFFSETS)."""
        try:
            base = int(self.reference.get("SeriesNumber")) * 100
        except (TypeError, ValueError):
            base = 9900
        step = 10 * (min(self.generation, MAX_NUMBERED_GENERATION) - 1)
        return self.uid("series", kind), base + step + SERIES_OFFSETS[kind]

    def describe(self, series_description: str) -> str:
        """``series_description`` ("... (research use)"), naming the re-analysis from generation 2:
        "... (re-analysis 2, research use)"."""
        if self.generation == 1:
            return series_description
        return (f"{series_description.removesuffix(RESEARCH_SUFFIX)} "
                f"(re-analysis {self.generation}, research use)")

    def equipment(self, series_description: str) -> dict:
        """Keyword arguments every highdicom constructor takes: who made the object and how."""
        return {
            "manufacturer": MANUFACTURER,
            "manufacturer_model_name": MODEL_NAME,
            "software_versions": __version__,
            "device_serial_number": DEVICE_SERIAL_NUMBER,
            "institution_name": str(self.reference.get("InstitutionName", "") or "") or None,
            "institutional_department_name":
                str(self.reference.get("InstitutionalDepartmentName", "") or "") or None,
            "series_description": self.describe(series_description),
            "content_qualification": "RESEARCH",
            "specific_character_set": "ISO_IR 192",
        }
