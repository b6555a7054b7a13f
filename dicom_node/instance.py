"""What the node knows of one received instance: identifiers and the header facts that decide
series completion and classification (no pixel data).

Times are seconds after midnight (AcquisitionTime, else ContentTime), positions and orientation
in patient coordinates (LPS, mm), as in the DICOM header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException

from triage.base.dicom_header import parse_tm

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
CT_STORAGE_CLASSES = (CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE)


@dataclass(frozen=True)
class InstanceInfo:
    """One stored instance, as recorded in the job store."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    path: Path
    calling_aet: str = ""
    patient_id: str = ""
    modality: str = ""
    series_description: str = ""
    image_type: tuple[str, ...] = ()
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    time_s: float | None = None
    acquisition_number: int | None = None
    number_of_frames: int = 1
    temporal_positions: int | None = None      # NumberOfTemporalPositions (0020,0105)
    images_in_acquisition: int | None = None   # ImagesInAcquisition (0020,1002)

    @property
    def is_ct_image(self) -> bool:
        return self.sop_class_uid in CT_STORAGE_CLASSES


def header_values(ds: Dataset, keyword: str) -> tuple[str, ...]:
    """The values of an element whose VR uses only the default character repertoire (UI, CS,
    DS, IS, TM, ...), as stripped strings; () when absent or empty.

    A freshly received element is read from its bytes, about ten times faster than pydicom's
    value conversion (which would also apply to it the Specific Character Set it ignores); a
    converted one is taken as it is."""
    element = ds.get_item(tag_for_keyword(keyword))
    if element is None:
        return ()
    value = element.value
    if isinstance(element, RawDataElement):
        if not value:
            return ()
        text = bytes(value).decode("ascii", "replace").strip("\0 ")
        return tuple(v.strip("\0 ") for v in text.split("\\")) if text else ()
    if value is None or value == "":
        return ()
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = (value,)
    return tuple(str(v).strip("\0 ") for v in value)


def header_text(ds: Dataset, keyword: str) -> str:
    """The first value of :func:`header_values` (``""`` when absent)."""
    values = header_values(ds, keyword)
    return values[0] if values else ""


def _floats(value, n: int) -> tuple[float, ...] | None:
    """``n`` finite floats, else None."""
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        return None
    return numbers if len(numbers) == n and all(map(math.isfinite, numbers)) else None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _character_text(ds: Dataset, keyword: str) -> str:
    """An element in the Specific Character Set (LO, SH, ...) as text; "" when absent or when
    its bytes cannot be read as such (a wrong VR, a bad length)."""
    try:
        return str(ds.get(keyword, "") or "")
    except (TypeError, ValueError, OverflowError, BytesLengthException):
        return ""


def _count(value) -> int | None:
    """A count of at least 1, else None."""
    number = _int(value)
    return number if number is not None and number >= 1 else None


def instance_info(ds: Dataset, path: Path, calling_aet: str = "") -> InstanceInfo:
    """The :class:`InstanceInfo` of ``ds`` (a received dataset, file meta optional) stored at
    ``path``. Missing or malformed optional attributes become ``None``/empty; the three UIDs and
    the SOP class must be present (the caller has checked them)."""
    time_s = parse_tm(header_text(ds, "AcquisitionTime"))
    if time_s is None:
        time_s = parse_tm(header_text(ds, "ContentTime"))
    return InstanceInfo(
        sop_instance_uid=header_text(ds, "SOPInstanceUID"),
        sop_class_uid=header_text(ds, "SOPClassUID"),
        study_uid=header_text(ds, "StudyInstanceUID"),
        series_uid=header_text(ds, "SeriesInstanceUID"),
        path=Path(path),
        calling_aet=calling_aet.strip(),
        patient_id=_character_text(ds, "PatientID"),
        modality=header_text(ds, "Modality"),
        series_description=_character_text(ds, "SeriesDescription"),
        image_type=header_values(ds, "ImageType"),
        position=_floats(header_values(ds, "ImagePositionPatient"), 3),
        orientation=_floats(header_values(ds, "ImageOrientationPatient"), 6),
        time_s=time_s,
        acquisition_number=_int(header_text(ds, "AcquisitionNumber")),
        number_of_frames=_count(header_text(ds, "NumberOfFrames")) or 1,
        temporal_positions=_count(header_text(ds, "NumberOfTemporalPositions")),
        images_in_acquisition=_count(header_text(ds, "ImagesInAcquisition")),
    )
