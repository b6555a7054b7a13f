"""Small synthetic CT DICOM files for tests and benchmarks.

Every function writes real Part 10 files with pydicom, so the reader under test sees the same
bytes a scanner export would give. Geometry follows DICOM: ``orientation`` is
ImageOrientationPatient (row direction, then column direction), ``position`` the centre of the
first pixel in LPS mm, ``pixel_spacing`` is (row spacing, column spacing) in mm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def format_tm(seconds_of_day: float) -> str:
    """DICOM TM string ``HHMMSS.FFFFFF`` for a time of day in s (wrapped at midnight)."""
    s = seconds_of_day % 86400.0
    hours, rest = divmod(s, 3600.0)
    minutes, secs = divmod(rest, 60.0)
    return f"{int(hours):02d}{int(minutes):02d}{secs:09.6f}"


def _base_dataset(sop_class: str, sop_uid: str, study_uid: str, series_uid: str,
                  modality: str, description: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.SeriesDescription = description
    ds.StudyDescription = "CT HEAD STROKE"
    ds.PatientID = "TEST001"
    ds.PatientName = "Test^Phantom"
    ds.PatientAge = "072Y"
    ds.AccessionNumber = "ACC42"
    ds.StudyDate = "20260101"
    ds.Manufacturer = "Synthetic"
    ds.KVP = 80
    return ds


def _set_pixels(ds: Dataset, stored: np.ndarray, transfer_syntax: str) -> None:
    """Put ``stored`` (rows, cols) or (frames, rows, cols) integers into ``ds``."""
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    if transfer_syntax in (RLELossless, JPEG2000Lossless):
        ds.compress(transfer_syntax, stored)
    else:
        ds.file_meta.TransferSyntaxUID = transfer_syntax


def ct_instance(path: Path, stored: np.ndarray, *, position, time_s: float | None,
                study_uid: str, series_uid: str, sop_uid: str | None = None,
                orientation=AXIAL, pixel_spacing=(0.5, 0.5), slope: float = 1.0,
                intercept: float = -1024.0, time_tag: str = "AcquisitionTime",
                modality: str = "CT", description: str = "CT PERFUSION",
                acquisition_number: int | None = None,
                transfer_syntax: str = ExplicitVRLittleEndian,
                with_pixels: bool = True) -> Path:
    """Write one single-frame CT image.

    Parameters
    ----------
    stored : ndarray, int16 or uint16, (rows, cols)
        Stored values; HU = stored * slope + intercept.
    time_s : float or None
        Time of day in s written to ``time_tag`` (None: no time tag).
    """
    sop_uid = sop_uid or generate_uid()
    ds = _base_dataset(CTImageStorage, sop_uid, study_uid, series_uid, modality, description)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.SliceThickness = 5.0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if time_s is not None:
        setattr(ds, time_tag, format_tm(time_s))
    if acquisition_number is not None:
        ds.AcquisitionNumber = acquisition_number
    if with_pixels:
        _set_pixels(ds, stored, transfer_syntax)
    else:
        ds.Rows, ds.Columns = stored.shape
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def slice_positions(n_slices: int, slice_spacing: float = 5.0, orientation=AXIAL,
                    first=(-16.0, -16.0, 0.0)) -> np.ndarray:
    """Positions (n_slices, 3) of slices stacked along the normal of ``orientation``."""
    normal = np.cross(orientation[:3], orientation[3:])
    return np.asarray(first, float) + np.arange(n_slices)[:, None] * slice_spacing * normal


def write_perfusion_series(root: Path, hu: np.ndarray, times: np.ndarray, *,
                           start_s: float = 36000.0, slice_spacing: float = 5.0,
                           orientation=AXIAL, pixel_spacing=(0.5, 0.5),
                           first=(-16.0, -16.0, 0.0), slopes: np.ndarray | None = None,
                           study_uid: str | None = None, series_uid: str | None = None,
                           name=lambda t, z: f"t{t:03d}_z{z:03d}.dcm",
                           **instance_kwargs) -> tuple[list[Path], np.ndarray, str]:
    """Write ``hu`` (t, z, y, x) as one classic CT series, one file per (t, z).

    Stored values are ``round((hu + 1024) / slope)`` so the HU are exact when ``hu`` is integer
    and ``slope`` is 1 (``slopes`` (t, z) sets a per-instance slope). Returns the paths, the
    SOPInstanceUIDs (t, z) and the series UID.
    """
    n_t, n_z = hu.shape[:2]
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    positions = slice_positions(n_z, slice_spacing, orientation, first)
    slopes = np.ones((n_t, n_z)) if slopes is None else slopes
    paths, uids = [], np.empty((n_t, n_z), dtype=object)
    for t in range(n_t):
        for z in range(n_z):
            stored = np.round((hu[t, z] + 1024.0) / slopes[t, z]).astype(np.int16)
            uids[t, z] = generate_uid()
            paths.append(ct_instance(
                root / name(t, z), stored, position=positions[z], time_s=start_s + times[t],
                study_uid=study_uid, series_uid=series_uid, sop_uid=uids[t, z],
                orientation=orientation, pixel_spacing=pixel_spacing, slope=float(slopes[t, z]),
                **instance_kwargs))
    return paths, uids.astype(str), series_uid


def enhanced_ct_frame_object(path: Path, stored: np.ndarray, *, positions, time_s: float,
                             temporal_index: int, study_uid: str, series_uid: str,
                             orientation=AXIAL, pixel_spacing=(0.5, 0.5), slope: float = 1.0,
                             intercept: float = -1024.0) -> Path:
    """Write one Enhanced CT object holding every slice (z, rows, cols) of one time point."""
    from pydicom.sequence import Sequence

    ds = _base_dataset(EnhancedCTImageStorage, generate_uid(), study_uid, series_uid, "CT",
                       "CT PERFUSION ENHANCED")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.AcquisitionDateTime = "20260101" + format_tm(time_s)
    ds.NumberOfFrames = stored.shape[0]
    measures = Dataset()
    measures.PixelSpacing = [float(v) for v in pixel_spacing]
    measures.SliceThickness = 5.0
    plane_orientation = Dataset()
    plane_orientation.ImageOrientationPatient = [float(v) for v in orientation]
    transform = Dataset()
    transform.RescaleSlope = slope
    transform.RescaleIntercept = intercept
    transform.RescaleType = "HU"
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([plane_orientation])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for position in positions:
        plane = Dataset()
        plane.ImagePositionPatient = [float(v) for v in position]
        content = Dataset()
        content.FrameAcquisitionDateTime = ds.AcquisitionDateTime
        content.TemporalPositionIndex = temporal_index
        item = Dataset()
        item.PlanePositionSequence = Sequence([plane])
        item.FrameContentSequence = Sequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    _set_pixels(ds, stored, ExplicitVRLittleEndian)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


COMPRESSED = {"rle": RLELossless, "j2k": JPEG2000Lossless}
TRANSFER_SYNTAXES = dict(COMPRESSED, implicit=ImplicitVRLittleEndian)
