"""Write one analysis to its output directory, all or nothing.

Layout of ``OUT``::

    result.json               the result (see triage.report.result)
    summary.png               core (magenta) and Tmax > 6 s (green) over the slices, with the numbers
    images/<map>.png          each map colour-mapped with a colour bar
    images/aif.png            where the AIF and VOF were measured, and their curves
    maps/<map>.nii.gz         cbf, cbv, mtt, tmax, ttp (float32) on the acquisition grid
    maps/core.nii.gz, maps/hypoperfusion.nii.gz   uint8 masks (Tmax > 6 s for hypoperfusion)

Everything is written to a hidden sibling directory first and renamed to ``OUT`` at the end, so
an interrupted run never leaves an output directory that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from triage.base.durable import fsync_directory, fsync_tree
from triage.imaging.pipeline import Analysis
from triage.report.folder import check_output_dir
from triage.report.nifti import write_maps
from triage.report.render import MAP_STYLES, render_map, render_summary
from triage.report.render_curves import render_arterial_input
from triage.report.result import build_result

OUTPUT_THREADS = 3  # the NIfTI writer and the pictures; their work mostly releases the GIL


def headline(analysis: Analysis) -> list[str]:
    """The two or three lines a stroke team reads first."""
    v = analysis.lesion.volumes
    ratio = "n/a (no core)" if v["mismatch_ratio"] is None else f"{v['mismatch_ratio']:.1f}"
    hir = "n/a" if v["hir"] is None else f"{v['hir']:.2f}"
    defuse3 = "ELIGIBLE" if analysis.eligibility.defuse3 else "not eligible"
    dawn = {True: "ELIGIBLE", False: "not eligible", None: "needs age + NIHSS"}[analysis.eligibility.dawn]
    lines = [
        f"Core (rCBF<{analysis.profile.core_rcbf_below:.0%}): {v['core_ml']:.0f} mL    "
        f"Tmax>{analysis.profile.hypoperfusion_tmax_above_s:g}s: {v['tmax6_ml']:.0f} mL",
        f"Mismatch {v['mismatch_ml']:.0f} mL   ratio {ratio}   HIR {hir}",
        f"DEFUSE 3 imaging: {defuse3}    DAWN: {dawn}",
    ]
    if analysis.quality_limited:
        lines.append("QUALITY LIMITED: see the warnings below")
    return lines


def details(analysis: Analysis) -> list[str]:
    """Smaller print under the headline: what the numbers rest on."""
    series, arterial = analysis.series, analysis.arterial
    return [
        f"Profile {analysis.profile.name}; reference: {analysis.lesion.reference} "
        f"= {analysis.lesion.reference_cbf:.0f} mL/100 g/min; model {analysis.settings.model}",
        f"{len(series.times)} frames over {series.times[-1]:.0f} s; AIF peak "
        f"{float(arterial.aif.max()):.0f} HU (scale {arterial.aif_scale:.2f}); "
        f"max motion {analysis.motion.max_displacement_mm:.1f} mm",
    ]


def _write_nifti(analysis: Analysis, maps_dir: Path) -> dict[str, Path]:
    series = analysis.series
    masks = {"core": analysis.lesion.core, "hypoperfusion": analysis.lesion.hypoperfused}
    return write_maps(
        maps_dir, analysis.maps, masks, series.geometry, series.acquisition_geometry, series.acquisition_shape
    )


def _picture_jobs(analysis: Analysis, staging: Path) -> dict[str, tuple[str, Callable[[], None]]]:
    """The pictures of ``analysis``: output key -> (path relative to ``staging``, renderer)."""
    geometry = analysis.series.geometry
    arterial = analysis.arterial
    jobs = {
        "summary": ("summary.png", partial(
            render_summary, staging / "summary.png", analysis.baseline, analysis.lesion.core,
            analysis.lesion.hypoperfused, headline=headline(analysis), details=details(analysis),
            warnings=analysis.warnings, parenchyma=analysis.tissue.parenchyma, geometry=geometry,
            core_label=f"Core (rCBF < {analysis.profile.core_rcbf_below:.0%})",
            hypoperfused_label=f"Hypoperfused (Tmax > {analysis.profile.hypoperfusion_tmax_above_s:g} s)")),
        "aif_image": ("images/aif.png", partial(
            render_arterial_input, staging / "images" / "aif.png", analysis.series.times,
            analysis.peak_enhancement, aif=arterial.aif, aif_voxels=arterial.aif_voxels, vof=arterial.vof,
            vof_voxels=arterial.vof_voxels, tissue=analysis.tissue_curve,
            notes=details(analysis)[1:] + [f"! {w}" for w in arterial.quality.get("warnings", [])])),
    }
    for name, values in analysis.maps.items():
        units, window, colormap = MAP_STYLES[name]
        jobs[f"{name}_image"] = (f"images/{name}.png", partial(
            render_map, staging / "images" / f"{name}.png", values, name=name.upper(), units=units,
            window=window, colormap=colormap, mask=analysis.tissue.brain, geometry=geometry))
    return jobs


def write_outputs(analysis: Analysis, out_dir: Path, *, started: float) -> dict:
    """Write maps, pictures and ``result.json`` of ``analysis`` to ``out_dir``; return the result."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "images").mkdir(parents=True)
    write_start = time.perf_counter()
    try:
        # NIfTI (zlib, resampling) beside the pictures (PNG encoding and most array work
        # release the GIL: three workers keep both cores busy)
        with ThreadPoolExecutor(max_workers=OUTPUT_THREADS) as pool:
            maps_written = pool.submit(_write_nifti, analysis, staging / "maps")
            pictures = _picture_jobs(analysis, staging)
            rendered = [pool.submit(render) for _, render in pictures.values()]
            for job in rendered:
                job.result()
            outputs = {key: path for key, (path, _) in pictures.items()}
            outputs.update({name: str(path.relative_to(staging)) for name, path in maps_written.result().items()})
        analysis.timings["writing outputs"] = round(time.perf_counter() - write_start, 3)
        result = build_result(analysis, outputs=outputs, total_seconds=time.perf_counter() - started)
        (staging / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        fsync_tree(staging)  # a result.json that exists after a power loss is whole
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
        fsync_directory(out_dir.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result
