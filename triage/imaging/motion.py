"""Rigid head-motion correction of a perfusion series.

Frames that a linearised one-step estimate finds still (under STILL_SCREEN_MM) are left alone;
every other frame is registered to a reference frame with a rigid (Euler 3D) transform, mean
squares metric and regular-step gradient descent over a two-level pyramid, on a copy
downsampled in-plane to about REGISTRATION_PIXEL_MM with HU clipped to
[CLIP_HU_LOW, CLIP_HU_HIGH], so the skull and the head outline drive the fit rather than the
contrast bolus. Frames register in a thread pool (SimpleITK releases the GIL).

The displacement of a frame is the largest distance moved by a point of the brain surface
(head outline eroded by the scalp and skull thickness). Frames that moved more than
``exclude_above_mm``, or whose registration failed, are removed; frames that moved more than
``resample_above_mm`` are resampled onto the reference (linear), in place, one frame at a time.

Registration works in a local frame (mm along the x, y, z voxel axes, voxel [0, 0, 0] at the
origin); for a rigid motion this is equivalent to patient coordinates.

Limits: through-plane parameters (tilts, z shift) come from how the anatomy changes from slice
to slice, so with few thick slices they are less precise than in-plane ones (about 10-15 % on
the test head), and end slices padded with air after a z shift pull the z estimate.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from triage.base.errors import InputError
from triage.base.language import Text
from triage.imaging.masks import IN_PLANE
from triage.imaging.series import PerfusionSeries

# HU window for registration: air (-1000) reads -100, soft tissue 0-60, bone and enhancing
# vessels saturate at 150. The bolus then changes a small vessel volume by at most ~100 HU and
# tissue by 10-30 HU, while the skull keeps a 100-250 HU step all round the head.
CLIP_HU_LOW, CLIP_HU_HIGH = -100.0, 150.0
# In-plane pixel size (mm) of the registration copy; slices keep their thickness.
REGISTRATION_PIXEL_MM = 4.0
# Downsampled voxels above this (after clipping) belong to the head: the scalp and skull.
HEAD_MIN_CLIPPED_HU = -50.0
# Scalp plus skull thickness: the head outline eroded by this much approximates the brain surface.
SCALP_AND_SKULL_MM = 12.0
# Number of reference voxels (a fixed random set) the metric compares at each iteration.
METRIC_SAMPLES = 2000
# Correlation of a frame's registration copy with the reference's, before registration, below
# which the frame is not an image of the same head (blank or corrupt): the head outline and
# skull keep it near 1 under the bolus and above 0.6 after a 15 mm jerk.
MIN_FRAME_CORRELATION = 0.3
# A frame whose first-order (linearised) rigid motion estimate moves no brain-surface point
# more than this (mm) is taken as still and not registered: most frames of most series.
STILL_SCREEN_MM = 0.25
# Fewer kept frames than this share of the series: the acquisition cannot be analysed.
MIN_KEPT_SHARE = 0.5



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
        Lines for the result's warnings (failed registrations, removed frames).
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
    clipped = np.clip(frame[:, :ny_c, :nx_c], CLIP_HU_LOW, CLIP_HU_HIGH, dtype=np.float32)
    total = np.zeros((nz, ny_c // factor, nx_c // factor), np.float32)
    for dy in range(factor):  # strided sums: several times faster than a mean over two axes
        for dx in range(factor):
            total += clipped[:, dy::factor, dx::factor]
    return total * np.float32(1.0 / (factor * factor))


def _image(volume: np.ndarray, spacing: tuple, origin: tuple) -> sitk.Image:
    """SimpleITK image of a (z, y, x) array with spacing and origin in mm, identity direction."""
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _register(fixed: sitk.Image, moving: sitk.Image, centre: np.ndarray) -> sitk.Euler3DTransform | None:
    """Rigid transform mapping reference points into the moving frame, or None on failure."""
    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(1)
    method.SetMetricAsMeanSquares()
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetMetricUseMovingImageGradientFilter(False)
    method.SetMetricSamplingStrategy(method.RANDOM)
    share = METRIC_SAMPLES / fixed.GetNumberOfPixels()
    # The first level is shrunk 2x in each axis: same number of samples, 8 times the share.
    method.SetMetricSamplingPercentagePerLevel([min(1.0, 8.0 * share), min(1.0, share)], 1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,
        minStep=0.005,
        numberOfIterations=150,
        relaxationFactor=0.8,
        gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    # Smoothing the finest level too removes the pull of linear interpolation towards
    # grid-aligned poses (it biased 3 degree rotations by 5-15 % without it).
    method.SetSmoothingSigmasPerLevel([5.0, 3.0])  # mm
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


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays (NaN when one is constant)."""
    a = a - a.mean()
    b = b - b.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _first_order_model(fixed: np.ndarray, spacing: tuple, origin: tuple, centre: np.ndarray,
                       inside: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The linearised rigid model of ``fixed`` that :func:`_first_order_displacement_mm` fits:
    (smoothed fixed, column-scaled design, its normal matrix, the column scales).

    Models ``moving - fixed`` as ``-grad(fixed) . u`` with the rigid field
    ``u = w x (x - centre) + t``, plus an intensity offset and a brain-wide enhancement term
    (indicator of ``inside``) so the bolus is not read as motion.
    """
    sx, sy, sz = spacing
    smooth = ndimage.gaussian_filter(fixed, (0.5, 1.0, 1.0))
    gz, gy, gx = np.gradient(smooth, sz, sy, sx)
    grad = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1)
    zz, yy, xx = np.indices(fixed.shape)
    r = np.stack([xx.ravel() * sx, yy.ravel() * sy, zz.ravel() * sz], axis=1) + np.asarray(origin) - centre
    design = np.hstack([np.cross(r, grad), grad, np.ones((r.shape[0], 1)), inside.reshape(-1, 1)])
    scale = np.sqrt((design**2).sum(axis=0))
    scale[scale == 0] = 1.0
    design /= scale
    return smooth, design, design.T @ design, scale


def _first_order_displacement_mm(reference: MotionReference, moving: np.ndarray) -> float:
    """Displacement (mm) of the registration copy ``moving`` from one linearised least-squares
    step of the reference's first-order model (see :func:`_first_order_model`). Accurate for
    the sub-voxel motions it is used to screen; larger ones are registered properly anyway."""
    diff = (ndimage.gaussian_filter(moving, (0.5, 1.0, 1.0)) - reference.smooth).ravel()
    # Least squares by the normal equations (8 unknowns, ~10⁵ rows: a fraction of the cost of
    # an SVD-based solver).
    params = np.linalg.lstsq(reference.normal, reference.design.T @ diff, rcond=None)[0] / reference.scale
    omega, shift = params[0:3], params[3:6]
    field = np.cross(omega[None, :], reference.points - reference.centre) + shift[None, :]
    return float(np.sqrt((field**2).sum(axis=1)).max())


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
    ahead: MotionAhead | None = None,
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
    ahead : MotionAhead, optional
        The reference and the estimates of some frames, made before (as the frames arrived)
        by :func:`motion_reference` and :func:`estimate_frame` on these very frames; the
        others are estimated here. The result is the same as without it.

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
    spacing = series.geometry.spacing
    if ahead is not None and ahead.reference_frame == reference_frame:
        reference, known = ahead.reference, ahead.frames
    else:
        reference, known = motion_reference(data[reference_frame], spacing), {}
    others = [i for i in range(n_frames) if i != reference_frame]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        missing = [i for i in others if i not in known]
        # estimate_frame in two steps: the screen (BLAS) here, the registrations on the pool
        screened = [_screened(reference, data[i]) for i in missing]
        estimates = {**known, **dict(zip(missing, pool.map(lambda s: _registered(reference, *s), screened)))}
        displacement = np.zeros(n_frames)
        for index in others:
            estimate = estimates[index]
            if not estimate.registered:
                displacement[index] = estimate.screened_mm
            elif estimate.transform is None:
                displacement[index] = np.nan
            else:
                displacement[index] = _displacement_mm(estimate.transform, reference.points)
        failed = [i for i in others if estimates[i].registered and estimates[i].transform is None]
        excluded = sorted(failed + [i for i in others if displacement[i] > exclude_above_mm])
        kept = [i for i in range(n_frames) if i not in excluded]
        if len(kept) < MIN_KEPT_SHARE * n_frames:
            raise InputError(
                f"{len(excluded)} of {n_frames} frames moved more than {exclude_above_mm:g} mm "
                "or could not be registered: too few left to analyse"
            )
        corrected = [i for i in kept if i in estimates and estimates[i].registered and displacement[i] > resample_above_mm]
        list(pool.map(lambda index: _resample_in_place(data, index, estimates[index].transform, spacing), corrected))
    _move_kept_forward(data, kept)

    registered = np.isfinite(displacement)
    warnings = _exclusion_warnings(displacement, failed, excluded, exclude_above_mm)
    report = MotionReport(displacement, float(displacement[registered].max()), excluded, corrected, warnings)
    corrected_series = dataclasses.replace(
        series,
        data=data if len(kept) == n_frames else data[: len(kept)],
        times=series.times[kept],
    )
    return corrected_series, report


@dataclass(frozen=True)
class MotionReference:
    """The reference frame as registration sees it (all lengths in mm, local frame).

    factor : int
        In-plane downsampling factor of the registration copies.
    spacing, origin : tuple of float
        (x, y, z) voxel size and origin of a registration copy (origin at the centre of the
        first block of ``factor`` x ``factor`` pixels).
    array : ndarray (z, y, x) float32
        Downsampled reference, HU clipped to [CLIP_HU_LOW, CLIP_HU_HIGH].
    image : sitk.Image
        ``array`` cropped to the head's bounding box (plus 2 voxels), the fixed image.
    brain : ndarray (z, y, x) bool
        Head outline eroded by SCALP_AND_SKULL_MM in-plane (the brain, approximately).
    points : ndarray (n, 3)
        Brain-surface points (x, y, z), where displacement is measured.
    centre : ndarray (3,)
        Centre of the head (x, y, z), the centre of rotation.
    smooth, design, normal, scale : ndarray
        The first-order motion model of ``array`` (see :func:`_first_order_model`).
    """

    factor: int
    spacing: tuple
    origin: tuple
    array: np.ndarray
    image: sitk.Image
    brain: np.ndarray
    points: np.ndarray
    centre: np.ndarray
    smooth: np.ndarray
    design: np.ndarray
    normal: np.ndarray
    scale: np.ndarray


def motion_reference(frame: np.ndarray, spacing: tuple[float, float, float]) -> MotionReference:
    """The reference ``frame`` (z, y, x, HU; voxel ``spacing`` x, y, z in mm) as
    :func:`estimate_frame` and :func:`correct_motion` use it: downsampled, with its head,
    brain surface, centre and first-order motion model.

    Raises
    ------
    InputError
        No head (nothing above HEAD_MIN_CLIPPED_HU) in the reference frame.
    """
    sx, sy, sz = spacing
    factor = max(1, int(round(REGISTRATION_PIXEL_MM / max(sx, sy))))
    small_spacing = (sx * factor, sy * factor, sz)
    small_origin = (sx * (factor - 1) / 2.0, sy * (factor - 1) / 2.0, 0.0)  # block centres
    fixed_array = _downsample(frame, factor)
    head = ndimage.binary_fill_holes(fixed_array > HEAD_MIN_CLIPPED_HU)
    if not head.any():
        raise InputError("motion correction found no head in the reference frame")
    depth_px = max(1, int(round(SCALP_AND_SKULL_MM / small_spacing[0])))
    brain = ndimage.binary_erosion(head, IN_PLANE, iterations=depth_px)
    envelope = brain if brain.any() else head
    surface = envelope & ~ndimage.binary_erosion(envelope)
    scale = np.array(small_spacing)
    points = np.argwhere(surface)[:, ::-1] * scale + np.array(small_origin)
    centre = np.argwhere(head)[:, ::-1].mean(axis=0) * scale + np.array(small_origin)
    head_box = ndimage.find_objects(head.astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in head_box)
    box_origin = tuple(o + b.start * d for o, b, d in zip(small_origin, box[::-1], small_spacing))
    fixed = _image(np.ascontiguousarray(fixed_array[box]), small_spacing, box_origin)
    model = _first_order_model(fixed_array, small_spacing, small_origin, centre, brain)
    return MotionReference(factor, small_spacing, small_origin, fixed_array, fixed, brain, points, centre,
                                  *model)


@dataclass(frozen=True)
class FrameMotion:
    """How one frame moved relative to the reference (:func:`estimate_frame`).

    screened_mm : float
        First-order displacement (mm) of the brain surface.
    registered : bool
        Whether the frame was registered: moved more than STILL_SCREEN_MM, or unlike the
        reference (blank, corrupt).
    transform : sitk.Euler3DTransform or None
        Rigid transform mapping reference points into the frame, when registered and the
        registration worked (None: still, or failed when ``registered``).
    """

    screened_mm: float
    registered: bool
    transform: sitk.Euler3DTransform | None


@dataclass
class MotionAhead:
    """Motion estimates made before :func:`correct_motion`: the reference made of frame
    ``reference_frame`` by :func:`motion_reference`, and :class:`FrameMotion` by frame index."""

    reference_frame: int
    reference: MotionReference
    frames: dict[int, FrameMotion] = field(default_factory=dict)


def estimate_frame(reference: MotionReference, frame: np.ndarray) -> FrameMotion:
    """Screen ``frame`` (z, y, x, HU) for motion against ``reference`` and register it when it
    moved or is unlike the reference; a pure function of the two, so an estimate made as the
    frame arrived serves :func:`correct_motion` later."""
    return _registered(reference, *_screened(reference, frame))


def _screened(reference: MotionReference, frame: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """The registration copy of ``frame``, its first-order displacement (mm) and whether it is
    like the reference. NumPy's linear algebra: run on one thread at a time."""
    small = _downsample(frame, reference.factor)
    like_reference = _correlation(reference.array, small) >= MIN_FRAME_CORRELATION
    return small, _first_order_displacement_mm(reference, small), like_reference


def _registered(reference: MotionReference, small: np.ndarray, screened: float, like_reference: bool) -> FrameMotion:
    """The :class:`FrameMotion` of a screened frame, registered when needed (SimpleITK only:
    safe on a thread pool)."""
    if screened <= STILL_SCREEN_MM and like_reference:
        return FrameMotion(screened, False, None)
    if not like_reference:
        return FrameMotion(screened, True, None)
    transform = _register(reference.image, _image(small, reference.spacing, reference.origin), reference.centre)
    return FrameMotion(screened, True, transform)


def _move_kept_forward(data: np.ndarray, kept: list[int]) -> None:
    """Copy the kept frames (indices, increasing) of ``data`` (t, z, y, x) to its first
    ``len(kept)`` positions, over the removed ones, in place."""
    for position, index in enumerate(kept):
        if position != index:
            data[position] = data[index]


def _exclusion_warnings(
    displacement: np.ndarray, failed: list[int], excluded: list[int], exclude_above_mm: float
) -> list[str]:
    """Warnings for the frames removed: failed registrations, and frames that moved more than
    ``exclude_above_mm`` (with the largest such ``displacement``, mm)."""
    warnings = []
    if failed:
        warnings.append(Text("motion.registration_failed", frames=failed))
    moved_out = [i for i in excluded if i not in failed]
    if moved_out:
        warnings.append(Text("motion.moved_out", frames=moved_out, limit_mm=exclude_above_mm,
                             max_mm=displacement[moved_out].max()))
    return warnings


def _resample_in_place(
    data: np.ndarray, index: int, transform: sitk.Euler3DTransform, spacing: tuple[float, float, float]
) -> None:
    """Resample frame ``index`` of ``data`` onto the reference grid and write it back.

    Points that map outside the frame take the nearest edge value (a slice moved out of the
    field of view repeats its neighbour rather than turning into air).
    """
    image = _image(np.ascontiguousarray(data[index], dtype=np.float32), spacing, (0.0, 0.0, 0.0))
    resampler = sitk.ResampleImageFilter()
    resampler.SetNumberOfThreads(1)
    resampler.SetReferenceImage(image)
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetUseNearestNeighborExtrapolator(True)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    resampler.SetTransform(transform)
    data[index] = sitk.GetArrayViewFromImage(resampler.Execute(image))
