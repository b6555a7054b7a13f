"""Rigid head-motion correction of a perfusion series.

Every frame is registered to a reference frame with a rigid (Euler 3D) transform on a
downsampled copy whose HU are clipped to [CLIP_HU_LOW, CLIP_HU_HIGH]: the skull and the head
outline drive the fit, the contrast bolus in vessels and tissue can change by at most a few
hundred HU in a small volume. Displacement of a frame is the largest distance moved by a point
of the brain surface (head outline eroded by the scalp and skull thickness). Frames that moved more than ``exclude_above_mm`` (or whose registration
failed) are removed; frames that moved more than ``resample_above_mm`` are resampled onto the
reference, in place, one frame at a time.

Registration works in a local frame (mm along the x, y, z voxel axes, voxel [0, 0, 0] at the
origin); for a rigid motion this is equivalent to patient coordinates.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from triage.errors import InputError
from triage.series import PerfusionSeries

# HU window for registration: air (-1000) reads -100, soft tissue 0-60, bone and enhancing
# vessels saturate at 300, so arterial enhancement of 300-500 HU cannot outweigh the skull.
CLIP_HU_LOW, CLIP_HU_HIGH = -100.0, 150.0
# In-plane pixel size (mm) of the registration copy; slices keep their thickness.
REGISTRATION_PIXEL_MM = 4.0
# Downsampled voxels above this (after clipping) belong to the head: the scalp and skull.
HEAD_MIN_CLIPPED_HU = -50.0
# Scalp plus skull thickness: the head outline eroded by this much approximates the brain surface.
SCALP_AND_SKULL_MM = 12.0
# Number of reference voxels (a fixed random set) the metric compares at each iteration.
METRIC_SAMPLES = 3000
# Fewer kept frames than this share of the series: the acquisition cannot be analysed.
MIN_KEPT_SHARE = 0.5

_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


@dataclass
class MotionReport:
    """What motion correction found and did.

    displacement_mm : float (t,)
        Largest displacement of a brain-surface point of each frame relative to the reference
        frame, in mm, before correction (0 for the reference; NaN where registration failed).
    max_displacement_mm : float
        Maximum of ``displacement_mm`` over the frames that registered.
    excluded_frames : list of int
        Indices (in the input series) of the frames removed.
    corrected_frames : list of int
        Indices (in the input series) of the frames resampled onto the reference.
    warnings : list of str
        Lines for the result's warnings.
    """

    displacement_mm: np.ndarray
    max_displacement_mm: float
    excluded_frames: list[int] = field(default_factory=list)
    corrected_frames: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _downsample(frame: np.ndarray, factor: int) -> np.ndarray:
    """Clip to the registration window and average ``factor`` x ``factor`` pixel blocks in-plane."""
    nz, ny, nx = frame.shape
    ny_c, nx_c = ny // factor * factor, nx // factor * factor
    clipped = np.clip(frame[:, :ny_c, :nx_c], CLIP_HU_LOW, CLIP_HU_HIGH)
    return clipped.reshape(nz, ny_c // factor, factor, nx_c // factor, factor).mean(axis=(2, 4), dtype=np.float32)


def _image(volume: np.ndarray, spacing: tuple[float, float, float], origin: tuple[float, float, float]) -> sitk.Image:
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _register(fixed: sitk.Image, moving: sitk.Image, centre: np.ndarray) -> sitk.Euler3DTransform | None:
    """Rigid transform mapping reference points to the moving frame, or None on failure."""
    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(1)
    method.SetMetricAsMeanSquares()
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetMetricUseMovingImageGradientFilter(False)
    method.SetMetricSamplingStrategy(method.RANDOM)
    share = METRIC_SAMPLES / fixed.GetNumberOfPixels()
    method.SetMetricSamplingPercentagePerLevel([min(1.0, 8.0 * share), min(1.0, share)], 1)  # level 1 is shrunk 2x
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=0.005, numberOfIterations=150, relaxationFactor=0.85, gradientMagnitudeTolerance=1e-8
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([5.0, 3.0])  # mm; smoothing the finest level too avoids the pull of linear interpolation towards grid-aligned poses
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    initial = sitk.Euler3DTransform()
    initial.SetCenter(tuple(float(c) for c in centre))
    method.SetInitialTransform(initial, inPlace=True)
    try:
        method.Execute(fixed, moving)
    except RuntimeError:
        return None
    if not np.all(np.isfinite(initial.GetParameters())):
        return None
    return initial


def _displacement_mm(transform: sitk.Euler3DTransform, points: np.ndarray) -> float:
    """Largest distance between ``points`` (n, 3 in mm) and their images under ``transform``."""
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    centre = np.array(transform.GetCenter())
    moved = (points - centre) @ matrix.T + centre + np.array(transform.GetTranslation())
    return float(np.sqrt(((moved - points) ** 2).sum(axis=1)).max())


def correct_motion(
    series: PerfusionSeries,
    *,
    reference_frame: int = 0,
    exclude_above_mm: float = 10.0,
    resample_above_mm: float = 0.3,
) -> tuple[PerfusionSeries, MotionReport]:
    """Register every frame rigidly to the reference frame and realign or drop moved frames.

    ``series.data`` is modified in place (realigned frames are written back, kept frames
    are moved forward over excluded ones); the returned series holds a view of it.

    Parameters
    ----------
    series : PerfusionSeries
        Data (t, z, y, x) in HU.
    reference_frame : int
        Frame the others are aligned to (normally a pre-contrast frame).
    exclude_above_mm : float
        Frames whose displacement exceeds this are removed from data and times.
    resample_above_mm : float
        Only frames displaced more than this are resampled (linear interpolation).

    Returns
    -------
    (PerfusionSeries, MotionReport)
    """
    data = series.data
    if data.ndim != 4:
        raise InputError(f"perfusion data must be 4D (t, z, y, x), got shape {data.shape}")
    n_frames = data.shape[0]
    if not 0 <= reference_frame < n_frames:
        raise InputError(f"reference frame {reference_frame} outside the series of {n_frames} frames")
    sx, sy, sz = series.geometry.spacing
    factor = max(1, int(round(REGISTRATION_PIXEL_MM / max(sx, sy))))
    small_spacing = (sx * factor, sy * factor, sz)
    small_origin = (sx * (factor - 1) / 2.0, sy * (factor - 1) / 2.0, 0.0)

    fixed_array = _downsample(data[reference_frame], factor)
    head = ndimage.binary_fill_holes(fixed_array > HEAD_MIN_CLIPPED_HU)
    if not head.any():
        raise InputError("motion correction found no head in the reference frame")
    brain = ndimage.binary_erosion(head, _IN_PLANE, iterations=max(1, int(round(SCALP_AND_SKULL_MM / small_spacing[0]))))
    envelope = brain if brain.any() else head
    surface = envelope & ~ndimage.binary_erosion(envelope)
    scale = np.array(small_spacing)
    points = np.argwhere(surface)[:, ::-1] * scale + np.array(small_origin)
    centre = np.argwhere(head)[:, ::-1].mean(axis=0) * scale + np.array(small_origin)
    box = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in ndimage.find_objects(head.astype(np.uint8))[0])
    box_origin = tuple(o + b.start * d for o, b, d in zip(small_origin, box[::-1], small_spacing))
    fixed = _image(np.ascontiguousarray(fixed_array[box]), small_spacing, box_origin)

    def register(index: int) -> sitk.Euler3DTransform | None:
        moving = _image(_downsample(data[index], factor), small_spacing, small_origin)
        return _register(fixed, moving, centre)

    others = [i for i in range(n_frames) if i != reference_frame]
    workers = max(1, min(len(others), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        transforms = dict(zip(others, pool.map(register, others)))

    displacement = np.zeros(n_frames)
    for index, transform in transforms.items():
        displacement[index] = np.nan if transform is None else _displacement_mm(transform, points)
    failed = [i for i, t in transforms.items() if t is None]
    excluded = sorted(failed + [i for i in others if displacement[i] > exclude_above_mm])
    corrected = [i for i in others if i not in excluded and displacement[i] > resample_above_mm]
    if corrected:
        _resample_in_place(data, corrected, transforms, (sx, sy, sz))

    kept = [i for i in range(n_frames) if i not in excluded]
    if len(kept) < MIN_KEPT_SHARE * n_frames:
        raise InputError(f"{len(excluded)} of {n_frames} frames moved more than {exclude_above_mm:g} mm")
    for position, index in enumerate(kept):
        if position != index:
            data[position] = data[index]

    warnings = []
    registered = np.isfinite(displacement)
    max_displacement = float(displacement[registered].max())
    if failed:
        warnings.append(f"motion: registration failed for frames {failed}; they were removed")
    moved_out = [i for i in excluded if i not in failed]
    if moved_out:
        warnings.append(
            f"motion: frames {moved_out} moved more than {exclude_above_mm:g} mm "
            f"(up to {displacement[moved_out].max():.1f} mm) and were removed"
        )
    if corrected:
        warnings.append(
            f"motion: {len(corrected)} frames realigned (largest displacement {displacement[corrected].max():.1f} mm)"
        )
    report = MotionReport(displacement, max_displacement, excluded, corrected, warnings)
    corrected_series = dataclasses.replace(
        series, data=data[: len(kept)], times=series.times[kept], warnings=[*series.warnings, *warnings]
    )
    return corrected_series, report


def _resample_in_place(
    data: np.ndarray,
    frames: list[int],
    transforms: dict[int, sitk.Euler3DTransform],
    spacing: tuple[float, float, float],
) -> None:
    """Resample ``frames`` of ``data`` onto the reference grid, writing each back into ``data``."""
    resampler = sitk.ResampleImageFilter()
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetUseNearestNeighborExtrapolator(True)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    for index in frames:
        image = _image(np.ascontiguousarray(data[index], dtype=np.float32), spacing, (0.0, 0.0, 0.0))
        resampler.SetReferenceImage(image)
        resampler.SetTransform(transforms[index])
        data[index] = sitk.GetArrayViewFromImage(resampler.Execute(image))
