"""Write a phantom as CT Image Storage DICOM files, with the vendor variations readers meet.

One file per slice per frame. Orientation: ImageOrientationPatient 1\\0\\0\\0\\1\\0, so the
image x axis (columns) runs toward the patient's LEFT and y (rows) toward posterior; patient
left therefore sits at high column indices (the right of the screen in radiological display).
ImagePositionPatient z increases with the slice index. Stored values are 16-bit integers with
RescaleSlope/RescaleIntercept giving HU. Synthetic data for research use only.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from triage.base.errors import InputError

if TYPE_CHECKING:                 # phantom.py re-exports write_dicom, so no runtime import here
    from .phantom import Phantom

SERIES_DESCRIPTION = "CT PERFUSION PHANTOM (synthetic, research use)"
MANUFACTURER = "stroke-triage phantom"
START_SECONDS = 10 * 3600 + 15 * 60        # first perfusion frame at 10:15:00
TRANSFER_SYNTAXES = {"explicit": ExplicitVRLittleEndian, "implicit": ImplicitVRLittleEndian,
                     "rle": RLELossless, "jpeg2000_lossless": JPEG2000Lossless}
# pylibjpeg-rle encodes RLE ~10x faster than pydicom's own encoder.
_ENCODING_PLUGIN = {RLELossless: "pylibjpeg"} if importlib.util.find_spec("rle") else {}
_CHOICES = {"time_source": ("both", "acquisition", "content"),
            "acquisition_number": ("per_frame", "constant"),
            "rescale": ("fixed", "per_instance"),
            "file_names": ("ordered", "random"),
            "transfer_syntax": tuple(TRANSFER_SYNTAXES)}


@dataclass(frozen=True)
class DicomVariant:
    """How the files differ from the plain case (defaults: both times, tidy, explicit VR).

    Attributes
    ----------
    time_source : "both" (AcquisitionTime and ContentTime), "acquisition" or "content" (only one).
    acquisition_number : "per_frame" (1..t) or "constant" (1 for every instance).
    rescale : "fixed" (signed int16, slope 1, intercept -1024) or "per_instance" (unsigned,
        slope 1 or 0.5 and intercept -1024 or -1000 drawn per instance; HU below the intercept
        are clipped to it, which only happens in air).
    file_names : "ordered" (series folder, IM_<instance>.dcm) or "random" (random nested
        sub-directories, random names without extension).
    shuffle : write the files in random order.
    extra_series : also write a one-time-point NCCT series of the same study into the tree.
    transfer_syntax : "explicit", "implicit", "rle" or "jpeg2000_lossless".
    """

    time_source: str = "both"
    acquisition_number: str = "per_frame"
    rescale: str = "fixed"
    file_names: str = "ordered"
    shuffle: bool = False
    extra_series: bool = False
    transfer_syntax: str = "explicit"

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"DICOM variant {name} must be one of {', '.join(allowed)}")


VARIANTS: dict[str, DicomVariant] = {
    "standard": DicomVariant(),
    "acquisition_time": DicomVariant(time_source="acquisition"),
    "content_time": DicomVariant(time_source="content"),
    "constant_acquisition_number": DicomVariant(acquisition_number="constant"),
    "per_instance_rescale": DicomVariant(rescale="per_instance"),
    "random_names": DicomVariant(file_names="random", shuffle=True),
    "extra_series": DicomVariant(extra_series=True),
    "implicit": DicomVariant(transfer_syntax="implicit"),
    "rle": DicomVariant(transfer_syntax="rle"),
    "jpeg2000": DicomVariant(transfer_syntax="jpeg2000_lossless"),
    "messy": DicomVariant(time_source="content", acquisition_number="constant",
                          rescale="per_instance", file_names="random", shuffle=True,
                          extra_series=True, transfer_syntax="rle"),
}


def parse_variant(text: str) -> DicomVariant:
    """A variant from a preset name or ``key=value,key=value`` (e.g. ``rescale=per_instance``)."""
    if text in VARIANTS:
        return VARIANTS[text]
    fields = {f.name: f.type for f in dataclasses.fields(DicomVariant)}
    values = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in fields or not value:
            raise InputError(f"unknown DICOM variant {text!r} (presets: {', '.join(VARIANTS)})")
        values[key] = value.lower() in ("1", "true", "yes") if key in ("shuffle", "extra_series") \
            else value
    return DicomVariant(**values)


def _tm(seconds: float) -> str:
    """DICOM TM (HHMMSS.ffffff) for seconds after midnight."""
    micro = int(round(seconds * 1e6))
    whole, frac = divmod(micro, 1_000_000)
    return f"{whole // 3600:02d}{whole // 60 % 60:02d}{whole % 60:02d}.{frac:06d}"


def _stored(hu: np.ndarray, slope: float, intercept: float, signed: bool) -> np.ndarray:
    values = np.rint((hu - intercept) / slope)
    if signed:
        return np.clip(values, -32768, 32767).astype(np.int16)
    return np.clip(values, 0, 65535).astype(np.uint16)


class _SeriesWriter:
    """Shared identifiers and per-instance encoding for one study."""

    def __init__(self, phantom: Phantom, out_dir: Path, variant: DicomVariant):
        self.phantom, self.out_dir, self.variant = phantom, out_dir, variant
        self.rng = np.random.default_rng(phantom.config.seed + 7919)
        self.study_uid, self.frame_of_reference_uid = generate_uid(), generate_uid()
        self.date = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")

    def common(self) -> Dataset:
        """Patient, study, equipment and geometry attributes shared by every instance."""
        config, geometry = self.phantom.config, self.phantom.geometry
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = CTImageStorage
        ds.PatientName = "PHANTOM^CTP"
        ds.PatientID = f"PHANTOM-{config.case}-{config.seed}"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        if config.age is not None:
            ds.PatientAge = f"{int(config.age):03d}Y"
        ds.StudyInstanceUID = self.study_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = self.date
        ds.StudyTime = _tm(START_SECONDS - 300.0)
        ds.StudyID = "1"
        ds.AccessionNumber = f"PH{config.seed:06d}"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "CT HEAD STROKE PROTOCOL (synthetic phantom)"
        ds.Modality = "CT"
        ds.Manufacturer = MANUFACTURER
        ds.ManufacturerModelName = "synthetic"
        ds.BodyPartExamined = "HEAD"
        ds.PatientPosition = "HFS"
        ds.FrameOfReferenceUID = self.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [geometry.spacing[1], geometry.spacing[0]]   # row, column spacing
        ds.SliceThickness = geometry.spacing[2]
        ds.SpacingBetweenSlices = geometry.spacing[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = self.phantom.hu.shape[2:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 80
        ds.ImageComments = "Synthetic phantom, not patient data; research use only"
        return ds

    def instance(self, common: Dataset, series: dict, hu_slice: np.ndarray, slice_index: int,
                 instance_number: int, seconds: float, frame: int | None) -> Dataset:
        """One CT image: identifiers, position, time tags and pixel data."""
        variant, geometry = self.variant, self.phantom.geometry
        ds = Dataset()
        for element in (*common, *series["attributes"]):   # copies: no element is shared
            ds.add(copy.copy(element))
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = instance_number
        z = geometry.origin[2] + slice_index * geometry.spacing[2]
        ds.ImagePositionPatient = [round(geometry.origin[0], 4), round(geometry.origin[1], 4),
                                   round(z, 4)]
        ds.SliceLocation = round(z, 4)
        if variant.time_source in ("both", "acquisition"):
            ds.AcquisitionTime = _tm(seconds)
        if variant.time_source in ("both", "content"):
            ds.ContentTime = _tm(seconds)
        if frame is not None:
            ds.AcquisitionNumber = frame + 1 if variant.acquisition_number == "per_frame" else 1
            ds.TemporalPositionIdentifier = frame + 1
            ds.NumberOfTemporalPositions = len(self.phantom.times)
        else:
            ds.AcquisitionNumber = 1
        if variant.rescale == "per_instance":
            slope = float(self.rng.choice([1.0, 0.5]))
            intercept = float(self.rng.choice([-1024.0, -1000.0]))
        else:
            slope, intercept = 1.0, -1024.0
        signed = variant.rescale == "fixed"
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        stored = _stored(hu_slice, slope, intercept, signed)

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = "STROKE_PHANTOM"
        syntax = TRANSFER_SYNTAXES[variant.transfer_syntax]
        if syntax.is_compressed:
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            ds.compress(syntax, stored, encoding_plugin=_ENCODING_PLUGIN.get(syntax, ""))
        else:
            meta.TransferSyntaxUID = syntax
            ds.file_meta = meta
            ds.PixelData = stored.tobytes()
        return ds

    def path(self, series_folder: str, instance_number: int) -> Path:
        if self.variant.file_names == "random":
            a, b = self.rng.integers(0, 256, size=2)
            name = "".join(self.rng.choice(list("0123456789ABCDEF"), size=16))
            return self.out_dir / f"{a:02X}" / f"{b:02X}" / name
        return self.out_dir / series_folder / f"IM_{instance_number:05d}.dcm"


def _series(number: int, description: str, image_type: list[str], kvp: float) -> dict:
    attributes = Dataset()
    attributes.SeriesInstanceUID = generate_uid()
    attributes.SeriesNumber = number
    attributes.SeriesDescription = description
    attributes.SeriesTime = _tm(START_SECONDS - (300.0 if number == 2 else 0.0))
    attributes.ImageType = image_type
    attributes.KVP = kvp
    attributes.XRayTubeCurrent = 100 if number == 4 else 250
    return {"attributes": attributes}


def write_dicom(phantom: Phantom, out_dir: Path, *,
                variant: DicomVariant | None = None) -> list[Path]:
    """Write the perfusion series (and optionally an NCCT series) under ``out_dir``.

    Returns the written files in write order. HU round-trip within 0.5 HU (slope 1) or 0.25 HU
    (slope 0.5), except air clipped at the intercept with unsigned storage.
    """
    variant = variant or DicomVariant()
    out_dir = Path(out_dir)
    writer = _SeriesWriter(phantom, out_dir, variant)
    common = writer.common()
    n_frames, n_slices = phantom.hu.shape[:2]
    jobs = [("perfusion", k, s) for k in range(n_frames) for s in range(n_slices)]
    if variant.extra_series:
        jobs += [("ncct", None, s) for s in range(n_slices)]
    if variant.shuffle:
        jobs = [jobs[i] for i in writer.rng.permutation(len(jobs))]
    series = {
        "perfusion": _series(4, SERIES_DESCRIPTION, ["ORIGINAL", "PRIMARY", "AXIAL"], 80.0),
        "ncct": _series(2, "NCCT HEAD (synthetic, research use)",
                        ["ORIGINAL", "PRIMARY", "AXIAL"], 120.0),
    }
    paths = []
    for folder, frame, s in jobs:
        if frame is None:
            number, seconds, hu_slice = s + 1, START_SECONDS - 300.0, phantom.hu[0, s]
        else:
            number = frame * n_slices + s + 1
            seconds = START_SECONDS + float(phantom.times[frame])
            hu_slice = phantom.hu[frame, s]
        ds = writer.instance(common, series[folder], hu_slice, s, number, seconds, frame)
        path = writer.path(folder, number)
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def read_hu(path: Path) -> tuple[pydicom.Dataset, np.ndarray]:
    """Read one written file back: the dataset and its HU (slope and intercept applied)."""
    ds = pydicom.dcmread(path)
    return ds, ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept)
