"""``result.json``: the machine-readable result of one series (schema ``stroke-triage/result/1``).

Volumes are in mL rounded to 0.1 mL, times in s. ``mismatch_ratio`` is null when the core is 0
and ``hir`` when there is no Tmax > 6 s tissue. ``eligibility.dawn`` is null when age or NIHSS is
unknown. ``quality.level`` is ``"limited"`` when the input limits trust in the numbers (truncated bolus, AIF
warnings, frames removed or large motion, time points of an aborted scan left out:
``acquisition.frames_left_out``) and ``quality.warnings`` says what was found. ``texts`` holds
each warning (null for one without a catalog key), each eligibility reason and the reference
method (``reference.method``) as its key and
values in the text catalogs (:mod:`triage.base.language`), so that the viewer and the alerts can
say them in another language; the English strings above are the same texts.
"""

from __future__ import annotations

import numpy as np

from triage import __version__
from triage.base.language import Text
from triage.imaging.pipeline import Analysis

SCHEMA = "stroke-triage/result/1"


def _texts(analysis: Analysis) -> dict:
    """The warnings and eligibility reasons as catalog keys and values (None: a plain string)."""
    def data(text):
        return text.as_dict() if isinstance(text, Text) else None
    return {"warnings": [data(w) for w in analysis.warnings],
            "reasons": {name: data(reason) for name, reason in analysis.eligibility.reasons.items()},
            "reference": data(analysis.lesion.reference)}


def _round(value, digits=1):
    return None if value is None else round(float(value), digits)


def _location(analysis: Analysis, voxels: np.ndarray | None) -> dict | None:
    """Where a curve was measured: the first (best) voxel in LPS mm and as source-image
    column/row/slice (what ``--aif X,Y,Z`` takes), and every voxel averaged into the curve."""
    if voxels is None or len(voxels) == 0:
        return None
    series = analysis.series
    source = series.acquisition_geometry or series.geometry
    points = [series.geometry.to_physical(zyx) for zyx in voxels]
    source_xyz = [[int(v) for v in np.rint(source.to_index(p))[::-1]] for p in points]
    return {
        "lps_mm": [round(float(c), 1) for c in points[0]],
        "source_xyz": source_xyz[0],
        "voxels_source_xyz": source_xyz,
    }


def _curve(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else [round(float(v), 2) for v in values]


def build_result(analysis: Analysis, *, outputs: dict[str, str], total_seconds: float) -> dict:
    """The ``result.json`` document of ``analysis``; ``outputs`` maps names to relative paths."""
    series = analysis.series
    volumes = analysis.lesion.volumes
    arterial, bolus, motion = analysis.arterial, analysis.bolus, analysis.motion
    quality_aif = {k: v for k, v in arterial.quality.items() if k != "warnings"}
    return {
        "schema": SCHEMA,
        "status": "complete",
        "research_use_only": True,
        "software": {"name": "stroke-triage", "version": __version__},
        "study_uid": series.study_uid,
        "series_uid": series.series_uid,
        "series_description": series.attributes.get("SeriesDescription", ""),
        "core_ml": _round(volumes["core_ml"]),
        "tmax6_ml": _round(volumes["tmax6_ml"]),
        "tmax10_ml": _round(volumes["tmax10_ml"]),
        "mismatch_ml": _round(volumes["mismatch_ml"]),
        "mismatch_ratio": _round(volumes["mismatch_ratio"], 2),
        "hir": _round(volumes["hir"], 2),
        "affected_side": analysis.lesion.affected_side,
        "eligibility": analysis.eligibility.as_dict(),
        "texts": _texts(analysis),
        "profile": analysis.profile.as_dict(),
        "reference": {"method": analysis.lesion.reference, "cbf": _round(analysis.lesion.reference_cbf, 2)},
        "model": analysis.settings.model,
        "quality": {
            "level": "limited" if analysis.quality_limited else "good",
            "warnings": analysis.warnings,
            "motion": {
                "max_displacement_mm": _round(motion.max_displacement_mm, 2),
                "displacement_mm": _curve(motion.displacement_mm),
                "corrected_frames": motion.corrected_frames,
                "excluded_frames": motion.excluded_frames,
            },
            "bolus": {
                "truncated": bolus.truncated,
                "baseline_frames": bolus.n_baseline,
                "arrival_s": _round(bolus.arrival_s, 2),
                "peak_s": _round(bolus.peak_s, 2),
                "tail_fraction": _round(bolus.tail_fraction, 3),
            },
            "aif": {
                "location": _location(analysis, arterial.aif_voxels),
                "scale": _round(arterial.aif_scale, 3),
                "curve_hu": _curve(arterial.aif),
                "measured_curve_hu": _curve(arterial.aif_raw),
                **quality_aif,
            },
            "vof": {"location": _location(analysis, arterial.vof_voxels), "curve_hu": _curve(arterial.vof)},
            "mean_tissue_curve_hu": _curve(analysis.tissue_curve),
        },
        "acquisition": {
            "frames": int(len(series.times)),
            "frames_left_out": series.frames_left_out,
            "times_s": _curve(series.times),
            "slices": int(series.data.shape[1]),
            "matrix": list((series.acquisition_shape or series.shape3d)[1:]),
            "processing_matrix": list(series.shape3d[1:]),
            "spacing_mm": [round(float(s), 3) for s in (series.acquisition_geometry or series.geometry).spacing],
            "patient_age": series.patient_age,
        },
        "timings_s": {**analysis.timings, "total": round(total_seconds, 3)},
        "outputs": outputs,
    }
