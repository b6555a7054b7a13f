"""Child-process entry point of the node: analyse one spooled series and write its DICOM results.

    python -m triage.node.child SERIES_DIR OUT_DIR --series UID --uid-seed SEED
                                  [--generation N] [--references LIST] [--config FILE]
                                  [--allow-incomplete-end] [--aif X,Y,Z] [--profile NAME]
                                  [--parent-pid PID]

Analyses ``SERIES_DIR`` into ``OUT_DIR`` with :func:`triage.analysis.analyse_directory`, as
``triage analyze`` does (with ``--allow-incomplete-end``: the complete time points of a series
whose last ones lack slices; skipped when ``OUT_DIR/result.json`` exists: an earlier run
completed the analysis before the node stopped; outputs are renamed into place only when whole;
``--aif`` and ``--profile`` as in ``triage analyze``, for a re-run a user requested), then writes the Secondary Capture, Segmentation and SR objects to
``OUT_DIR/dicom`` with UIDs derived from ``SEED``, so a re-run writes the same instances
(``N`` > 1, the node's re-analysis of a series, is named in their Series Descriptions). The
segmentation references the first time point: ``LIST`` (one path a line) names its files, which
spares reading every header of the series again; without it all of ``SERIES_DIR`` is searched.

Exit status: 0 done, 2 bad input (``error: <reason>`` on stderr), 3 internal failure. With
``--parent-pid`` the process asks the kernel to kill it when the node dies (``PR_SET_PDEATHSIG``), so a killed node leaves no orphan writing results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from triage.analysis import AnalysisRequest, analyse_directory, voxel_argument
from triage.base.errors import EXIT_INPUT, EXIT_INTERNAL, InputError, one_line
from triage.base.lifetime import die_with_parent
from triage.report.folder import ResultFolder
from triage.settings import load_settings


def run(series_dir: Path, out_dir: Path, series_uid: str, uid_seed: str, config: Path | None,
        references: Path | None = None, generation: int = 1, allow_incomplete_end: bool = False,
        aif: tuple[int, int, int] | None = None, profile: str | None = None) -> int:
    """Analyse and export; the exit status (``error: <reason>`` on stderr when not 0)."""
    if ResultFolder(out_dir).read_cached() is None:  # else an earlier run completed the analysis
        status = _step(lambda: _analyse(series_dir, out_dir, series_uid, config, allow_incomplete_end, aif,
                                        profile), "during the analysis")
        if status:
            return status
    from triage.dicom_out.export import write_result_objects  # after the analysis: its imports cost
    try:
        sources = ([Path(line) for line in references.read_text().splitlines() if line]
                   if references is not None else sorted(series_dir.glob("*.dcm")))
    except OSError as exc:
        print(f"error: cannot read the list of reference images {references}: {exc.strerror}", file=sys.stderr)
        return EXIT_INTERNAL
    written: list[Path] = []
    status = _step(lambda: written.extend(write_result_objects(out_dir, sources, uid_seed=uid_seed,
                                                               generation=generation)),
                   "writing the DICOM results")
    if status == 0:
        print(f"wrote {len(written)} DICOM result objects to {ResultFolder(out_dir).dicom_dir}")
    return status


def _step(step, what: str) -> int:
    """Run ``step()``: 0, or the exit status of its failure with ``error: <reason>`` on stderr
    (2 for bad input, 3 for an internal failure ``what``)."""
    try:
        step()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:
        print(f"error: internal failure {what}: {one_line(exc, 300, with_type=True)}", file=sys.stderr)
        return EXIT_INTERNAL
    return 0


def _analyse(series_dir: Path, out_dir: Path, series_uid: str, config: Path | None,
             allow_incomplete_end: bool, aif: tuple[int, int, int] | None, profile: str | None) -> None:

    settings = load_settings(config, profile=profile).analysis
    request = AnalysisRequest(series_dir, out_dir, series_uid=series_uid, settings=settings, aif_xyz=aif,
                              allow_incomplete_end=allow_incomplete_end, announce=True)
    for analysed in analyse_directory(request):
        result = analysed.result
        print(f"analysed series {result['series_uid']}: core {result['core_ml']} mL, Tmax > 6 s "
              f"{result['tmax6_ml']} mL, quality {result['quality']['level']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triage.node.child", description=__doc__.split("\n")[0])
    parser.add_argument("series_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--series", required=True, help="Series Instance UID")
    parser.add_argument("--uid-seed", required=True, help="seed of the result objects' UIDs")
    parser.add_argument("--generation", type=int, default=1, help="analysis generation of the series")
    parser.add_argument("--references", type=Path, help="file listing the first time point's files")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--allow-incomplete-end", action="store_true",
                        help="analyse the complete time points when the last ones lack slices")
    parser.add_argument("--aif", type=voxel_argument, metavar="X,Y,Z", help="force the AIF at this source-image column,row,slice")
    parser.add_argument("--profile", help="threshold profile name or JSON file")
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args(argv)
    if args.parent_pid and not die_with_parent(args.parent_pid):
        return EXIT_INTERNAL  # the node died before the request took effect
    return run(args.series_dir, args.out_dir, args.series, args.uid_seed, args.config, args.references,
               args.generation, args.allow_incomplete_end, args.aif, args.profile)


if __name__ == "__main__":
    sys.exit(main())
