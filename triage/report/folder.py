"""The output directory of ``triage analyze``: what may be written over.

Kept apart from ``triage.report.outputs`` (which imports the imaging stack) so the command line checks
``--out`` before it scans the input.
"""

from __future__ import annotations

from pathlib import Path

from triage.base.errors import InputError


def check_output_dir(out_dir: Path) -> None:
    """Refuse an existing ``out_dir`` unless it is empty or an earlier triage output."""
    if out_dir.exists() and not (out_dir.is_dir() and (not any(out_dir.iterdir()) or (out_dir / "result.json").exists())):
        raise InputError(f"output {out_dir} exists and is not an earlier triage output; choose another --out")
