"""Child-process entry point of the node: analyse one spooled series and write its DICOM results.

    python -m triage.node.child SERIES_DIR OUT_DIR --series UID --uid-seed SEED
                                  [--generation N] [--references LIST] [--config FILE]
                                  [--allow-incomplete-end] [--aif X,Y,Z] [--profile NAME]
                                  [--parent-pid PID]

Runs ``triage analyze`` on ``SERIES_DIR`` into ``OUT_DIR`` (with ``--allow-incomplete-end``: the
complete time points of a series whose last ones lack slices; skipped when ``OUT_DIR/result.json``
exists: an earlier run completed the analysis before the node stopped; outputs are renamed into
place only when whole; ``--aif`` and ``--profile`` as in ``triage analyze``, for a re-run a user
requested), then writes the Secondary Capture, Segmentation and SR objects to
``OUT_DIR/dicom`` with UIDs derived from ``SEED``, so a re-run writes the same instances
(``N`` > 1, the node's re-analysis of a series, is named in their Series Descriptions). The
segmentation references the first time point: ``LIST`` (one path a line) names its files, which
spares reading every header of the series again; without it all of ``SERIES_DIR`` is searched.

Exit status as ``triage analyze``: 0 done, 2 bad input (``error: <reason>`` on stderr),
3 internal failure. With ``--parent-pid`` the process asks the kernel to kill it when the node
dies (``PR_SET_PDEATHSIG``), so a killed node leaves no orphan writing results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from triage.base.errors import EXIT_INPUT, EXIT_INTERNAL, InputError, one_line
from triage.base.lifetime import die_with_parent
from triage.cli import main as triage_main


def _has_complete_result(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a whole result of an earlier run (a result cut short by a power
    loss, or an unreadable one, is redone)."""
    try:
        return json.loads((out_dir / "result.json").read_text()).get("status") == "complete"
    except (OSError, ValueError, AttributeError):
        return False


def run(series_dir: Path, out_dir: Path, series_uid: str, uid_seed: str, config: Path | None,
        references: Path | None = None, generation: int = 1, allow_incomplete_end: bool = False,
        aif: str | None = None, profile: str | None = None) -> int:
    if not _has_complete_result(out_dir):
        command = ["analyze", str(series_dir), "--out", str(out_dir), "--series", series_uid, "--quiet"]
        command += ["--config", str(config)] if config else []
        command += ["--aif", aif] if aif else []
        command += ["--profile", profile] if profile else []
        status = triage_main(command + (["--allow-incomplete-end"] if allow_incomplete_end else []))
        if status != 0:
            return status
    from triage.dicom_out.export import write_result_objects  # after the analysis: its imports cost
    try:
        sources = ([Path(line) for line in references.read_text().splitlines() if line]
                   if references is not None else sorted(series_dir.glob("*.dcm")))
    except OSError as exc:
        print(f"error: cannot read the list of reference images {references}: {exc.strerror}", file=sys.stderr)
        return EXIT_INTERNAL
    try:
        written = write_result_objects(out_dir, sources, uid_seed=uid_seed, generation=generation)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:
        print(f"error: internal failure writing the DICOM results: {one_line(exc, 300, with_type=True)}",
              file=sys.stderr)
        return EXIT_INTERNAL
    print(f"wrote {len(written)} DICOM result objects to {out_dir / 'dicom'}")
    return 0


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
    parser.add_argument("--aif", metavar="X,Y,Z", help="force the AIF at this source-image column,row,slice")
    parser.add_argument("--profile", help="threshold profile name or JSON file")
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args(argv)
    if args.parent_pid and not die_with_parent(args.parent_pid):
        return EXIT_INTERNAL  # the node died before the request took effect
    return run(args.series_dir, args.out_dir, args.series, args.uid_seed, args.config, args.references,
               args.generation, args.allow_incomplete_end, args.aif, args.profile)


if __name__ == "__main__":
    sys.exit(main())
