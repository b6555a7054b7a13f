"""Child-process entry point of the node: analyse one spooled series and write its DICOM results.

    python -m triage.node.child SERIES_DIR OUT_DIR --series UID --uid-seed SEED
                                  [--generation N] [--references LIST] [--config FILE]
                                  [--allow-incomplete-end] [--aif X,Y,Z] [--profile NAME]
                                  [--parent-pid PID]
    python -m triage.node.child --stream SERIES_DIR --series UID [--config FILE] [--parent-pid PID]

With ``--stream`` (:mod:`triage.node.streams`) the child reads the series while it arrives: each
stdin line ``file PATH`` names a stored image, read at once (:mod:`triage.imaging.prefetch`),
and every WORK_AHEAD_FILES images the early stages run on the time points whole so far
(:mod:`triage.imaging.early`: motion estimates, the first frame's brain mask); the line
``go {JSON}`` starts the analysis, the JSON holding what the flags above give (``out``,
``uid_seed``, ``generation``, ``references``, ``allow_incomplete_end``, ``aif``, ``profile``) and
``log``, the file its output goes to from then on. Without a ``go`` line before the end of its
input it exits, status 0, having written nothing.

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
import json
import os
import sys
from pathlib import Path

from triage.analysis import AnalysisRequest, analyse_directory, voxel_argument
from triage.base.dicom_header import quiet_reading_validation
from triage.base.errors import EXIT_INPUT, EXIT_INTERNAL, InputError, one_line
from triage.base.lifetime import die_with_parent
from triage.report.folder import ResultFolder
from triage.settings import load_settings

# While the images arrive, the early stages look for newly whole time points every this many files.
WORK_AHEAD_FILES = 16


def run(series_dir: Path, out_dir: Path, series_uid: str, uid_seed: str, config: Path | None,
        references: Path | None = None, generation: int = 1, allow_incomplete_end: bool = False,
        aif: tuple[int, int, int] | None = None, profile: str | None = None, prefetch=None) -> int:
    """Analyse and export; the exit status (``error: <reason>`` on stderr when not 0).
    ``prefetch``: the series read ahead (:class:`triage.imaging.prefetch.SeriesPrefetch`)."""
    if ResultFolder(out_dir).read_cached() is None:  # else an earlier run completed the analysis
        status = _step(lambda: _analyse(series_dir, out_dir, series_uid, config, allow_incomplete_end, aif,
                                        profile, prefetch), "during the analysis")
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


def stream(series_dir: Path, series_uid: str, config: Path | None) -> int:
    """``--stream``: read the images named on stdin as they come, analyse on the ``go`` line."""
    import triage.imaging.pipeline  # noqa: F401  (the analysis stack loads while the images arrive)
    import triage.report.outputs  # noqa: F401
    import triage.dicom_out.export  # noqa: F401
    from triage.imaging.prefetch import SeriesPrefetch

    settings = []
    status = _step(lambda: settings.append(load_settings(config).analysis), "reading the settings")
    if status:
        return status
    prefetch = SeriesPrefetch(series_dir, settings[0].max_matrix)
    order, since_ahead, ahead_failure = None, 0, None
    for line in sys.stdin.buffer:
        command, _, rest = line.decode("utf-8", "replace").rstrip("\n").partition(" ")
        if command == "file":
            prefetch.add(Path(rest))
            since_ahead += 1
            if since_ahead >= WORK_AHEAD_FILES and ahead_failure is None:
                since_ahead = 0
                try:
                    prefetch.work_ahead()
                except Exception as exc:  # the analysis then does it all, and the log says why
                    ahead_failure = one_line(exc, 300, with_type=True)
        elif command == "go":
            order = json.loads(rest)
            break
    if order is None:
        return 0
    _output_to(Path(order["log"]))
    print(f"read {prefetch.n_files} files of the series ahead; motion estimated for "
          f"{prefetch.early.n_estimated} time points as they arrived")
    if ahead_failure is not None:
        print(f"warning: the early stages stopped while the images arrived: {ahead_failure}")
    return run(series_dir, Path(order["out"]), series_uid, order["uid_seed"], config,
               Path(order["references"]) if order.get("references") else None, int(order["generation"]),
               bool(order.get("allow_incomplete_end")), tuple(order["aif"]) if order.get("aif") else None,
               order.get("profile"), prefetch)


def _output_to(log_path: Path) -> None:
    """Send this process' stdout and stderr to ``log_path`` (truncated) from now on."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _analyse(series_dir: Path, out_dir: Path, series_uid: str, config: Path | None,
             allow_incomplete_end: bool, aif: tuple[int, int, int] | None, profile: str | None,
             prefetch=None) -> None:

    settings = load_settings(config, profile=profile).analysis
    request = AnalysisRequest(series_dir, out_dir, series_uid=series_uid, settings=settings, aif_xyz=aif,
                              allow_incomplete_end=allow_incomplete_end, announce=True)
    for analysed in analyse_directory(request, prefetch=prefetch):
        result = analysed.result
        print(f"analysed series {result['series_uid']}: core {result['core_ml']} mL, Tmax > 6 s "
              f"{result['tmax6_ml']} mL, quality {result['quality']['level']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triage.node.child", description=__doc__.split("\n")[0])
    parser.add_argument("series_dir", type=Path)
    parser.add_argument("out_dir", type=Path, nargs="?")
    parser.add_argument("--stream", action="store_true", help="read the images named on stdin, then analyse")
    parser.add_argument("--series", required=True, help="Series Instance UID")
    parser.add_argument("--uid-seed", help="seed of the result objects' UIDs")
    parser.add_argument("--generation", type=int, default=1, help="analysis generation of the series")
    parser.add_argument("--references", type=Path, help="file listing the first time point's files")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--allow-incomplete-end", action="store_true",
                        help="analyse the complete time points when the last ones lack slices")
    parser.add_argument("--aif", type=voxel_argument, metavar="X,Y,Z", help="force the AIF at this source-image column,row,slice")
    parser.add_argument("--profile", help="threshold profile name or JSON file")
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args(argv)
    quiet_reading_validation()
    if not args.stream and (args.out_dir is None or args.uid_seed is None):
        parser.error("OUT_DIR and --uid-seed are needed without --stream")
    if args.parent_pid and not die_with_parent(args.parent_pid):
        return EXIT_INTERNAL  # the node died before the request took effect
    if args.stream:
        return stream(args.series_dir, args.series, args.config)
    return run(args.series_dir, args.out_dir, args.series, args.uid_seed, args.config, args.references,
               args.generation, args.allow_incomplete_end, args.aif, args.profile)


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is on disk (the outputs and objects are fsync'd): skip the interpreter's
    # teardown of SciPy, SimpleITK and highdicom (tenths of a second the node would wait for).
    os._exit(status)
