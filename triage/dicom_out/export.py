"""DICOM objects of one result, ready to send to PACS: ``OUT/dicom/*.dcm``.

From a result folder (:mod:`triage.report.folder`: ``result.json``, ``summary.png``,
``images/*.png``, ``maps/core.nii.gz``, ``maps/hypoperfusion.nii.gz``) and the source CT
perfusion files, :func:`write_result_objects` writes new series in the source study:

=====================  ==============================================  ======================
file                   object                                          module
=====================  ==============================================  ======================
``sc-<name>.dcm``      RGB Secondary Capture: summary, colour maps,    :mod:`triage.dicom_out.sc`
                       AIF/VOF check (one series each)
``seg.dcm``            Segmentation: core, Tmax > 6 s                  :mod:`triage.dicom_out.seg`
``sr.dcm``             Comprehensive SR, TID 1500 measurement report   :mod:`triage.dicom_out.sr`
=====================  ==============================================  ======================

Series and SOP Instance UIDs come from ``uid_seed`` (:mod:`triage.dicom_out.common`): a re-run with
the same seed writes the same instances. Each file is written to a temporary name, flushed to
disk and renamed, so a crash never leaves a half-written ``.dcm`` that a sender would pick up;
``.dcm`` files of an earlier run that are no longer produced, and temporary files of a run that
crashed, are removed.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydicom.dataset import Dataset

from triage.base.durable import fsync_directory
from triage.base.errors import InputError
from triage.dicom_out.common import ExportContext, declare_private_scheme
from triage.dicom_out.sc import secondary_captures
from triage.dicom_out.seg import read_masks, reference_images, segmentation
from triage.dicom_out.sr import measurement_report
from triage.report.folder import ResultFolder


def write_atomically(ds: Dataset, path: Path) -> None:
    """Write ``ds`` as a DICOM file at ``path``: temp file, fsync, rename, fsync directory."""
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(temporary, "wb") as stream:
            ds.save_as(stream, enforce_file_format=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_directory(path.parent)


def write_result_objects(out_dir: Path, source_files: list[Path], *, uid_seed: str,
                         generation: int = 1) -> list[Path]:
    """Write the SC, SEG and SR objects of the result in ``out_dir`` to ``out_dir/dicom``.

    Parameters
    ----------
    out_dir : Path
        A complete ``triage analyze`` output directory.
    source_files : list of Path
        The source CT perfusion files (other files are ignored); the segmentation and report
        reference the images of the first time point.
    uid_seed : str
        Seed of every UID written (same seed, same UIDs).
    generation : int
        The node's analysis generation of the series: from 2 on, a re-analysis with more
        images, which the Series Descriptions and Numbers tell apart from the earlier results.

    Returns
    -------
    list of Path
        The files written, pictures first, then the segmentation, then the report.

    Raises
    ------
    InputError
        The result is incomplete or unreadable, its maps do not lie on the source images, or
        the source headers do not allow a segmentation (one-line reason).
    """
    folder = ResultFolder(Path(out_dir))
    result = folder.read().document
    grid = read_masks(folder)
    images = reference_images([Path(p) for p in source_files], result["series_uid"], grid)
    context = ExportContext(uid_seed=str(uid_seed), reference=images.datasets[0], generation=generation)
    objects: list[tuple[str, Dataset]] = [
        (f"sc-{name}", image) for name, image in secondary_captures(folder.path, result, context, grid.direction)]
    try:
        seg = segmentation(grid, images, result, context)
    except ValueError as exc:  # highdicom refuses the source headers (e.g. no Frame of Reference UID)
        raise InputError(f"cannot build the segmentation from the source images: {' '.join(str(exc).split())}") from exc
    objects += [("seg", seg), ("sr", measurement_report(result, seg, images.datasets, context))]

    dicom_dir = folder.dicom_dir
    dicom_dir.mkdir(exist_ok=True)
    for leftover in dicom_dir.glob(".*.partial-*"):  # from a run that crashed mid-write
        leftover.unlink()
    written = []
    for name, ds in objects:
        path = dicom_dir / f"{name}.dcm"
        write_atomically(declare_private_scheme(ds), path)
        written.append(path)
    for stale in set(dicom_dir.glob("*.dcm")) - set(written):
        stale.unlink()
    return written
