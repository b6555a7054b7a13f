"""What the node knows of one received instance: identifiers and the header facts that decide
series completion and classification (no pixel data).

Times are seconds after midnight (AcquisitionTime, else ContentTime), positions and orientation
in patient coordinates (LPS, mm), as in the DICOM header.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

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


def _floats(value, n: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == n else None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def instance_info(ds: Dataset, path: Path, calling_aet: str = "") -> InstanceInfo:
    """The :class:`InstanceInfo` of ``ds`` (a received dataset, file meta optional) stored at
    ``path``. Missing or malformed optional attributes become ``None``/empty; the three UIDs and
    the SOP class must be present (the caller has checked them)."""
    time_s = parse_tm(ds.get("AcquisitionTime")) if "AcquisitionTime" in ds else None
    if time_s is None and "ContentTime" in ds:
        time_s = parse_tm(ds.get("ContentTime"))
    return InstanceInfo(
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        path=Path(path),
        calling_aet=calling_aet.strip(),
        patient_id=str(ds.get("PatientID", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        image_type=tuple(str(v) for v in (ds.get("ImageType") or ())),
        position=_floats(ds.get("ImagePositionPatient"), 3),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        time_s=time_s,
        acquisition_number=_int(ds.get("AcquisitionNumber")),
        number_of_frames=_int(ds.get("NumberOfFrames")) or 1,
        temporal_positions=_int(ds.get("NumberOfTemporalPositions")),
        images_in_acquisition=_int(ds.get("ImagesInAcquisition")),
    )
