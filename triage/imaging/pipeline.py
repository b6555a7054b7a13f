"""The imaging pipeline: one assembled CTP series in, maps, lesion volumes and quality out.

Each stage is a module with a plain interface (``triage.imaging.motion``, ``triage.imaging.masks``,
``triage.imaging.bolus``, ``triage.imaging.aif``, ``triage.imaging.denoise``, ``models``, ``triage.imaging.lesion``,
``triage.imaging.eligibility``); this module runs them in order, times them, and gathers what the
reader of the result must know about the input's quality. The model is picked by name from
``models.MODELS`` and given the same guide (``models.FitGuide``) whichever it is.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import numpy as np

from models import FitGuide, PerfusionFit, make_model
from models.profiles import ThresholdProfile
from triage.base.errors import InputError
from triage.base.language import Text
from triage.imaging.aif import ArterialInput, select_arterial_input
from triage.imaging.bolus import BolusTiming, analyse_bolus, baseline_image
from triage.imaging.denoise import denoise_curves, geometric_smooth_within_mask, median_within_mask, temporal_basis
from triage.imaging.early import EarlyStages
from triage.imaging.eligibility import Eligibility, assess
from triage.imaging.lesion import LesionResult, segment_lesion
from triage.imaging.masks import TissueMasks, segment_brain, segment_tissue
from triage.imaging.motion import MotionReport, correct_motion
from triage.imaging.series import PerfusionSeries
from triage.settings import AnalysisSettings

MAP_NAMES = ("cbf", "cbv", "mtt", "tmax", "ttp")
MOTION_WARN_MM = 2.0  # displacement worth telling the reader even when corrected
MOTION_LIMITED_MM = 5.0  # above this, registration residuals and through-plane motion limit trust
MIN_FRAMES = 10
# Most of a stroke patient's brain is normal, so the median Tmax of the parenchyma lies near
# the AIF's arrival; outside this range (s) the AIF or the timing is wrong, not the brain.
PLAUSIBLE_MEDIAN_TMAX_S = (-1.5, 4.0)
# Tmax decides the hypoperfused volume: a median within parenchyma (in-plane px, slices) removes
# isolated noisy estimates without moving the edges of lesion-sized regions.
TMAX_MEDIAN_PX, TMAX_MEDIAN_SLICES = 5, 3
# The guide curves are smoothed over 12-14 mm: the model fits them on an in-plane lattice of
# about this pitch (mm) and each voxel takes its lattice neighbour's fit (see guide_lattice).
GUIDE_LATTICE_MM = 2.0

Progress = Callable[[str], None]


@dataclass
class Analysis:
    """Everything one series' analysis produced (maps on ``series.geometry``)."""

    series: PerfusionSeries
    baseline: np.ndarray
    peak_enhancement: np.ndarray
    tissue_curve: np.ndarray
    maps: dict[str, np.ndarray]
    tissue: TissueMasks
    lesion: LesionResult
    arterial: ArterialInput
    bolus: BolusTiming
    motion: MotionReport
    eligibility: Eligibility
    profile: ThresholdProfile
    settings: AnalysisSettings
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    implausible: list[str] = field(default_factory=list)

    @property
    def quality_limited(self) -> bool:
        """True when the input limits trust in the numbers: a truncated bolus, an AIF warning,
        frames removed for motion, motion beyond MOTION_LIMITED_MM, implausible maps, or time
        points left out at the end of an aborted scan."""
        return bool(
            self.implausible
            or self.series.frames_left_out
            or self.bolus.truncated
            or self.arterial.quality.get("warnings")
            or self.motion.excluded_frames
            or self.motion.max_displacement_mm > MOTION_LIMITED_MM
        )


class _Stages:
    """Times named stages and reports them to ``progress``."""

    def __init__(self, progress: Progress | None):
        self.progress = progress or (lambda message: None)
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        self.progress(name)
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 3)


def peak_enhancement(enhancement: np.ndarray, motion: MotionReport) -> np.ndarray:
    """Maximum enhancement (HU) over the frames that were not resampled for motion.

    Interpolating a moved frame smears the skull and vessel edges into the brain, which would
    look like strongly enhancing vessels; frames left as acquired do not. With too few such
    frames, every frame is used.
    """
    kept = [i for i in range(len(motion.displacement_mm)) if i not in motion.excluded_frames]
    as_acquired = [position for position, i in enumerate(kept) if i not in motion.corrected_frames]
    if len(as_acquired) < MIN_FRAMES:
        as_acquired = range(len(kept))
    peak = enhancement[as_acquired[0]].copy()
    for position in as_acquired[1:]:
        np.maximum(peak, enhancement[position], out=peak)
    return peak


def plausibility_warnings(tmax: np.ndarray, parenchyma: np.ndarray) -> list[str]:
    """Warnings when the maps cannot be right whatever the patient (e.g. a wrong AIF)."""
    median = float(np.median(tmax[parenchyma])) if parenchyma.any() else float("nan")
    low, high = PLAUSIBLE_MEDIAN_TMAX_S
    if not low <= median <= high:
        return [Text("pipeline.implausible", median_s=median, low=low, high=high)]
    return []


def analyse(
    series: PerfusionSeries,
    settings: AnalysisSettings,
    profile: ThresholdProfile,
    *,
    age: float | None = None,
    nihss: int | None = None,
    aif_zyx: tuple[int, int, int] | None = None,
    progress: Progress | None = None,
    early: EarlyStages | None = None,
) -> Analysis:
    """Run the pipeline on ``series``; its ``data`` array is reused in place as enhancement.

    ``age`` (years) overrides the DICOM Patient's Age; ``aif_zyx`` forces the AIF location on
    the processing grid. ``early``: what ran while the images arrived; the stages take from it
    only what was computed on these very frames (the result is the same without it).
    """
    stages = _Stages(progress)
    if series.data.shape[0] < MIN_FRAMES:
        raise InputError(f"only {series.data.shape[0]} time points; at least {MIN_FRAMES} are needed")

    with stages.stage("motion correction"):
        ahead, first_brain = early.matching(series.data, series.geometry) if early is not None else (None, None)
        series, motion = correct_motion(series, exclude_above_mm=settings.motion_exclude_mm, ahead=ahead)
    with stages.stage("bolus timing"):
        if first_brain is None:  # the reference frame, left as it was by motion correction
            first_brain = segment_brain(series.data[0], series.geometry)
        bolus = analyse_bolus(series.data, series.times, first_brain)
        baseline = baseline_image(series.data, bolus.n_baseline)
    with stages.stage("tissue masks"):
        enhancement = series.data
        enhancement -= baseline
        peak = peak_enhancement(enhancement, motion)
        tissue = segment_tissue(baseline, series.geometry, peak)
        tissue_curve = np.array([frame[tissue.parenchyma].mean() for frame in enhancement], np.float32)
    with stages.stage("AIF and VOF"):
        arterial = select_arterial_input(
            enhancement, series.times, tissue.brain, series.geometry, override_zyx=aif_zyx, peak=peak
        )
    with stages.stage("denoising"):
        guide = fit_guide(enhancement, tissue.parenchyma, series, settings, baseline)
    with stages.stage("deconvolution"):
        fit = make_model(settings.model, arterial.aif, series.times).fit(enhancement, tissue.parenchyma, guide=guide)
        del guide
        maps = perfusion_maps(fit, tissue.parenchyma)
    with stages.stage("lesion"):
        lesion = segment_lesion(maps["cbf"], maps["tmax"], tissue.parenchyma, tissue.brain, series.geometry, profile)
        eligibility = assess(
            lesion.volumes["core_ml"],
            lesion.volumes["tmax6_ml"],
            age=age if age is not None else series.patient_age,
            nihss=nihss,
        )

    implausible = plausibility_warnings(maps["tmax"], tissue.parenchyma)
    return Analysis(
        series=series,
        baseline=baseline,
        peak_enhancement=peak,
        tissue_curve=tissue_curve,
        maps=maps,
        tissue=tissue,
        lesion=lesion,
        arterial=arterial,
        bolus=bolus,
        motion=motion,
        eligibility=eligibility,
        profile=profile,
        settings=settings,
        warnings=reader_warnings(series, motion, bolus, arterial, lesion, implausible),
        implausible=implausible,
        timings=stages.timings,
    )


def fit_guide(
    enhancement: np.ndarray, parenchyma: np.ndarray, series: PerfusionSeries, settings: AnalysisSettings,
    baseline: np.ndarray | None = None,
) -> FitGuide | None:
    """The spatial guide offered to the model (each model uses or ignores it).

    ``mtt_curves``: the parenchyma's enhancement (ΔHU) denoised at ``settings.smoothing_fwhm_mm``
    and ``settings.coarse_fwhm_mm`` (mm), shape (t, parenchyma voxels), keeping apart tissue
    whose pre-contrast ``baseline`` (HU, z, y, x) differs (grey and white matter); ``delay_mtt``: a
    Gaussian smoothing of the MTT map (s) within the parenchyma, FWHM
    ``settings.delay_mtt_fwhm_mm`` (mm) in each axis, or None when that is 0. No guide (None)
    when ``settings.smoothing_fwhm_mm`` is 0: the curves are fitted as they are.
    ``representative``: a lattice of ``GUIDE_LATTICE_MM`` (see :func:`guide_lattice`);
    ``temporal_basis``: the slow components that the denoised curves keep
    (:func:`triage.imaging.denoise.temporal_basis`).
    """
    if settings.smoothing_fwhm_mm <= 0:
        return None
    coarse_curves = denoise_curves(
        enhancement, parenchyma, series.geometry, series.times, settings.smoothing_fwhm_mm, settings.coarse_fwhm_mm,
        baseline=baseline,
    )
    delay_mtt = None
    if settings.delay_mtt_fwhm_mm > 0:
        fwhm = settings.delay_mtt_fwhm_mm
        delay_mtt = partial(geometric_smooth_within_mask, mask=parenchyma, geometry=series.geometry,
                            fwhm_mm=(fwhm,) * 3)
    return FitGuide(mtt_curves=coarse_curves, delay_mtt=delay_mtt,
                    representative=guide_lattice(parenchyma, series.geometry.spacing, GUIDE_LATTICE_MM),
                    temporal_basis=temporal_basis(series.times))


def guide_lattice(mask: np.ndarray, spacing, pitch_mm: float) -> np.ndarray:
    """For each voxel of ``mask`` (z, y, x), the masked voxel (index in ``np.flatnonzero``
    order) at the corner of its in-plane lattice cell of ``pitch_mm`` (whole pixels, at least 1;
    ``spacing`` (x, y, z) mm), or the voxel itself when that corner is outside the mask."""
    steps = [max(1, int(pitch_mm / float(spacing[axis]))) for axis in (1, 0)]  # y, x
    z, y, x = np.nonzero(mask)
    index = np.full(mask.shape, -1, np.int64)
    index[z, y, x] = np.arange(z.size)
    corner = index[z, y - y % steps[0], x - x % steps[1]]
    return np.where(corner >= 0, corner, np.arange(z.size))


def perfusion_maps(fit: PerfusionFit, parenchyma: np.ndarray) -> dict[str, np.ndarray]:
    """The maps of ``MAP_NAMES`` from ``fit`` (mL/100 g/min, mL/100 g, s), with Tmax (s)
    median-filtered within the parenchyma (``TMAX_MEDIAN_PX`` in-plane, ``TMAX_MEDIAN_SLICES``)."""
    maps = {name: getattr(fit, name) for name in MAP_NAMES}
    maps["tmax"] = median_within_mask(maps["tmax"], parenchyma, TMAX_MEDIAN_PX, TMAX_MEDIAN_SLICES)
    return maps


def reader_warnings(
    series: PerfusionSeries, motion: MotionReport, bolus: BolusTiming, arterial: ArterialInput,
    lesion: LesionResult, implausible: list[str],
) -> list[str]:
    """The result's warnings, in order and without repeats: the series', large (corrected)
    head motion, implausible maps, motion, bolus, AIF and lesion warnings."""
    warnings = list(series.warnings)
    if motion.max_displacement_mm > MOTION_WARN_MM:
        warnings.append(Text("pipeline.head_motion", max_mm=motion.max_displacement_mm,
                             n=len(motion.corrected_frames)))
    warnings += implausible + motion.warnings + bolus.warnings + list(arterial.quality.get("warnings", []))
    warnings += lesion.warnings
    return list(dict.fromkeys(warnings))
