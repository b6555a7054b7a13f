"""The lesion masks as a DICOM Segmentation (highdicom, BINARY) referencing the source images.

Segments: 1 = ischaemic core (SCT "Infarct"), 2 = Tmax > 6 s (SCT "Ischemia"), both in the
category SCT "Morphologically abnormal structure", anatomic region brain, algorithm type
AUTOMATIC with the thresholds of the profile as algorithm parameters. The algorithm family is
a code of this project ("Thresholding of perfusion maps"): the masks are thresholds on
deconvolved maps with small clusters removed, which none of the DICOM families describes.

Geometry. The masks ``maps/core.nii.gz`` and ``maps/hypoperfusion.nii.gz`` lie on the acquisition
grid (arrays ``(z, y, x)`` from SimpleITK, ``x`` = column, ``y`` = row, LPS geometry). A CT
perfusion series holds every slice position once per time point; the segmentation references the
images of the first time point (earliest AcquisitionTime, else ContentTime, at each position).
Each mask slice ``z`` is matched to the source image whose ImagePositionPatient is the grid's
voxel ``(z, 0, 0)`` (within 0.05 mm) with the same orientation, pixel spacing and matrix; if any
slice has no such image the export stops with an InputError rather than mislabel frames.
Sources may be single-frame CT images or one Enhanced CT object per time point.

Empty segments. Every segment has a frame on every referenced slice (``omit_empty_frames=False``),
so a study without core has an all-zero core segment, consistent with the 0 mL in the report,
rather than a segment without frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from triage.base.dicom_header import PlaneHeader, read_header
from triage.base.errors import InputError, one_line
from triage.dicom_out.common import ExportContext, algorithm_version, private_code, with_identifier_defaults
from triage.report.folder import ResultFolder

INFARCT = Code("55641003", "SCT", "Infarct")
ISCHEMIA = Code("52674009", "SCT", "Ischemia")
THRESHOLDING = private_code("THRESHOLD", "Thresholding of perfusion maps")
ALGORITHM_NAME = "stroke-triage perfusion thresholds"
CORE_SEGMENT, HYPOPERFUSION_SEGMENT = 1, 2
CORE_RGB, HYPOPERFUSION_RGB = (255, 0, 255), (0, 230, 0)   # as in summary.png
POSITION_TOLERANCE_MM, COSINE_TOLERANCE, SPACING_TOLERANCE_MM = 0.05, 1e-3, 1e-3
SERIES_DESCRIPTION = "CTP core + Tmax>6s SEG (research use)"


@dataclass
class MaskGrid:
    """The masks of one result and their grid (``direction`` in SimpleITK order)."""

    core: np.ndarray            # (z, y, x) uint8 0/1
    hypoperfusion: np.ndarray   # (z, y, x) uint8 0/1
    slice_positions: np.ndarray  # (z, 3) LPS mm of voxel (z, 0, 0)
    direction: tuple[float, ...]
    spacing: tuple[float, float, float]


@dataclass
class ReferencedImages:
    """Source images of one time point for the mask slices.

    ``datasets`` are their headers (no pixel data): one per slice for single-frame images, or the
    one Enhanced CT object. ``frame_of_slice[z]`` is the source frame (0-based) of mask slice z.
    """

    datasets: list[Dataset]
    frame_of_slice: np.ndarray


def read_masks(folder: ResultFolder) -> MaskGrid:
    """The core and Tmax > 6 s masks of a result folder with their grid."""
    images = {}
    for name in ("core", "hypoperfusion"):
        path = folder.map_file(name)
        try:
            images[name] = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise InputError(f"cannot read {path.name}: {one_line(exc)}") from exc
    core, hypo = images["core"], images["hypoperfusion"]
    if (core.GetSize() != hypo.GetSize() or not np.allclose(core.GetOrigin(), hypo.GetOrigin())
            or not np.allclose(core.GetDirection(), hypo.GetDirection())):
        raise InputError("core.nii.gz and hypoperfusion.nii.gz are not on the same grid")
    positions = np.array([core.TransformIndexToPhysicalPoint((0, 0, z)) for z in range(core.GetSize()[2])])
    return MaskGrid(
        core=(sitk.GetArrayFromImage(core) != 0).astype(np.uint8),
        hypoperfusion=(sitk.GetArrayFromImage(hypo) != 0).astype(np.uint8),
        slice_positions=positions, direction=core.GetDirection(), spacing=core.GetSpacing())


def _time_key(plane: PlaneHeader) -> tuple[float, float, int]:
    time = plane.acquisition_time if plane.acquisition_time is not None else plane.content_time
    order = plane.order_index if plane.order_index is not None else 0
    return (float("inf") if time is None else time, order, plane.frame or 0)


def _fits_grid(plane: PlaneHeader, grid: MaskGrid) -> bool:
    """Same orientation, pixel spacing and matrix as the mask grid."""
    matrix = np.asarray(grid.direction).reshape(3, 3)
    if plane.orientation is None or plane.pixel_spacing is None:
        return False
    cosines_ok = np.allclose(plane.orientation, [*matrix[:, 0], *matrix[:, 1]], atol=COSINE_TOLERANCE)
    row_spacing, column_spacing = plane.pixel_spacing
    spacing_ok = np.allclose((column_spacing, row_spacing), grid.spacing[:2], atol=SPACING_TOLERANCE_MM)
    shape_ok = (plane.rows, plane.columns) == grid.core.shape[1:]
    return bool(cosines_ok and spacing_ok and shape_ok)


def reference_images(source_files: list[Path], series_uid: str, grid: MaskGrid) -> ReferencedImages:
    """The first-time-point source image of every mask slice (see the module docstring)."""
    planes = []
    for path in source_files:
        try:
            header = read_header(Path(path))
        except Exception:
            continue  # not an image of a series: cannot be referenced
        if header.series_uid == series_uid:
            planes += [p for p in header.planes if p.position is not None]
    if not planes:
        raise InputError(f"none of the {len(source_files)} source files belongs to series {series_uid}")
    positions = np.array([p.position for p in planes])
    chosen: list[PlaneHeader] = []
    for z, expected in enumerate(grid.slice_positions):
        near = np.flatnonzero(np.linalg.norm(positions - expected, axis=1) <= POSITION_TOLERANCE_MM)
        candidates = [planes[i] for i in near if _fits_grid(planes[i], grid)]
        if not candidates:
            where = ", ".join(f"{c:.2f}" for c in expected)
            raise InputError(f"no source image lies on mask slice {z + 1} (LPS {where} mm): "
                             "the maps do not match the source series geometry")
        chosen.append(min(candidates, key=_time_key))
    return _datasets_of(chosen)


def _datasets_of(chosen: list[PlaneHeader]) -> ReferencedImages:
    paths = list(dict.fromkeys(p.path for p in chosen))
    if all(p.frame is None for p in chosen):
        datasets = [with_identifier_defaults(pydicom.dcmread(p.path, stop_before_pixels=True)) for p in chosen]
        return ReferencedImages(datasets, np.arange(len(chosen)))
    if len(paths) == 1 and all(p.frame is not None for p in chosen):
        ds = with_identifier_defaults(pydicom.dcmread(paths[0], stop_before_pixels=True))
        frames = np.array([p.frame for p in chosen])
        if int(ds.get("NumberOfFrames", 0) or 0) == len(chosen) and len(set(frames)) == len(chosen):
            return ReferencedImages([ds], frames)
    raise InputError("the first time point of the source is spread over multi-frame objects or "
                     "shares one with other time points: a segmentation cannot reference it")


def _algorithm(result: dict) -> hd.AlgorithmIdentificationSequence:
    profile = result.get("profile") or {}
    return hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME, family=THRESHOLDING,
        version=algorithm_version(result),
        source="stroke-triage",
        parameters={str(k): str(v) for k, v in profile.items() if k not in ("name", "description")})


def segment_descriptions(result: dict, context: ExportContext) -> list[hd.seg.SegmentDescription]:
    """Segment 1 (core) and 2 (Tmax > 6 s) as the profile of ``result`` defines them."""
    profile = result.get("profile") or {}
    core_rule = f"rCBF<{float(profile.get('core_rcbf_below', 0.3)):.0%}"
    hypo_rule = f"Tmax>{float(profile.get('hypoperfusion_tmax_above_s', 6.0)):g}s"
    algorithm = _algorithm(result)
    specs = [(CORE_SEGMENT, f"Ischemic core ({core_rule})", INFARCT, CORE_RGB, "Ischemic core"),
             (HYPOPERFUSION_SEGMENT, f"Hypoperfusion ({hypo_rule})", ISCHEMIA, HYPOPERFUSION_RGB, "Hypoperfusion")]
    return [hd.seg.SegmentDescription(
        segment_number=number, segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=property_type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=context.uid("tracking", str(number)), tracking_id=tracking_id,
        anatomic_regions=[codes.SCT.Brain],
        display_color=hd.color.CIELabColor.from_rgb(*rgb),
    ) for number, label, property_type, rgb, tracking_id in specs]


def segmentation(grid: MaskGrid, images: ReferencedImages, result: dict,
                 context: ExportContext) -> hd.seg.Segmentation:
    """The BINARY segmentation of ``grid``'s masks on ``images``."""
    stacked = np.stack([grid.core, grid.hypoperfusion], axis=-1)       # (z, y, x, segment)
    frames = np.empty_like(stacked)
    frames[images.frame_of_slice] = stacked                             # source frame order
    series_uid, series_number = context.series("seg")
    return hd.seg.Segmentation(
        source_images=images.datasets,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(result, context),
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=context.uid("instance", "seg"),
        instance_number=1,
        omit_empty_frames=False,
        content_label="PERFUSION",
        content_description="Ischemic core and Tmax>6s, research use only",
        **context.equipment(SERIES_DESCRIPTION),
    )
