"""Synthetic CT perfusion phantom with known truth (research use only).

The phantom is a 4D head (``hu``: t, z, y, x, HU) built from a labelled anatomy in mm
(:mod:`sample_data.anatomy`), fine-grid tracer curves (:mod:`sample_data.curves`) and
acquisition effects (:mod:`sample_data.acquisition`), plus the truth every accuracy test compares
against (:class:`Truth`). Physics and lesion definitions follow docs/conventions.md.

Reference CBF. The truth core is the core zone, which the rule ``CBF < 0.30 *
reference_cbf`` reproduces: the reference is the median truth CBF of contralateral parenchyma
with Tmax < 4 s. White matter is the majority of that tissue (~75 %), so the reference is about
the normal WM CBF, 25 mL/100 g/min (slightly more with texture). The core multipliers are
chosen per tissue so that every core voxel is <= 0.2 x reference before texture (GM core CBF
4.5, WM 3.0) and every other parenchyma voxel >= 0.45 x reference after it (lowest: WM severe
penumbra, 16.25, times 0.8 at 20 % texture). Tmax per zone (the maximum of the effective,
dispersed residue): normal 0.6 (GM) / 1.0 (WM) s, oligaemic rim 3.5 s, outer penumbra 8 s,
severe penumbra 12 s, core 14 s, all plus ``tissue_delay_s``; the arrival delay of each zone
is solved for so that dispersion keeps these values. The margins are checked in
:func:`make_phantom`.

Model variations (what the analysis may not assume): the residue shape (lognormal transit
times by default, not the exponential the default model fits), dispersion, smooth texture,
partial volume at lesion edges (:mod:`sample_data.tissue`), bolus height and width, noise and
sampling.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from triage.base.errors import InputError
from triage.base.grid import Geometry

from . import acquisition, curves, tissue
from .anatomy import (
    AIR,
    ARTERY,
    BONE,
    CORE,
    CSF,
    GM,
    HEAD_SEMI_AXES_MM,
    LABEL_NAMES,
    NORMAL,
    PENUMBRA,
    RIM,
    SCALP,
    SEVERE,
    VEIN,
    WM,
    ZONE_NAMES,
    build_anatomy,
)
from .dicom_writer import DicomVariant, write_dicom  # re-exported: the phantom's public API

__all__ = ["PhantomConfig", "CASES", "Truth", "Phantom", "make_phantom", "write_truth",
           "write_dicom", "DicomVariant",
           "design_margin_violations", "AIR", "SCALP", "BONE", "CSF", "GM", "WM", "ARTERY",
           "VEIN", "NORMAL", "RIM", "PENUMBRA", "SEVERE", "CORE"]

FOV_MM = 240.0
HEAD_MARGIN_MM = 10.0  # least air around the head in a field of view of pixel_spacing_mm
CORE_RCBF, HYPO_TMAX_S, SEVERE_TMAX_S = 0.30, 6.0, 10.0
TISSUES = (GM, WM)   # parenchyma tissues, in the order of the parameter sets

# Normal tissue: CBF mL/100 g/min, CBV mL/100 g, Tmax (relative to the AIF; no dispersion) s.
NORMAL_TISSUE = {GM: (60.0, 4.0, 0.6), WM: (25.0, 2.0, 1.0)}
# Lesion zones: CBF multiplier per tissue (GM, WM), CBV multiplier, effective Tmax s.
ZONE_PARAMETERS = {
    RIM: ((0.85, 0.85), 1.0, 3.5),
    PENUMBRA: ((0.70, 0.70), 1.1, 8.0),
    SEVERE: ((0.65, 0.65), 1.05, 12.0),
    CORE: ((0.075, 0.12), 0.4, 14.0),
}


@dataclass
class PhantomConfig:
    """What to simulate. Anatomy is in mm: the layout does not depend on matrix or slices."""

    case: str = "mismatch"          # "mismatch" | "large_core" | "no_lesion" (lesion layout)
    matrix: int = 256               # in-plane pixels (square matrix); FOV 240 mm
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, column) spacing as DICOM's
    #   PixelSpacing (between rows = along y, between columns = along x); None: 240 mm / matrix
    n_slices: int = 16
    slice_mm: float = 5.0
    n_frames: int = 40
    duration_s: float = 60.0        # last frame time
    variable_sampling: bool = False  # intervals 2 : 1 : 3 s-ratio before/during/after the bolus
    noise_hu: float = 8.0           # per-voxel per-frame SD at this matrix (0 = noise-free)
    noise_fwhm_px: float = 1.5      # in-plane spatial correlation of the noise
    tissue_delay_s: float = 0.0     # extra delay of ALL brain tissue vs the AIF (Tmax shifts)
    dispersion_s: float = 0.0       # exponential dispersion time constant in the lesion, 0-3 s
    residue: str = "lognormal"      # transit-time distribution (sample_data.curves.RESIDUE_SHAPES)
    texture: float = 0.15           # smooth relative CBF and CBV variation, |f| <= texture (<= 0.2)
    edge_blur_mm: float = 2.0       # partial volume FWHM at lesion-zone edges, mm (0 = sharp)
    aif_peak_hu: float = 320.0      # first-pass arterial peak enhancement, HU
    bolus_width: float = 1.0        # bolus width factor (scales the AIF gamma variates' beta)
    motion: bool = False            # rigid head motion in some frames
    lesion_side: str = "left"       # patient left (+X, high column index) or right
    age: int | None = 72
    seed: int = 0


_BASE = PhantomConfig()
CASES: dict[str, PhantomConfig] = {
    "mismatch": _BASE,
    "large_core": replace(_BASE, case="large_core"),
    "no_lesion": replace(_BASE, case="no_lesion"),
    "moved_noisy": replace(_BASE, motion=True, noise_hu=12.0),
    # scan ends at 25 s: brain enhancement still >= 0.5 of its peak for every residue but box
    "truncated": replace(_BASE, duration_s=25.0, n_frames=26),
    "delayed": replace(_BASE, tissue_delay_s=1.0),
    "variable_sampling": replace(_BASE, variable_sampling=True),
    "dispersed": replace(_BASE, dispersion_s=2.0),
    "dispersed_3s": replace(_BASE, dispersion_s=3.0),
    "heterogeneous": replace(_BASE, residue="gamma2"),  # non-exponential (gamma transit times) residue
    "exponential": replace(_BASE, residue="exponential"),  # the default model's own residue
    "gamma3": replace(_BASE, residue="gamma3"),
    "gamma5": replace(_BASE, residue="gamma5"),
    "linear": replace(_BASE, residue="linear"),        # uniform transit times (Kudo 2013)
    "box": replace(_BASE, residue="box"),              # single transit time (Kudo 2013)
    "sharp_uniform": replace(_BASE, texture=0.0, edge_blur_mm=0.0),
    "low_wide_bolus": replace(_BASE, aif_peak_hu=160.0, bolus_width=1.6),
    "noise_5": replace(_BASE, noise_hu=5.0),
    "noise_15": replace(_BASE, noise_hu=15.0),
    "right_side": replace(_BASE, lesion_side="right"),
    "noise_free": replace(_BASE, noise_hu=0.0),
}


@dataclass
class Truth:
    """Known truth, all volumes ``(z, y, x)`` on the phantom grid in the frame-0 head position.

    Units: CBF mL/100 g/min, CBV mL/100 g, MTT s, Tmax s (relative to the AIF), volumes mL,
    curves HU above baseline. Maps are 0 outside parenchyma.
    """

    labels: np.ndarray
    parenchyma: np.ndarray
    cbf: np.ndarray
    cbv: np.ndarray
    mtt: np.ndarray
    tmax: np.ndarray
    core: np.ndarray
    hypoperfused: np.ndarray
    severe: np.ndarray
    reference_cbf: float
    volumes: dict
    aif: np.ndarray
    vof: np.ndarray
    artery_voxels: np.ndarray
    vein_voxels: np.ndarray
    lesion_side: str | None
    displacement_mm: np.ndarray
    zones: np.ndarray = field(default=None)          # uint8 zone codes (NORMAL ... CORE)
    mixed: np.ndarray = field(default=None)          # bool: partial-volume voxel (zones mixed)
    zone_parameters: list = field(default_factory=list)  # per (zone, tissue): params + volume


@dataclass
class Phantom:
    """A simulated acquisition, its grid and its truth."""

    hu: np.ndarray          # float32 (t, z, y, x): measured HU (noise and motion included)
    times: np.ndarray       # float64 (t,) s from the first frame
    geometry: Geometry
    truth: Truth
    config: PhantomConfig


def _validate(config: PhantomConfig) -> None:
    checks = [
        (config.case in ("mismatch", "large_core", "no_lesion"),
         f"unknown phantom case {config.case!r}"),
        (16 <= config.matrix <= 1024, "matrix must be between 16 and 1024"),
        (_head_fits(config), "pixel_spacing_mm must be (row, column) mm, each at least 0.1, "
         f"with the {config.matrix}-pixel field of view at least {HEAD_MARGIN_MM:g} mm wider than "
         f"the head ({2 * HEAD_SEMI_AXES_MM[1]:g} mm anterior-posterior, {2 * HEAD_SEMI_AXES_MM[0]:g} mm left-right)"),
        (1 <= config.n_slices <= 512, "n_slices must be between 1 and 512"),
        (0.2 <= config.slice_mm <= 20.0, "slice_mm must be between 0.2 and 20"),
        (3 <= config.n_frames <= 500, "n_frames must be between 3 and 500"),
        (5.0 <= config.duration_s <= 200.0, "duration_s must be between 5 and 200"),
        (config.noise_hu >= 0 and config.noise_fwhm_px >= 0, "noise must be >= 0"),
        (0.0 <= config.tissue_delay_s <= 10.0, "tissue_delay_s must be between 0 and 10"),
        (0.0 <= config.dispersion_s <= 3.0, "dispersion_s must be between 0 and 3"),
        (0.0 <= config.texture <= 0.2, "texture must be between 0 and 0.2"),
        (0.0 <= config.edge_blur_mm <= 10.0, "edge_blur_mm must be between 0 and 10"),
        (50.0 <= config.aif_peak_hu <= 1000.0, "aif_peak_hu must be between 50 and 1000"),
        (0.5 <= config.bolus_width <= 2.0, "bolus_width must be between 0.5 and 2"),
        (config.residue in curves.RESIDUE_SHAPES,
         f"unknown residue {config.residue!r}; known: {', '.join(curves.RESIDUE_SHAPES)}"),
        (config.lesion_side in ("left", "right"), "lesion_side must be 'left' or 'right'"),
        (config.age is None or 0 <= config.age <= 130, "age must be between 0 and 130"),
    ]
    for ok, reason in checks:
        if not ok:
            raise InputError(reason)


def _head_fits(config: PhantomConfig) -> bool:
    """The pixel spacing (when set) is positive and its field of view holds the head."""
    if config.pixel_spacing_mm is None:
        return True
    if len(config.pixel_spacing_mm) != 2 or min(config.pixel_spacing_mm) < 0.1:
        return False
    fov_y, fov_x = _fov_mm(config)
    return (fov_x >= 2 * HEAD_SEMI_AXES_MM[0] + HEAD_MARGIN_MM
            and fov_y >= 2 * HEAD_SEMI_AXES_MM[1] + HEAD_MARGIN_MM)


def _pixel_mm(config: PhantomConfig) -> tuple[float, float]:
    """In-plane spacing (x = column, y = row) in mm."""
    if config.pixel_spacing_mm is None:
        return FOV_MM / config.matrix, FOV_MM / config.matrix
    row, column = config.pixel_spacing_mm
    return float(column), float(row)


def _fov_mm(config: PhantomConfig) -> tuple[float, float]:
    """In-plane field of view (y, x) in mm."""
    if config.pixel_spacing_mm is None:
        return FOV_MM, FOV_MM
    x, y = _pixel_mm(config)
    return config.matrix * y, config.matrix * x


def _geometry(config: PhantomConfig) -> Geometry:
    x, y = _pixel_mm(config)
    half = (config.matrix - 1) / 2.0
    return Geometry(spacing=(x, y, float(config.slice_mm)),
                    origin=(-half * x, -half * y, -(config.n_slices - 1) / 2.0 * config.slice_mm))


def _parameter_sets(config: PhantomConfig):
    """Tissue parameter sets: list of (zone, tissue, cbf, cbv, tmax, arrival delay, dispersion).

    Tmax (s) is the design value plus ``tissue_delay_s``; the arrival delay (s) is solved for
    so that the maximum of the dispersed residue lands on it (:func:`curves.onset_for_tmax`).
    """
    sets = []
    for zone in (NORMAL, RIM, PENUMBRA, SEVERE, CORE):
        for t_index, label in enumerate(TISSUES):
            cbf, cbv, tmax = NORMAL_TISSUE[label]
            dispersion = 0.0
            if zone != NORMAL:
                cbf_mult, cbv_mult, tmax = ZONE_PARAMETERS[zone]
                cbf, cbv = cbf * cbf_mult[t_index], cbv * cbv_mult
                dispersion = config.dispersion_s
            tmax += config.tissue_delay_s
            delay, dispersion = curves.onset_for_tmax(tmax, 60.0 * cbv / cbf, dispersion,
                                                      config.residue)
            sets.append((zone, label, cbf, cbv, tmax, delay, dispersion))
    return sets


def _curve_table(times, sets, config):
    """Enhancement table (t, 2 + len(sets)): column 0 none, 1..n tissue sets, last VOF.

    Also returns the AIF and VOF at the frame times.
    """
    t_fine = curves.fine_times()
    aif_fine = curves.arterial_curve(t_fine, config.aif_peak_hu, config.bolus_width)
    vof_fine = curves.venous_curve(t_fine, aif_fine)
    columns = [np.zeros_like(t_fine)]
    for _, _, cbf, cbv, _, delay, dispersion in sets:
        r = curves.residue(t_fine, 60.0 * cbv / cbf, delay, dispersion, config.residue)
        columns.append(curves.tissue_curve(aif_fine, r, cbf))
    columns.append(vof_fine)
    table = np.stack([np.interp(times, t_fine, c) for c in columns], axis=1).astype(np.float32)
    return table, np.interp(times, t_fine, aif_fine), np.interp(times, t_fine, vof_fine)


def _volumes(core, hypo, severe, voxel_ml):
    core_ml = float(core.sum() * voxel_ml)
    tmax6 = float(hypo.sum() * voxel_ml)
    tmax10 = float(severe.sum() * voxel_ml)
    return {
        "core_ml": core_ml, "tmax6_ml": tmax6, "tmax10_ml": tmax10,
        "mismatch_ml": tmax6 - core_ml,
        "mismatch_ratio": tmax6 / core_ml if core_ml > 0 else None,
        "hir": tmax10 / tmax6 if tmax6 > 0 else None,
    }


def design_margin_violations(truth: Truth, tmax_margin_s: float = 2.0) -> list[str]:
    """Ways the truth is too close to a decision threshold (empty list = margins hold).

    CBF: core <= 0.25 x reference, other parenchyma >= 0.45 x reference. The core is designed
    at <= 0.2 x reference; texture (<= 20 %) raises it to <= 0.24 x, and lowers the weakest
    non-core tissue (WM severe penumbra, 0.65 x) to >= 0.52 x, while raising the reference by a
    few per cent. Partial-volume voxels (``truth.mixed``) lie between their zones' values by
    construction and are left out of the CBF rules. Tmax (margin m, 2 s by default):
    not hypoperfused <= 6 - m, hypoperfused >= 6 + m, severe >= 10 + m, hypoperfused but not
    severe <= 10 - m.
    """
    p, ref = truth.parenchyma, truth.reference_cbf
    cbf, tmax, hypo, sev = truth.cbf, truth.tmax, truth.hypoperfused, truth.severe
    pure = ~truth.mixed if truth.mixed is not None else np.ones_like(p)
    m = tmax_margin_s
    rules = [
        ("core CBF > 0.25 x reference", pure & truth.core & (cbf > 0.25 * ref)),
        ("non-core CBF < 0.45 x reference", pure & p & ~truth.core & (cbf < 0.45 * ref)),
        (f"non-hypoperfused Tmax > {6 - m} s", p & ~hypo & (tmax > HYPO_TMAX_S - m)),
        (f"hypoperfused Tmax < {6 + m} s", hypo & (tmax < HYPO_TMAX_S + m)),
        (f"severe Tmax < {10 + m} s", sev & (tmax < SEVERE_TMAX_S + m)),
        (f"non-severe hypoperfused Tmax > {10 - m} s", hypo & ~sev & (tmax > SEVERE_TMAX_S - m)),
    ]
    return [f"{name}: {int(mask.sum())} voxels" for name, mask in rules if mask.any()]


def _truth_maps(index, sets, mixing, scale):
    """Truth CBF, CBV, MTT, Tmax maps: per-set values, mixed at edges, times the texture."""
    lut = np.zeros((4, len(sets) + 2), np.float32)       # cbf, cbv, mtt, tmax per set column
    for col, (_, _, cbf, cbv, tmax, _, _) in enumerate(sets, start=1):
        lut[:, col] = (cbf, cbv, 60.0 * cbv / cbf, tmax)
    cbf_map, cbv_map, mtt_map, tmax_map = (lut[i][index] for i in range(4))
    for values, lut_row in ((cbf_map, lut[0]), (cbv_map, lut[1])):
        values.reshape(-1)[mixing.voxels] = mixing.weights @ lut_row[1: len(sets) + 1]
    mtt_map.reshape(-1)[mixing.voxels] = (60.0 * cbv_map.reshape(-1)[mixing.voxels]
                                          / cbf_map.reshape(-1)[mixing.voxels])
    cbf_map *= scale
    cbv_map *= scale
    return cbf_map, cbv_map, mtt_map, tmax_map


def _truth(config, geometry, anatomy, aif, vof, sets, fields, displacement):
    labels, zones = anatomy.labels, anatomy.zones
    index, mixing, scale = fields
    parenchyma = (labels == GM) | (labels == WM)
    cbf_map, cbv_map, mtt_map, tmax_map = _truth_maps(index, sets, mixing, scale)

    side = 1.0 if config.lesion_side == "left" else -1.0
    x = geometry.origin[0] + geometry.spacing[0] * np.arange(labels.shape[2])
    contralateral = (side * x < 0)[None, None, :]
    # Normal tissue of the unaffected hemisphere: without extra delay this is exactly its
    # parenchyma with Tmax < 4 s (the pipeline's rule); a whole-brain delay
    # (tissue_delay_s) shifts every Tmax but leaves the tissue normal.
    reference = parenchyma & contralateral & (zones == NORMAL)
    if not reference.any():
        raise InputError("no normal parenchyma in the unaffected hemisphere: choose more slices or thinner ones")
    reference_cbf = float(np.median(cbf_map[reference]))
    core = parenchyma & (zones == CORE)             # hard zone masks (edges mix symmetrically)
    hypo = parenchyma & (tmax_map > HYPO_TMAX_S)
    severe = parenchyma & (tmax_map > SEVERE_TMAX_S)
    mixed = np.zeros(labels.shape, bool)
    mixed.reshape(-1)[mixing.voxels] = True
    voxel_ml = geometry.voxel_volume_ml
    zone_parameters = [
        {"zone": ZONE_NAMES[zone], "tissue": LABEL_NAMES[tissue], "cbf": cbf, "cbv": cbv,
         "mtt": 60.0 * cbv / cbf, "tmax": float(tmax), "arrival_delay_s": float(delay),
         "dispersion_s": float(dispersion), "residue": config.residue,
         "volume_ml": float((index == col).sum() * voxel_ml)}
        for col, (zone, tissue, cbf, cbv, tmax, delay, dispersion) in enumerate(sets, start=1)]
    return Truth(
        labels=labels, parenchyma=parenchyma, cbf=cbf_map, cbv=cbv_map, mtt=mtt_map,
        tmax=tmax_map, core=core, hypoperfused=hypo, severe=severe,
        reference_cbf=reference_cbf, volumes=_volumes(core, hypo, severe, voxel_ml),
        aif=aif.astype(np.float64), vof=vof.astype(np.float64),
        artery_voxels=np.argwhere(labels == ARTERY), vein_voxels=np.argwhere(labels == VEIN),
        lesion_side=None if config.case == "no_lesion" else config.lesion_side,
        displacement_mm=np.asarray(displacement, float), zones=zones, mixed=mixed,
        zone_parameters=zone_parameters)


def _set_index(labels, zones):
    """Column of the curve table for each voxel: 1 + 2 * zone + (WM), VOF last, else 0."""
    index = np.zeros(labels.shape, np.uint8)
    for t_index, label in enumerate(TISSUES):
        mask = labels == label
        index[mask] = 1 + 2 * zones[mask] + t_index
    index[labels == VEIN] = 1 + 2 * len(ZONE_NAMES)
    return index


def make_phantom(config: PhantomConfig) -> Phantom:
    """Simulate the 4D acquisition and its truth.

    Raises
    ------
    InputError
        If the configuration is out of range.
    RuntimeError
        If the truth breaks the documented design margins (a bug in the layout).
    """
    _validate(config)
    geometry = _geometry(config)
    shape = (config.n_slices, config.matrix, config.matrix)
    anatomy = build_anatomy(shape, geometry.spacing, geometry.origin, config.case,
                            config.lesion_side)
    times = acquisition.frame_times(config.n_frames, config.duration_s, config.variable_sampling)
    sets = _parameter_sets(config)
    table, aif, vof = _curve_table(times, sets, config)

    rng = np.random.default_rng(config.seed)
    poses = (acquisition.motion_poses(config.n_frames, rng) if config.motion
             else [None] * config.n_frames)
    spacing_zyx = geometry.spacing[::-1]
    brain = np.argwhere((anatomy.labels == GM) | (anatomy.labels == WM))
    centre = (np.asarray(shape) - 1) / 2.0
    brain_mm = (brain[:: max(1, brain.shape[0] // 20000)] - centre) * spacing_zyx
    displacement = [acquisition.displacement_mm(p, brain_mm) for p in poses]

    fields = _tissue_fields(config, geometry, anatomy)
    truth = _truth(config, geometry, anatomy, aif, vof, sets, fields, displacement)
    problems = design_margin_violations(truth, max(2.0 - config.tissue_delay_s, 0.0))
    if problems:
        raise RuntimeError("phantom design margins violated: " + "; ".join(problems))

    index, mixing, scale = fields
    artery = np.nonzero(anatomy.labels == ARTERY)
    artery_fraction = anatomy.artery_fraction[artery]
    noise = acquisition.CorrelatedNoise(config.noise_hu, config.noise_fwhm_px, rng)
    hu = np.empty((config.n_frames, *shape), np.float32)
    for k in range(config.n_frames):
        enhancement = table[k][index]
        enhancement.reshape(-1)[mixing.voxels] = mixing.weights @ table[k][1: len(sets) + 1]
        enhancement *= scale
        frame = anatomy.baseline_hu + enhancement
        frame[artery] += artery_fraction * np.float32(aif[k])
        if poses[k] is not None:
            frame = acquisition.apply_pose(frame, poses[k], spacing_zyx)
        if config.noise_hu > 0:
            frame += noise.sample(shape)
        hu[k] = frame
    return Phantom(hu=hu, times=times, geometry=geometry, truth=truth, config=config)


def _tissue_fields(config, geometry, anatomy):
    """Per-voxel curve-table column, partial-volume mixing and texture scale (1 + f)."""
    labels, zones = anatomy.labels, anatomy.zones
    index = _set_index(labels, zones)
    mixing = tissue.zone_mixing(labels, zones, geometry.spacing, config.edge_blur_mm, TISSUES,
                                len(ZONE_NAMES))
    scale = np.ones(labels.shape, np.float32)
    if config.texture > 0:
        parenchyma = (labels == GM) | (labels == WM)
        field_ = tissue.texture_field(labels.shape, geometry.spacing, _fov_mm(config), config.texture,
                                      config.seed)
        scale[parenchyma] += field_[parenchyma]
    return index, mixing, scale


def truth_summary(phantom: Phantom) -> dict:
    """JSON-ready description of the truth (no voxel arrays)."""
    truth, geometry = phantom.truth, phantom.geometry
    volumes = truth.volumes
    core, ratio, mismatch = volumes["core_ml"], volumes["mismatch_ratio"], volumes["mismatch_ml"]
    return {
        "note": "synthetic phantom, research use only; not patient data",
        "config": asdict(phantom.config),
        "geometry": {"spacing": list(geometry.spacing), "origin": list(geometry.origin),
                     "direction": list(geometry.direction),
                     "shape_zyx": list(truth.labels.shape)},
        "orientation": "x = patient left (high column index), y = posterior, z = superior",
        "times_s": phantom.times.tolist(),
        "reference_cbf": truth.reference_cbf,
        "reference_rule": "median truth CBF of contralateral parenchyma with Tmax < 4 s",
        "thresholds": {"core_rcbf": CORE_RCBF, "hypoperfused_tmax_s": HYPO_TMAX_S,
                       "severe_tmax_s": SEVERE_TMAX_S},
        "volumes": volumes,
        "defuse3_imaging_eligible": bool(core < 70.0 and ratio is not None and ratio >= 1.8
                                         and mismatch >= 15.0),
        "zones": truth.zone_parameters,
        "variations": {"residue": phantom.config.residue,
                       "dispersion_s": phantom.config.dispersion_s,
                       "texture": phantom.config.texture,
                       "edge_blur_mm": phantom.config.edge_blur_mm,
                       "mixed_voxel_count": int(truth.mixed.sum()),
                       "aif_peak_hu": phantom.config.aif_peak_hu,
                       "bolus_width": phantom.config.bolus_width,
                       "noise_hu": phantom.config.noise_hu,
                       "variable_sampling": phantom.config.variable_sampling},
        "lesion_side": truth.lesion_side,
        "labels": {name: code for code, name in LABEL_NAMES.items()},
        "aif_hu": truth.aif.tolist(),
        "vof_hu": truth.vof.tolist(),
        "artery_voxel_count": int(len(truth.artery_voxels)),
        "vein_voxel_count": int(len(truth.vein_voxels)),
        "displacement_mm": truth.displacement_mm.tolist(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


TRUTH_MAPS = ("cbf", "cbv", "mtt", "tmax", "labels", "zones", "mixed", "core", "hypoperfused",
              "severe")


def write_truth(phantom: Phantom, out_dir: Path) -> None:
    """Write ``truth.json`` and ``truth_<map>.nii.gz`` (SimpleITK, phantom geometry)."""
    import SimpleITK as sitk

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "truth.json").write_text(json.dumps(truth_summary(phantom), indent=2))
    geometry = phantom.geometry
    for name in TRUTH_MAPS:
        array = getattr(phantom.truth, name)
        image = sitk.GetImageFromArray(array.astype(np.uint8) if array.dtype == bool else array)
        image.SetSpacing(geometry.spacing)
        image.SetOrigin(geometry.origin)
        image.SetDirection(geometry.direction)
        sitk.WriteImage(image, str(out_dir / f"truth_{name}.nii.gz"))
