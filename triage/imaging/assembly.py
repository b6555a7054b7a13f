"""Find CT perfusion series in a directory of DICOM files and assemble them into 4D arrays.

``scan`` reads headers only and groups files by SeriesInstanceUID; ``select`` picks the perfusion
series; ``assemble`` reads the pixel data of one series into a :class:`PerfusionSeries`.

Ordering uses only header content: slices are sorted by their position along the slice normal
(ImageOrientationPatient x ImagePositionPatient), time points by AcquisitionTime (else
ContentTime). File names and arrival order are ignored.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
from collections import Counter, defaultdict
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.errors import InvalidDicomError

from triage.base.dicom_header import (
    MAX_IMAGE_SIDE,
    FileHeader,
    NotSeriesImage,
    PlaneHeader,
    read_header,
    read_identifiers,
)
from triage.base.errors import InputError, one_line
from triage.base.grid import (
    MIN_PERFUSION_FRAMES,
    SAME_TIME_S,
    SLICE_SPACING_TOLERANCE,
    Geometry,
    cluster_positions,
    describe_incomplete_end,
    rank_within_position,
    unwrap_midnight,
    whole_leading_time_points,
)
from triage.base.language import Text, counted
from triage.base.lifetime import die_with_parent
from triage.imaging.pixels import block_mean_into, read_stored_planes
from triage.imaging.series import PerfusionSeries

WORKERS = max(2, min(8, 2 * (os.cpu_count() or 1)))
# Below this many files, starting worker processes for the header scan costs more than it saves.
PROCESS_POOL_MIN_FILES = 200


@dataclass
class SeriesCandidate:
    """One series found by :func:`scan`.

    ``n_positions`` counts distinct slice positions, ``n_frames`` the time points at the most
    often repeated position (0 when positions are unknown). ``headers`` caches the header read
    of ``scan`` so :func:`assemble` does not parse headers twice; ``unreadable`` lists files in
    the scanned tree that looked like DICOM but could not be read (they may belong here).
    """

    study_uid: str
    series_uid: str
    description: str
    modality: str
    files: list[Path]
    n_positions: int
    n_frames: int
    is_perfusion: bool
    reason: str
    headers: list[FileHeader] = field(default_factory=list, repr=False)
    unreadable: list[tuple[Path, str]] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """One-line description for messages."""
        return (f"'{self.description}' ({self.modality or 'no modality'}, "
                f"{self.n_positions} positions x {self.n_frames} time points: {self.reason})")


@dataclass
class ScanResult:
    """Series found under a directory and the files that were not usable, with the reason."""

    candidates: list[SeriesCandidate]
    ignored: list[tuple[Path, str]]


def scan(root: Path) -> ScanResult:
    """Group the DICOM files under ``root`` (any nesting) into series and classify them.

    Only headers are read. A series is perfusion when it is CT with slice positions repeated
    over at least 3 time points.

    Raises
    ------
    InputError
        ``root`` does not exist, holds no files, or holds no readable DICOM file.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"input path does not exist: {root}")
    paths = [root] if root.is_file() else sorted(
        Path(folder) / name for folder, _, names in os.walk(root) for name in names)
    if not paths:
        raise InputError(f"no files in {root}")
    return scan_headers(root, paths, _read_headers(paths))


def scan_headers(root: Path, paths: list[Path], reads: list[FileHeader | str]) -> ScanResult:
    """What :func:`scan` finds in ``root`` given the header read of each of its files ``paths``
    (a :class:`FileHeader`, or the reason the file is ignored, as :func:`read_file_header`
    returns them): for a caller that read the headers as the files arrived."""
    headers, ignored, unreadable = _sorted_reads(paths, reads)
    if not headers:
        example = f" (e.g. {ignored[0][0].name}: {ignored[0][1]})" if ignored else ""
        raise InputError(f"no DICOM files in {root}: {_count(len(ignored), 'file')} "
                         f"ignored{example}")
    by_series: dict[str, list[FileHeader]] = defaultdict(list)
    for header in headers:
        by_series[header.series_uid].append(header)
    candidates = [_candidate(group, unreadable) for group in by_series.values()]
    candidates.sort(key=lambda c: (not c.is_perfusion, c.description, c.series_uid))
    return ScanResult(candidates=candidates, ignored=ignored)


def select(scan: ScanResult, series_uid: str | None = None) -> list[SeriesCandidate]:
    """The perfusion series to analyse: all of them, or the one with ``series_uid``.

    Raises
    ------
    InputError
        No series qualifies, ``series_uid`` is unknown, or the requested series is not perfusion.
    """
    found = _found_summary(scan.candidates)
    if series_uid is not None:
        chosen = [c for c in scan.candidates if c.series_uid == series_uid]
        if not chosen:
            raise InputError(f"series {series_uid} not found; found {found}")
        if not chosen[0].is_perfusion:
            raise InputError(f"series {series_uid} is not a CT perfusion series: "
                             f"{chosen[0].reason}")
        return chosen
    perfusion = [c for c in scan.candidates if c.is_perfusion]
    if not perfusion:
        raise InputError(f"no CT perfusion series found; found {found}")
    return perfusion


def assemble(candidate: SeriesCandidate, *, max_matrix: int = 256, drop_incomplete_end: bool = False,
             decoded: DecodedPlanes | None = None) -> PerfusionSeries:
    """Read one series into a (t, z, y, x) float32 HU array with times and geometry.

    Every slice position must have every time point. With ``drop_incomplete_end``, a series
    whose missing images all come after its first K time points (an aborted scan, lost last
    images; see :func:`whole_leading_time_points`) keeps those K time points, K at least
    ``MIN_PERFUSION_FRAMES``: ``frames_left_out`` counts the others and a warning says so.

    Images larger than ``max_matrix`` in-plane are block-averaged by the integer factor
    ``f = ceil(max(rows, cols) / max_matrix)`` while reading; ``geometry`` is then the reduced
    grid and ``acquisition_geometry`` / ``acquisition_shape`` the source grid.

    ``attributes`` holds the source identifiers (PatientID, PatientName, AccessionNumber,
    StudyDescription, SeriesDescription, StudyDate, Manufacturer, KVP as strings),
    ``SOPInstanceUIDs`` (t, z) str array of the source image of each plane, ``FrameNumbers``
    (t, z) int array of 1-based frame numbers (multi-frame sources only) and ``time_source``
    (the tag the times come from).

    ``decoded`` holds planes already read (:func:`decode_planes`, e.g. as the files arrived);
    they are used where their reduction factor is this one's, the other planes are read.

    Raises
    ------
    InputError
        Inconsistent geometry, missing or ambiguous time points, unreadable pixel data, or a
        single time point.
    """
    headers, unreadable = candidate.headers, list(candidate.unreadable)
    if not headers:
        headers, ignored, _ = _sorted_reads(candidate.files, _read_headers(candidate.files))
        unreadable += ignored
        if not headers:
            raise InputError(f"none of the {len(candidate.files)} files of series "
                             f"{candidate.series_uid} could be read")
    modalities = {h.modality for h in headers}
    if modalities != {"CT"}:
        raise InputError(f"modality {'/'.join(sorted(modalities)) or 'missing'}: "
                         "not a CT series")
    warnings: list[str] = []
    planes = _unique_planes(headers, warnings)
    _check_uniform(planes)
    layout = _Layout(planes, unreadable, warnings, drop_incomplete_end)
    rows, columns = planes[0].rows, planes[0].columns
    factor = max(1, math.ceil(max(rows, columns) / max_matrix))
    reduced = (rows // factor, columns // factor)
    if factor > 1 and (rows % factor or columns % factor):
        warnings.append(Text("assembly.reduction_dropped", factor=factor, rows=rows % factor,
                             columns=columns % factor))
    data = np.empty((layout.n_frames, layout.n_slices) + reduced, dtype=np.float32)
    usable = decoded.planes if decoded is not None and decoded.factor == factor else {}
    _read_pixels(layout, {h.path: h for h in headers}, factor, data, usable)
    if unreadable:
        warnings.append(counted("assembly.unreadable", len(unreadable)))
    geometry = layout.geometry(factor)
    first = headers[0]
    attributes, age = read_identifiers(first.path)
    attributes.update(SOPInstanceUIDs=layout.sop_uids, time_source=layout.time_source)
    if layout.frame_numbers is not None:
        attributes["FrameNumbers"] = layout.frame_numbers
    return PerfusionSeries(
        data=data, times=layout.times, geometry=geometry, study_uid=first.study_uid,
        series_uid=first.series_uid, patient_age=age, attributes=attributes,
        acquisition_geometry=layout.geometry(1) if factor > 1 else None,
        acquisition_shape=(layout.n_slices, rows, columns) if factor > 1 else None,
        warnings=warnings, frames_left_out=layout.frames_left_out)


class _Layout:
    """Where each plane goes in the (t, z) grid, with frame times and the slice geometry."""

    def __init__(self, planes: list[PlaneHeader], unreadable: list, warnings: list[str],
                 drop_incomplete_end: bool = False):
        orientation = np.asarray(planes[0].orientation)
        self.row_dir, self.col_dir = orientation[:3], orientation[3:]
        self.normal = np.cross(self.row_dir, self.col_dir)
        positions = np.array([p.position for p in planes])
        labels, depths = cluster_positions(positions @ self.normal)
        self._check_in_plane_offsets(positions, planes[0].pixel_spacing)
        times, self.time_source = _choose_times(planes, labels, warnings)
        order = np.lexsort((times, labels))
        sorted_labels, sorted_times = labels[order], times[order]
        same = (np.diff(sorted_labels) == 0) & (np.diff(sorted_times) < SAME_TIME_S)
        if same.any():
            raise InputError(f"ambiguous series: {_count(int(same.sum()), 'extra instance')} "
                             "at the same slice position and time (within "
                             f"{SAME_TIME_S * 1000:.0f} ms) with a different SOPInstanceUID")
        counts = np.bincount(labels)
        n_frames, self.frames_left_out = int(counts.max()), 0
        if (counts < n_frames).any():
            n_frames = self._whole_time_points(labels, times, counts, drop_incomplete_end,
                                               unreadable, warnings)
            order = order[rank_within_position(sorted_labels, counts) < n_frames]
            sorted_labels, sorted_times = labels[order], times[order]
        if n_frames == 1:
            raise InputError("one time point: not a perfusion series")
        self.n_slices, self.n_frames = len(counts), n_frames
        self.index = order.reshape(self.n_slices, n_frames).T       # (t, z) -> plane number
        self.planes = planes
        frame_times = sorted_times.reshape(self.n_slices, n_frames).T
        self.times = (frame_times.mean(axis=1) - frame_times[0].mean()).astype(np.float64)
        spread = float(np.ptp(frame_times, axis=1).max())
        if spread > 0.5:
            warnings.append(Text("assembly.slice_time_spread", spread_s=spread))
        self.slice_spacing = _slice_spacing(depths, planes)
        self.sop_uids = np.array([[planes[i].sop_uid for i in row] for row in self.index],
                                 dtype=str)
        frames = np.array([-1 if p.frame is None else p.frame for p in planes])[self.index]
        self.frame_numbers = frames + 1 if (frames >= 0).any() else None

    def _whole_time_points(self, labels: np.ndarray, times: np.ndarray, counts: np.ndarray,
                           drop_incomplete_end: bool, unreadable: list, warnings: list[str]) -> int:
        """The time points to keep of a grid with positions missing some: the whole leading
        ones when ``drop_incomplete_end`` allows it (warned, ``frames_left_out`` set), else
        refused."""
        n_whole = whole_leading_time_points(labels, times) if drop_incomplete_end else 0
        if n_whole < MIN_PERFUSION_FRAMES:
            note = (f"; {_count(len(unreadable), 'DICOM file')} in the input could not be "
                    "read" if unreadable else "")
            raise InputError(f"{int((counts < counts.max()).sum())} of {len(counts)} slice "
                             f"positions are incomplete (fewer than {counts.max()} time "
                             f"points){note}")
        self.frames_left_out = int(counts.max()) - n_whole
        warnings.append(counted("assembly.incomplete_end", self.frames_left_out,
                                incomplete=describe_incomplete_end(counts, n_whole)))
        return n_whole

    def _check_in_plane_offsets(self, positions: np.ndarray, pixel_spacing) -> None:
        in_plane = positions @ np.stack([self.row_dir, self.col_dir], axis=1)
        offset = float(np.abs(in_plane - in_plane[0]).max())
        if offset > max(0.1, 0.1 * min(pixel_spacing)):
            raise InputError(f"slices are shifted in-plane by up to {offset:.2f} mm (gantry "
                             "tilt or sheared stack): not supported")

    def geometry(self, factor: int) -> Geometry:
        """Grid of the data after block-averaging by ``factor`` (1: acquisition grid)."""
        row_spacing, col_spacing = self.planes[0].pixel_spacing
        first = np.asarray(self.planes[self.index[0, 0]].position)
        centre = first + (factor - 1) / 2 * (col_spacing * self.row_dir
                                             + row_spacing * self.col_dir)
        direction = np.stack([self.row_dir, self.col_dir, self.normal], axis=1)
        return Geometry(spacing=(col_spacing * factor, row_spacing * factor, self.slice_spacing),
                        origin=tuple(float(v) for v in centre),
                        direction=tuple(float(v) for v in direction.ravel()))

    def file_jobs(self) -> dict[Path, list[tuple[int, int, int]]]:
        """Per file, the (frame, t, z) destinations of its planes."""
        jobs: dict[Path, list[tuple[int, int, int]]] = defaultdict(list)
        for (t, z), plane_number in np.ndenumerate(self.index):
            plane = self.planes[plane_number]
            jobs[plane.path].append((plane_number, t, z))
        return jobs


@dataclass
class DecodedPlanes:
    """Planes in HU on a grid reduced by ``factor``, keyed by (file, frame index), as
    :func:`assemble` places them."""

    factor: int
    planes: dict[tuple[Path, int], np.ndarray] = field(default_factory=dict)


def leading_frames(headers: list[FileHeader], decoded: DecodedPlanes) -> tuple[list[tuple[np.ndarray, ...]], Geometry]:
    """The whole leading time points of a series of which ``headers`` have arrived so far,
    each as its planes from ``decoded`` in slice order (as :func:`assemble` would place them
    were these all the files), and their grid; stops at the first plane not decoded.
    InputError while fewer than MIN_PERFUSION_FRAMES time points are whole."""
    planes = _unique_planes(headers, [])
    _check_uniform(planes)
    layout = _Layout(planes, [], [], drop_incomplete_end=True)
    frames = []
    for row in layout.index:
        frame = tuple(decoded.planes.get((planes[i].path, planes[i].frame or 0)) for i in row)
        if any(plane is None for plane in frame):
            break
        frames.append(frame)
    return frames, layout.geometry(decoded.factor)


def reduction_factor(header: FileHeader, max_matrix: int) -> int:
    """The in-plane block-averaging factor :func:`assemble` uses for images like ``header``'s."""
    plane = header.planes[0]
    return max(1, math.ceil(max(plane.rows, plane.columns) / max_matrix))


def decode_planes(header: FileHeader, factor: int) -> dict[tuple[Path, int], np.ndarray]:
    """Every plane of one file in HU, block-averaged by ``factor``, exactly as :func:`assemble`
    reads it (InputError for pixel data that cannot be read or does not fit the header)."""
    first = header.planes[0]
    _check_image_size(first.rows, first.columns)
    shape = (first.rows, first.columns)
    stored = _stored(header, shape, np.empty(shape, dtype=np.int16))
    reduced = (first.rows // factor, first.columns // factor)
    scratch = np.empty((reduced[0] * factor, reduced[1]), np.float32)
    out = {}
    for plane in header.planes:
        target = np.empty(reduced, np.float32)
        _plane_hu(stored, plane, factor, target, scratch, header.path)
        out[(header.path, plane.frame or 0)] = target
    return out


def _stored(header: FileHeader, shape: tuple[int, int], buffer: np.ndarray) -> np.ndarray:
    stored = read_stored_planes(header, buffer)
    if stored.shape[1:] != shape:
        raise InputError(f"{header.path.name}: pixel data is {stored.shape[1:]}, header says {shape}")
    return stored


def _plane_hu(stored: np.ndarray, plane: PlaneHeader, factor: int, target: np.ndarray,
              scratch: np.ndarray, path: Path) -> None:
    """One plane of the stored frames into ``target``: block mean, then rescale to HU."""
    frame = plane.frame or 0
    if frame >= stored.shape[0]:
        raise InputError(f"{path.name} has {stored.shape[0]} frames, expected more")
    block_mean_into(stored[frame], factor, target, scratch)
    if plane.slope != 1.0:
        target *= np.float32(plane.slope)
    target += np.float32(plane.intercept)


def _read_pixels(layout: _Layout, headers: dict[Path, FileHeader], factor: int,
                 data: np.ndarray, decoded: dict[tuple[Path, int], np.ndarray]) -> None:
    """Fill ``data`` (t, z, y, x) in place, one file per task, on a thread pool; planes found
    in ``decoded`` are copied, not read.

    Each thread reuses one read buffer and one scratch array, so memory stays flat.
    """
    planes = layout.planes
    shape = (planes[0].rows, planes[0].columns)
    local = threading.local()

    def fill(path: Path, targets: list[tuple[int, int, int]]) -> None:
        missing = []
        for plane_number, t, z in targets:
            cached = decoded.get((path, planes[plane_number].frame or 0))
            if cached is None:
                missing.append((plane_number, t, z))
            else:
                data[t, z] = cached
        if not missing:
            return
        if not hasattr(local, "buffer"):
            local.buffer = np.empty(shape, dtype=np.int16)
            local.scratch = np.empty((data.shape[2] * factor, data.shape[3]), np.float32)
        stored = _stored(headers[path], shape, local.buffer)
        for plane_number, t, z in missing:
            _plane_hu(stored, planes[plane_number], factor, data[t, z], local.scratch, path)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = [pool.submit(fill, path, targets)
                   for path, targets in layout.file_jobs().items()]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            future.result()


def read_file_header(path: Path) -> FileHeader | str:
    """The header of ``path``, or why it is ignored."""
    try:
        return read_header(path)
    except InvalidDicomError:
        return "not DICOM"
    except NotSeriesImage as exc:
        return str(exc)
    except Exception as exc:
        return f"unreadable DICOM header ({one_line(exc, 150, with_type=True)})"


def _read_headers(paths: list[Path]) -> list[FileHeader | str]:
    """:func:`read_file_header` of each of ``paths``, in worker processes when there are many.

    Header parsing is pure Python (it holds the GIL), so threads do not help; separate
    processes do.
    """
    workers = os.cpu_count() or 1
    if len(paths) < PROCESS_POOL_MIN_FILES or workers == 1:
        return [read_file_header(path) for path in paths]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        return list(pool.map(read_file_header, paths, chunksize=max(1, len(paths) // (4 * workers))))


def _sorted_reads(paths: list[Path], results: list[FileHeader | str]):
    """The headers among ``results`` (of ``paths``), the ignored files with reasons, and the
    subset of ignored files that looked like DICOM but could not be read."""
    headers = [r for r in results if isinstance(r, FileHeader)]
    ignored = [(p, r) for p, r in zip(paths, results) if isinstance(r, str)]
    unreadable = [(p, r) for p, r in ignored
                  if r.startswith("unreadable") or r == "no SeriesInstanceUID"]
    return headers, ignored, unreadable


def _candidate(headers: list[FileHeader], unreadable) -> SeriesCandidate:
    first = headers[0]
    planes = [p for h in headers for p in h.planes]
    n_positions = n_frames = 0
    located = [p for p in planes if p.position is not None and p.orientation is not None]
    if located:
        orientation = np.asarray(located[0].orientation)
        normal = np.cross(orientation[:3], orientation[3:])
        labels, _ = cluster_positions(np.array([p.position for p in located]) @ normal)
        unique = {(label, p.sop_uid, p.frame) for label, p in zip(labels, located)}
        counts = np.bincount([label for label, _, _ in unique])
        n_positions, n_frames = len(counts), int(counts.max())
    modalities = sorted({h.modality for h in headers})
    if modalities != ["CT"]:
        is_perfusion, reason = False, f"modality {'/'.join(modalities) or 'missing'}"
    elif all("LOCALIZER" in h.image_type for h in headers):
        is_perfusion, reason = False, "localizer"
    elif not located:
        is_perfusion, reason = False, "no image position/orientation"
    elif n_frames == 1:
        is_perfusion, reason = False, "one time point per position"
    elif n_frames < MIN_PERFUSION_FRAMES:
        is_perfusion, reason = False, (f"{n_frames} time points per position (perfusion needs "
                                       f"at least {MIN_PERFUSION_FRAMES})")
    else:
        is_perfusion, reason = True, f"slice positions repeated over {n_frames} time points"
    return SeriesCandidate(
        study_uid=first.study_uid, series_uid=first.series_uid, description=first.description,
        modality="/".join(modalities), files=[h.path for h in headers],
        n_positions=n_positions, n_frames=n_frames, is_perfusion=is_perfusion, reason=reason,
        headers=headers, unreadable=list(unreadable))


def _found_summary(candidates: list[SeriesCandidate], limit: int = 6) -> str:
    listed = "; ".join(c.summary() for c in candidates[:limit])
    more = f"; and {len(candidates) - limit} more" if len(candidates) > limit else ""
    return f"{len(candidates)} series: {listed}{more}"


def _unique_planes(headers: list[FileHeader], warnings: list[str]) -> list[PlaneHeader]:
    """Planes with exact duplicates (same SOPInstanceUID and frame) dropped."""
    unique: dict[tuple[str, int | None], PlaneHeader] = {}
    for header in headers:
        for plane in header.planes:
            unique.setdefault((plane.sop_uid, plane.frame), plane)
    n_planes = sum(len(h.planes) for h in headers)
    if len(unique) < n_planes:
        warnings.append(Text("assembly.duplicates", n=n_planes - len(unique)))
    return list(unique.values())


def _check_uniform(planes: list[PlaneHeader]) -> None:
    """Refuse a series whose images do not share one in-plane grid."""
    for name, values in (("position", [p.position for p in planes]),
                         ("orientation", [p.orientation for p in planes]),
                         ("pixel spacing", [p.pixel_spacing for p in planes])):
        missing = sum(v is None for v in values)
        if missing:
            raise InputError(f"{missing} of {len(planes)} images have no image {name}")
    sizes = Counter((p.rows, p.columns) for p in planes)
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c} ({_count(n, 'image')})" for (r, c), n in sizes.most_common())
        raise InputError(f"mixed image sizes in one series: {listed}")
    _check_image_size(*next(iter(sizes)))
    orientations = np.array([p.orientation for p in planes])
    differ = int((np.abs(orientations - orientations[0]).max(axis=1) > 1e-4).sum())
    if differ:
        raise InputError(f"mixed image orientations in one series: {_count(differ, 'image')} "
                         "not oriented like the first")
    spacings = np.array([p.pixel_spacing for p in planes])
    if (spacings <= 0).any():
        raise InputError("pixel spacing is not positive")
    if (np.abs(spacings - spacings[0]) > 1e-3 * spacings[0]).any():
        raise InputError("mixed pixel spacings in one series")


def _check_image_size(rows: int, columns: int) -> None:
    """Refuse images without a size or larger than ``MAX_IMAGE_SIDE`` a side (before any
    buffer for them is allocated)."""
    if 0 in (rows, columns):
        raise InputError("images have no Rows/Columns")
    if max(rows, columns) > MAX_IMAGE_SIDE:
        raise InputError(f"images of {rows}x{columns} pixels: larger than "
                         f"{MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} are refused")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _choose_times(planes: list[PlaneHeader], labels: np.ndarray, warnings: list[str]):
    """Times (s, midnight wrap undone) per plane and the name of the tag they come from.

    AcquisitionTime is used when every image has one that separates its time points; else
    ContentTime (with a warning); a tag present everywhere but not separating time points
    is still used so the ambiguity is reported. Order-only tags are refused.
    """
    sources = {"AcquisitionTime": [p.acquisition_time for p in planes],
               "ContentTime": [p.content_time for p in planes]}
    complete = {name: unwrap_midnight(np.array(values, dtype=np.float64))
                for name, values in sources.items() if None not in values}
    if not complete:
        if all(p.order_index is not None for p in planes):
            raise InputError("no AcquisitionTime or ContentTime: frames can be ordered by "
                             "AcquisitionNumber/TemporalPositionIndex but their times in "
                             "seconds, which deconvolution needs, are unknown")
        raise InputError("no AcquisitionTime or ContentTime in the series: frame times unknown")
    name = next((n for n, t in complete.items() if _separates_time_points(t, labels)),
                next(iter(complete)))
    if name != "AcquisitionTime":
        warnings.append(Text("assembly.frame_times_from", attribute=name))
    return complete[name], name


def _separates_time_points(times: np.ndarray, labels: np.ndarray) -> bool:
    order = np.lexsort((times, labels))
    same = (np.diff(labels[order]) == 0) & (np.diff(times[order]) < SAME_TIME_S)
    return not same.any()


def _slice_spacing(depths: np.ndarray, planes: list[PlaneHeader]) -> float:
    """Slice spacing in mm from the slice depths; SliceThickness for a single slice."""
    if depths.size == 1:
        thickness = planes[0].thickness
        if not thickness or thickness <= 0:
            raise InputError("a single slice position without SliceThickness: "
                             "slice spacing unknown")
        return float(thickness)
    gaps = np.diff(depths)
    median = float(np.median(gaps))
    if np.abs(gaps - median).max() > SLICE_SPACING_TOLERANCE * median:
        raise InputError(f"non-uniform slice spacing: gaps from {gaps.min():.2f} to "
                         f"{gaps.max():.2f} mm (missing or overlapping slices?)")
    return float((depths[-1] - depths[0]) / (depths.size - 1))
