"""Reading DICOM headers: the facts that group, order and place each image (no pixel data).

A *plane* is one 2D image: a classic single-frame instance, or one frame of an Enhanced CT
multi-frame object. Headers are read once (without pixel data) into :class:`PlaneHeader`
records that carry everything needed to classify a series and lay out the 4D array (used by
the assembly, the node's completion check and the DICOM export); pixel data is read later,
file by file, by :func:`triage.imaging.pixels.read_stored_planes`.

Times are seconds of the day (float) as written in the DICOM TM / DT strings; positions and
orientations are DICOM patient coordinates (LPS, mm).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pydicom
import pydicom.config
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from triage.base.errors import InputError, one_line

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
NATIVE_LITTLE_ENDIAN = {ImplicitVRLittleEndian, ExplicitVRLittleEndian}
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
# An image larger than this in-plane, or whose pixel data would decode to more bytes per
# file, is refused before any pixel is read (a lying header or a decompression bomb).
MAX_IMAGE_SIDE = 4096
MAX_DECODED_BYTES = 2**30


def quiet_reading_validation() -> None:
    """Stop pydicom warning about invalid values (over-long UIDs, bad DS strings) element by
    element: the readers here judge them. Process-wide, so called by the entry points
    (``triage``, the analysis child), not on import."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


ATTRIBUTE_KEYWORDS = ("PatientID", "PatientName", "AccessionNumber", "StudyDescription",
                      "SeriesDescription", "StudyDate", "Manufacturer", "KVP")


class NotSeriesImage(ValueError):
    """The file is DICOM but not an image of a series (DICOMDIR, no SeriesInstanceUID)."""


@dataclass(frozen=True)
class PlaneHeader:
    """Header facts of one 2D image.

    ``frame`` is the index into the pixel data of a multi-frame object (None for single-frame).
    ``pixel_spacing`` is DICOM (row spacing, column spacing) in mm. Times are s of the day.
    ``order_index`` is TemporalPositionIndex or AcquisitionNumber: an order, not a time.
    """

    path: Path
    frame: int | None
    sop_uid: str
    rows: int
    columns: int
    pixel_spacing: tuple[float, float] | None
    orientation: tuple[float, ...] | None
    position: tuple[float, float, float] | None
    acquisition_time: float | None
    content_time: float | None
    order_index: int | None
    slope: float
    intercept: float
    thickness: float | None = None


@dataclass
class FileHeader:
    """Series-level identifiers of one file and its planes.

    ``pixel_offset`` is the byte offset of the Pixel Data element; ``native_dtype`` the NumPy
    dtype of uncompressed little-endian 16-bit pixel data (None: decode with pydicom).
    """

    path: Path
    study_uid: str
    series_uid: str
    modality: str
    description: str
    image_type: tuple[str, ...]
    pixel_offset: int = 0
    native_dtype: str | None = None
    explicit_vr: bool = True
    planes: list[PlaneHeader] = field(default_factory=list)


_TM = re.compile(r"([0-9]{2})([0-9]{2})?([0-9]{2}(?:\.[0-9]*)?)?")


def parse_tm(value) -> float | None:
    """Seconds of the day from a DICOM TM (``HHMMSS.FFFFFF``, also ``HH:MM:SS``); None if absent
    or not a time of day (hours 00-23, minutes 00-59, seconds below 61)."""
    match = _TM.fullmatch(str(value or "").strip().replace(":", ""))
    if match is None:
        return None
    hours, minutes, seconds = int(match[1]), int(match[2] or 0), float(match[3] or 0.0)
    if hours > 23 or minutes > 59 or seconds >= 61.0:
        return None
    return hours * 3600.0 + minutes * 60.0 + seconds


def parse_dt_time(value) -> float | None:
    """Seconds of the day from the time part of a DICOM DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``)."""
    text = str(value or "").strip()
    for sign in "+-":
        text = text.split(sign)[0]
    return parse_tm(text[8:]) if len(text) > 8 else None


def parse_age_years(value) -> float | None:
    """Age in years from a DICOM AS string (``072Y``, ``006M``, ``010W``, ``005D``)."""
    text = str(value or "").strip().upper()
    units = {"Y": 1.0, "M": 12.0, "W": 365.25 / 7.0, "D": 365.25}
    if len(text) < 2 or text[-1] not in units or not (text[:-1].isascii() and text[:-1].isdigit()):
        return None
    return int(text[:-1]) / units[text[-1]]


def _floats(value, n: int) -> tuple[float, ...] | None:
    """``n`` finite floats, or None when absent, of another count or not all finite numbers."""
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        return None
    return values if len(values) == n and all(map(math.isfinite, values)) else None


def _get(ds: Dataset | None, keyword: str):
    """``ds.get(keyword)``, None when absent or when its value cannot be converted (a DS
    that is not a number, a value of the wrong VR)."""
    if ds is None:
        return None
    try:
        return ds.get(keyword)
    except (TypeError, ValueError, OverflowError, BytesLengthException):
        return None


def _first_item(container: Dataset | None, keyword: str) -> Dataset | None:
    sequence = getattr(container, keyword, None) if container is not None else None
    return sequence[0] if sequence else None


def _group_item(frame_groups: Dataset | None, shared: Dataset | None, keyword: str):
    """Functional group item ``keyword`` of a frame, falling back to the shared groups."""
    return _first_item(frame_groups, keyword) or _first_item(shared, keyword)


def _optional_int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _optional_float(value) -> float | None:
    """A finite float, or None."""
    try:
        number = float(value) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _rescale(ds: Dataset, keyword: str, default: float) -> float:
    """RescaleSlope or RescaleIntercept (``default`` when absent or empty).

    Raises ValueError when it is not a finite number: every pixel would be wrong."""
    value = ds.get(keyword, default)
    number = float(value) if value not in (None, "") else default
    if not math.isfinite(number):
        raise ValueError(f"{keyword} {value} is not a finite number")
    return number


def _classic_plane(ds: Dataset, path: Path) -> PlaneHeader:
    acquisition = parse_tm(_get(ds, "AcquisitionTime"))
    if acquisition is None:
        acquisition = parse_dt_time(_get(ds, "AcquisitionDateTime"))
    order = _optional_int(_get(ds, "TemporalPositionIndex"))
    return PlaneHeader(
        path=path, frame=None, sop_uid=str(ds.get("SOPInstanceUID", "")),
        rows=int(ds.get("Rows", 0) or 0), columns=int(ds.get("Columns", 0) or 0),
        pixel_spacing=_floats(_get(ds, "PixelSpacing"), 2),
        orientation=_floats(_get(ds, "ImageOrientationPatient"), 6),
        position=_floats(_get(ds, "ImagePositionPatient"), 3),
        acquisition_time=acquisition, content_time=parse_tm(_get(ds, "ContentTime")),
        order_index=order if order is not None else _optional_int(_get(ds, "AcquisitionNumber")),
        slope=_rescale(ds, "RescaleSlope", 1.0) or 1.0, intercept=_rescale(ds, "RescaleIntercept", 0.0),
        thickness=_optional_float(_get(ds, "SliceThickness")))


def _enhanced_planes(ds: Dataset, path: Path) -> list[PlaneHeader]:
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    object_time = parse_dt_time(_get(ds, "AcquisitionDateTime"))
    if object_time is None:
        object_time = parse_tm(_get(ds, "AcquisitionTime"))
    content_time = parse_tm(_get(ds, "ContentTime"))
    planes = []
    for index, groups in enumerate(ds.PerFrameFunctionalGroupsSequence):
        position = _group_item(groups, shared, "PlanePositionSequence")
        orientation = _group_item(groups, shared, "PlaneOrientationSequence")
        measures = _group_item(groups, shared, "PixelMeasuresSequence")
        transform = _group_item(groups, shared, "PixelValueTransformationSequence")
        content = _group_item(groups, shared, "FrameContentSequence")
        frame_time = parse_dt_time(content.get("FrameAcquisitionDateTime")) if content else None
        if frame_time is None and content is not None:
            frame_time = parse_dt_time(content.get("FrameReferenceDateTime"))
        planes.append(PlaneHeader(
            path=path, frame=index, sop_uid=str(ds.get("SOPInstanceUID", "")),
            rows=int(ds.get("Rows", 0) or 0), columns=int(ds.get("Columns", 0) or 0),
            pixel_spacing=_floats(_get(measures, "PixelSpacing"), 2),
            orientation=_floats(
                _get(orientation, "ImageOrientationPatient"), 6),
            position=_floats(_get(position, "ImagePositionPatient"), 3),
            acquisition_time=frame_time if frame_time is not None else object_time,
            content_time=content_time,
            order_index=_optional_int(content.get("TemporalPositionIndex")) if content else None,
            slope=_rescale(transform or ds, "RescaleSlope", 1.0) or 1.0,
            intercept=_rescale(transform or ds, "RescaleIntercept", 0.0),
            thickness=_optional_float(_get(measures, "SliceThickness"))))
    return planes


def _dcmread_header(stream: BinaryIO) -> Dataset:
    """Header of a Part 10 file, or of a bare dataset without preamble (old exports).

    pydicom leaves ``stream`` at the Pixel Data element when it stops before it.
    """
    try:
        return pydicom.dcmread(stream, stop_before_pixels=True)
    except InvalidDicomError:
        stream.seek(0)
        if stream.read(2) not in (b"\x02\x00", b"\x08\x00"):
            raise
        stream.seek(0)
        return pydicom.dcmread(stream, stop_before_pixels=True, force=True)


def _native_dtype(ds: Dataset) -> str | None:
    """NumPy dtype of uncompressed little-endian 16-bit greyscale pixel data, else None."""
    syntax = getattr(ds.get("file_meta"), "TransferSyntaxUID", None)
    if (syntax not in NATIVE_LITTLE_ENDIAN or ds.get("BitsAllocated") != 16
            or ds.get("BitsStored") != 16 or int(ds.get("SamplesPerPixel", 1) or 1) != 1):
        return None
    return "<i2" if ds.get("PixelRepresentation") == 1 else "<u2"


def read_header(path: Path) -> FileHeader:
    """Read the header of one file (no pixel data).

    Raises
    ------
    pydicom.errors.InvalidDicomError
        The file is not DICOM.
    NotSeriesImage
        The file is DICOM but not an image of a series (DICOMDIR, no SeriesInstanceUID).
    Exception
        Anything pydicom raises on a damaged header; callers record it as the reason.
    """
    with open(path, "rb") as stream:
        ds = _dcmread_header(stream)
        pixel_offset = stream.tell()
    meta_class = str(getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", ""))
    if meta_class == DICOMDIR_CLASS:
        raise NotSeriesImage("DICOMDIR (index file, not an image)")
    series_uid = str(ds.get("SeriesInstanceUID", "") or "")
    if not series_uid:
        raise NotSeriesImage("no SeriesInstanceUID")
    syntax = getattr(ds.get("file_meta"), "TransferSyntaxUID", None)
    header = FileHeader(
        path=path, study_uid=str(ds.get("StudyInstanceUID", "") or ""), series_uid=series_uid,
        modality=str(ds.get("Modality", "") or "").upper(),
        description=str(ds.get("SeriesDescription", "") or ""),
        image_type=tuple(str(v).upper() for v in (ds.get("ImageType") or ())),
        pixel_offset=pixel_offset, native_dtype=_native_dtype(ds),
        explicit_vr=syntax == ExplicitVRLittleEndian)
    if "PerFrameFunctionalGroupsSequence" in ds:
        header.planes = _enhanced_planes(ds, path)
    else:
        header.planes = [_classic_plane(ds, path)]
    return header


def read_identifiers(path: Path) -> tuple[dict[str, str], float | None]:
    """Patient/study identifiers of one file (``ATTRIBUTE_KEYWORDS``) and the age in years.

    Read once per series rather than during the scan, to keep the scan fast.
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        attributes = {k: str(ds.get(k, "") or "") for k in ATTRIBUTE_KEYWORDS}
        return attributes, parse_age_years(ds.get("PatientAge"))
    except Exception as exc:
        raise InputError(f"cannot read {path.name}: {one_line(exc)}") from exc


