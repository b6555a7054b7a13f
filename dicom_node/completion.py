"""When is a received series a whole CT perfusion series? Classification and completeness.

Pure functions on the :class:`~dicom_node.instance.InstanceInfo` records of one series (plus, for
Enhanced CT multi-frame objects, the per-frame planes read by :func:`frame_planes`):

- :func:`assess` classifies the series (``CTP``: CT with slice positions repeated over at least
  ``MIN_PERFUSION_FRAMES`` time points; anything else is ``other``, with the reason) and checks
  that the grid is whole: every slice position present at every time point, evenly spaced.
  Positions and times are grouped with the tolerances of :mod:`triage.imaging.assembly`, which reads the
  series for the analysis.
- :func:`required_quiet` says how long a series must stay without new images to be taken as
  received whole: not at all when it holds every image its headers announce
  (NumberOfTemporalPositions, ImagesInAcquisition), else a few of its sender's own gaps between
  images, and at least the node's quiet period while the sender is still on the series.
- :func:`decide` turns an assessment and the seconds since the last instance arrived into what
  the node does next.

The analysis (``triage.imaging.assembly.assemble``) refuses a grid with a position missing a time point
("N of M slice positions are incomplete"), so an incomplete perfusion series waits for its
missing instances. After ``incomplete_warn_seconds`` of silence it is reported as incomplete --
unless the missing images all come after its first K >= ``MIN_PERFUSION_FRAMES`` time points
(the scan was aborted, or its last images lost): then its K complete time points are analysed
(``triage analyze --allow-incomplete-end``), the result saying what was left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dicom_node.instance import ENHANCED_CT_IMAGE_STORAGE, InstanceInfo
from triage.base.dicom_header import read_header
from triage.base.grid import (
    MIN_PERFUSION_FRAMES,
    POSITION_TOLERANCE_MM,
    SAME_TIME_S,
    SLICE_SPACING_TOLERANCE,
    cluster_positions,
    describe_incomplete_end,
    whole_leading_time_points,
)

CTP, OTHER = "CTP", "other"
CADENCE_FACTOR = 4.0     # quiet for this many of the sender's longest gaps: the series is whole
CADENCE_FLOOR_S = 0.3    # s, the shortest such wait
# What decide() asks for.
WAIT, ANALYSE, IGNORE, INCOMPLETE, REPORT_INCOMPLETE, ANALYSE_WHOLE_TIMES = (
    "wait", "analyse", "ignore", "incomplete", "report incomplete", "analyse whole time points")


@dataclass(frozen=True)
class Plane:
    """One 2D image: a single-frame instance or one frame of a multi-frame instance.
    Position and orientation in LPS mm / direction cosines, time in s after midnight."""

    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    time_s: float | None


@dataclass(frozen=True)
class Assessment:
    """Classification and completeness of a series.

    ``n_positions`` distinct slice positions, ``n_times`` the time points at the most often
    repeated position (0 when unknown), ``missing`` says what is missing when not ``complete``.
    ``whole_times``: when not complete but every missing image comes after the first
    ``whole_times`` time points of every position (an aborted scan), that number; else 0.
    ``announced``: complete, and holding exactly the images its headers announce
    (:func:`announced_images`), so no more are to come.
    """

    classification: str
    reason: str
    n_instances: int
    n_positions: int = 0
    n_times: int = 0
    complete: bool = False
    missing: str = ""
    whole_times: int = 0
    announced: bool = False


    @property
    def is_perfusion(self) -> bool:
        return self.classification == CTP

    def summary(self) -> str:
        """E.g. ``CTP, complete: 8 positions x 25 time points``."""
        grid = f"{self.n_positions} positions x {self.n_times} time points"
        if not self.is_perfusion:
            return f"not analysed: {self.reason}"
        return f"CTP, complete: {grid}" if self.complete else f"CTP, incomplete: {self.missing}"


def planes_of(info: InstanceInfo) -> list[Plane]:
    """The plane of a single-frame instance (multi-frame objects: :func:`frame_planes`)."""
    return [Plane(info.position, info.orientation, info.time_s)]


def is_multiframe(info: InstanceInfo) -> bool:
    return info.sop_class_uid == ENHANCED_CT_IMAGE_STORAGE and info.number_of_frames > 1


def first_time_point_files(infos: list[InstanceInfo]) -> list[Path]:
    """The files the result objects reference: the earliest single-frame instance at each slice
    position (grouped along the slice normal like the assembly does), plus every instance that
    cannot be placed that way (multi-frame, no position, orientation or time)."""
    placeable = [not is_multiframe(i) and i.position is not None and i.orientation is not None
                 and i.time_s is not None for i in infos]
    placed = [i for i, ok in zip(infos, placeable) if ok]
    kept = [i.path for i, ok in zip(infos, placeable) if not ok]
    if placed:
        orientation = np.asarray(placed[0].orientation, dtype=float)
        normal = np.cross(orientation[:3], orientation[3:])
        labels, _ = cluster_positions(np.array([i.position for i in placed]) @ normal)
        earliest: dict[int, InstanceInfo] = {}
        for label, info in zip(labels.tolist(), placed):
            if label not in earliest or info.time_s < earliest[label].time_s:
                earliest[label] = info
        kept += [info.path for info in earliest.values()]
    return sorted(kept)


def frame_planes(path: Path) -> list[Plane]:
    """The planes of every frame of an Enhanced CT object, read from its header (the only
    function here that reads a file). Frame times: FrameAcquisitionDateTime, else the object's
    acquisition time, else ContentTime."""
    planes = read_header(Path(path)).planes
    return [Plane(p.position, p.orientation,
                  p.acquisition_time if p.acquisition_time is not None else p.content_time)
            for p in planes]


def assess(infos: list[InstanceInfo], multiframe_planes: dict[str, list[Plane]] | None = None
           ) -> Assessment:
    """Classify a series and check its grid.

    ``multiframe_planes`` maps the SOP Instance UID of each multi-frame instance
    (:func:`is_multiframe`) to its :func:`frame_planes`; without an entry such an instance
    counts as one plane.
    """
    multiframe_planes = multiframe_planes or {}
    n = len(infos)
    if not infos:
        return Assessment(OTHER, "no instances", 0)
    if not all(i.is_ct_image for i in infos) or {i.modality.upper() for i in infos} != {"CT"}:
        kinds = sorted({i.modality or "no modality" for i in infos})
        return Assessment(OTHER, f"not CT ({'/'.join(kinds)})", n)
    if all("LOCALIZER" in (t.upper() for t in i.image_type) for i in infos):
        return Assessment(OTHER, "LOCALIZER", n)
    planes = [p for i in infos for p in multiframe_planes.get(i.sop_instance_uid, planes_of(i))]
    unplaced = sum(p.position is None or p.orientation is None for p in planes)
    if unplaced:
        return Assessment(OTHER, f"{unplaced} of {len(planes)} images without image "
                                 "position/orientation", n)
    orientation = np.asarray(planes[0].orientation, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    labels, depths = cluster_positions(np.array([p.position for p in planes]) @ normal)
    untimed = sum(p.time_s is None for p in planes)
    if untimed:
        return Assessment(OTHER, f"{untimed} of {len(planes)} images without "
                                 "AcquisitionTime/ContentTime", n, n_positions=len(depths))
    labels, times = _distinct_time_points(labels, np.array([p.time_s for p in planes]))
    counts = np.bincount(labels)
    n_positions, n_times = len(counts), int(counts.max())
    if n_times == 1:
        return Assessment(OTHER, "single time point (NCCT or CTA)", n, n_positions, 1)
    if n_times < MIN_PERFUSION_FRAMES:
        return Assessment(OTHER, f"{n_times} time points (perfusion needs at least "
                                 f"{MIN_PERFUSION_FRAMES})", n, n_positions, n_times)
    reason = f"slice positions repeated over {n_times} time points"
    short = int((counts < n_times).sum())
    gap = _uneven_gap(depths)
    whole = whole_leading_time_points(labels, times) if short and not gap else 0
    if whole:
        return Assessment(CTP, reason, n, n_positions, n_times, complete=False,
                          missing=describe_incomplete_end(counts, whole), whole_times=whole)
    if short:
        missing = int((n_times - counts).sum())
        return Assessment(CTP, reason, n, n_positions, n_times, complete=False,
                          missing=f"{short} of {n_positions} positions lack time points "
                                  f"({missing} images missing of {n_positions * n_times})")
    if gap:
        return Assessment(CTP, reason, n, n_positions, n_times, complete=False, missing=gap)
    return Assessment(CTP, reason, n, n_positions, n_times, complete=True,
                      announced=announced_images(infos, n_positions) == len(planes))


def announced_images(infos: list[InstanceInfo], n_positions: int) -> int | None:
    """The number of images the headers say the series has, or None when they do not say it
    the same way on every instance: NumberOfTemporalPositions × ``n_positions``, else
    ImagesInAcquisition (an Enhanced CT object's frames: its NumberOfFrames, counted by
    :func:`assess`). A vendor whose ImagesInAcquisition counts one time point's images never
    matches a complete perfusion grid, so the count is only ever trusted when it fits."""
    if len(infos) == 1 and is_multiframe(infos[0]):
        return infos[0].number_of_frames
    temporal = {i.temporal_positions for i in infos}
    if len(temporal) == 1 and None not in temporal and min(temporal) > 0:
        return temporal.pop() * n_positions
    images = {i.images_in_acquisition for i in infos}
    if len(images) == 1 and None not in images and min(images) > 0:
        return images.pop()
    return None


def required_quiet(assessment: Assessment, arrivals: list[float], *, sending: bool,
                   quiet_seconds: float) -> float:
    """Seconds without a new image after which the series is taken as received whole.

    - 0 when the series holds every image its headers announce (``assessment.announced``).
    - Else ``CADENCE_FACTOR`` times the longest gap between two consecutive ``arrivals`` (s,
      sorted) of its images so far, at least ``CADENCE_FLOOR_S``: a sender that delivered the
      series at a steady pace and went quiet for several of its own gaps has finished it. A
      slow sender (a scanner sending each time point as it is reconstructed) thus gets a wait
      in proportion to its own pace.
    - While ``sending`` (an association whose latest image belongs to this series is still
      open: the sender has not moved on nor released), at least ``quiet_seconds``, so a
      sender pausing mid-series is not cut short at a whole time point.
    """
    if assessment.announced:
        return 0.0
    gaps = np.diff(np.asarray(arrivals, dtype=float)) if len(arrivals) > 1 else np.zeros(1)
    cadence = max(CADENCE_FACTOR * float(gaps.max()), CADENCE_FLOOR_S)
    return max(cadence, quiet_seconds) if sending else cadence


def decide(assessment: Assessment, quiet_for_s: float, *, quiet_seconds: float,
           incomplete_warn_seconds: float) -> str:
    """What to do with a series whose last instance arrived ``quiet_for_s`` seconds ago.

    ``WAIT`` while instances may still come; then ``IGNORE`` (not perfusion), ``ANALYSE``
    (perfusion, complete), ``INCOMPLETE`` (perfusion with a hole: keep waiting) or, once quiet
    for ``incomplete_warn_seconds``, ``ANALYSE_WHOLE_TIMES`` (only the end is missing and at
    least ``MIN_PERFUSION_FRAMES`` time points are whole: analyse those) or
    ``REPORT_INCOMPLETE``.
    """
    if quiet_for_s < quiet_seconds:
        return WAIT
    if not assessment.is_perfusion:
        return IGNORE
    if assessment.complete:
        return ANALYSE
    if quiet_for_s < incomplete_warn_seconds:
        return INCOMPLETE
    if assessment.whole_times >= MIN_PERFUSION_FRAMES:
        return ANALYSE_WHOLE_TIMES
    return REPORT_INCOMPLETE


def _distinct_time_points(labels: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The position labels and times (s) of the distinct time points at each position: images
    at one position closer than ``SAME_TIME_S`` in time are one time point (the first kept)."""
    order = np.lexsort((times, labels))
    sorted_labels, sorted_times = labels[order], times[order]
    new_time = np.ones(len(order), dtype=bool)
    new_time[1:] = (np.diff(sorted_labels) != 0) | (np.diff(sorted_times) >= SAME_TIME_S)
    return sorted_labels[new_time], sorted_times[new_time]


def _uneven_gap(depths: np.ndarray) -> str:
    """Why the slice gaps show a missing position ('' when they are even)."""
    if depths.size < 3:
        return ""
    gaps = np.diff(depths)
    median = float(np.median(gaps))
    if np.abs(gaps - median).max() <= SLICE_SPACING_TOLERANCE * median:
        return ""
    return (f"uneven slice gaps ({gaps.min():.2f} to {gaps.max():.2f} mm, median {median:.2f}; "
            f"positions within {POSITION_TOLERANCE_MM} mm are one): a slice position is missing")
