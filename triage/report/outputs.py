"""Write one analysis to its result folder, all or nothing.

The folder's layout is :mod:`triage.report.folder`'s. Everything is written to a hidden sibling
directory first and renamed to ``OUT`` at the end, so an interrupted run never leaves an output
directory that looks complete.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from triage.base.durable import fsync_directory, fsync_tree
from triage.base.language import DEFAULT_LANGUAGE, in_language, render
from triage.imaging.pipeline import Analysis
from triage.report.folder import ResultFolder
from triage.report.nifti import write_maps
from triage.report.render import MAP_STYLES, render_map, render_summary
from triage.report.render_curves import render_arterial_input
from triage.report.result import build_result

OUTPUT_THREADS = 3  # the NIfTI writer and the pictures; their work mostly releases the GIL


def headline(analysis: Analysis, language: str = DEFAULT_LANGUAGE) -> list[str]:
    """The two or three lines a stroke team reads first, in ``language``."""
    v, profile = analysis.lesion.volumes, analysis.profile
    ratio = render("summary.no_core", language) if v["mismatch_ratio"] is None else f"{v['mismatch_ratio']:.1f}"
    hir = render("summary.not_available", language) if v["hir"] is None else f"{v['hir']:.2f}"
    verdict = {True: "summary.eligible", False: "summary.not_eligible", None: "summary.needs_age_nihss"}
    lines = [
        render("summary.volumes", language, core_below=profile.core_rcbf_below, core_ml=v["core_ml"],
               tmax_above=profile.hypoperfusion_tmax_above_s, tmax_ml=v["tmax6_ml"]),
        render("summary.mismatch", language, mismatch_ml=v["mismatch_ml"], ratio=ratio, hir=hir),
        render("summary.trials", language, defuse3=render(verdict[analysis.eligibility.defuse3], language),
               dawn=render(verdict[analysis.eligibility.dawn], language)),
    ]
    if analysis.quality_limited:
        lines.append(render("summary.quality_limited", language))
    return lines


def details(analysis: Analysis, language: str = DEFAULT_LANGUAGE) -> list[str]:
    """Smaller print under the headline, in ``language``: what the numbers rest on."""
    series, arterial = analysis.series, analysis.arterial
    return [
        render("summary.profile", language, profile=analysis.profile.name,
               reference=in_language(analysis.lesion.reference, language),
               reference_cbf=analysis.lesion.reference_cbf, model=analysis.settings.model),
        render("summary.acquisition", language, frames=len(series.times), duration_s=series.times[-1],
               aif_peak_hu=float(arterial.aif.max()), aif_scale=arterial.aif_scale,
               motion_mm=analysis.motion.max_displacement_mm),
    ]


def _write_nifti(analysis: Analysis, maps_dir: Path) -> dict[str, Path]:
    series = analysis.series
    masks = {"core": analysis.lesion.core, "hypoperfusion": analysis.lesion.hypoperfused}
    return write_maps(
        maps_dir, analysis.maps, masks, series.geometry, series.acquisition_geometry, series.acquisition_shape
    )


def _picture_jobs(analysis: Analysis, folder: ResultFolder) -> dict[str, tuple[Path, Callable[[], None]]]:
    """The pictures of ``analysis`` in ``folder``: output key -> (path, renderer)."""
    geometry, arterial = analysis.series.geometry, analysis.arterial
    language, profile = analysis.settings.language, analysis.profile
    jobs = {
        "summary": (folder.summary_png, partial(
            render_summary, folder.summary_png, analysis.baseline, analysis.lesion.core,
            analysis.lesion.hypoperfused, headline=headline(analysis, language),
            details=details(analysis, language), warnings=[in_language(w, language) for w in analysis.warnings],
            parenchyma=analysis.tissue.parenchyma, geometry=geometry, language=language,
            core_label=render("summary.core_label", language, core_below=profile.core_rcbf_below),
            hypoperfused_label=render("summary.hypoperfused_label", language,
                                      tmax_above=profile.hypoperfusion_tmax_above_s))),
        "aif_image": (folder.image("aif"), partial(
            render_arterial_input, folder.image("aif"), analysis.series.times,
            analysis.peak_enhancement, aif=arterial.aif, aif_voxels=arterial.aif_voxels, vof=arterial.vof,
            vof_voxels=arterial.vof_voxels, tissue=analysis.tissue_curve, language=language,
            notes=details(analysis, language)[1:]
            + [f"! {in_language(w, language)}" for w in arterial.quality.get("warnings", [])])),
    }
    for name, values in analysis.maps.items():
        units, window, colormap = MAP_STYLES[name]
        jobs[f"{name}_image"] = (folder.image(name), partial(
            render_map, folder.image(name), values, name=name.upper(), units=units,
            window=window, colormap=colormap, mask=analysis.tissue.brain, geometry=geometry, language=language))
    return jobs


def write_outputs(analysis: Analysis, out_dir: Path, *, started: float, announce: bool = False) -> dict:
    """Write maps, pictures and ``result.json`` of ``analysis`` to ``out_dir``; return the result.

    With ``announce``, the summary picture is made first and, with a ``result.json`` listing
    only it, renamed into :meth:`ResultFolder.announcement` while the rest is written (the node
    alerts the stroke team from it); it is removed once ``out_dir`` is in place.
    """
    folder = ResultFolder(Path(out_dir))
    folder.check_writable()
    staging = folder.staging()
    shutil.rmtree(staging, ignore_errors=True)
    staged = ResultFolder(staging)
    staged.image("summary").parent.mkdir(parents=True)
    write_start = time.perf_counter()
    try:
        # NIfTI (zlib, resampling) beside the pictures (PNG encoding and most array work
        # release the GIL: three workers keep both cores busy)
        with ThreadPoolExecutor(max_workers=OUTPUT_THREADS) as pool:
            pictures = _picture_jobs(analysis, staged)
            summary = pool.submit(pictures["summary"][1])
            maps_written = pool.submit(_write_nifti, analysis, staged.maps_dir)
            if announce:  # the other pictures after it: the summary alone beside the NIfTI writer
                summary.result()
                _announce(analysis, folder, staged, started)
            rendered = [summary] + [pool.submit(render) for key, (_, render) in pictures.items() if key != "summary"]
            for job in rendered:
                job.result()
            outputs = {key: str(path.relative_to(staging)) for key, (path, _) in pictures.items()}
            outputs.update({name: str(path.relative_to(staging)) for name, path in maps_written.result().items()})
        analysis.timings["writing outputs"] = round(time.perf_counter() - write_start, 3)
        result = build_result(analysis, outputs=outputs, total_seconds=time.perf_counter() - started)
        staged.result_json.write_text(json.dumps(result, indent=2) + "\n")
        fsync_tree(staging)  # a result.json that exists after a power loss is whole
        if folder.path.exists():
            shutil.rmtree(folder.path)
        staging.rename(folder.path)
        fsync_directory(folder.path.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(folder.announcement().path, ignore_errors=True)
    return result


def _announce(analysis: Analysis, folder: ResultFolder, staged: ResultFolder, started: float) -> None:
    """The announcement of ``folder`` (see :meth:`ResultFolder.announcement`) from the summary
    picture already in ``staged``: written beside it, then renamed into place whole."""
    announcement = folder.announcement()
    writing = ResultFolder(announcement.path.with_name(announcement.path.name + ".partial"))
    shutil.rmtree(writing.path, ignore_errors=True)
    writing.summary_png.parent.mkdir(parents=True)
    shutil.copyfile(staged.summary_png, writing.summary_png)
    outputs = {"summary": str(staged.summary_png.relative_to(staged.path))}
    result = build_result(analysis, outputs=outputs, total_seconds=time.perf_counter() - started)
    writing.result_json.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(announcement.path, ignore_errors=True)
    writing.path.rename(announcement.path)
