"""The completion monitor thread: find the complete perfusion series, queue their analyses.

Every ``MONITOR_TICK_S`` the ``completion`` thread looks at the series that received no image for
a moment and classifies them (:mod:`dicom_node.completion`): a complete CT perfusion series gets
an analysis job (for the analysis runner, :mod:`triage.node.analysis_runner`) once it has been
quiet for :func:`~dicom_node.completion.required_quiet` (at once when it holds every image its
headers announce; else a few of its sender's own gaps between images, and at least
``quiet_seconds`` while an open association is still on the series); others are recorded and
left alone, with the reason in the log. A perfusion series still incomplete
after ``incomplete_warn_seconds`` is reported (and alerted, :mod:`triage.node.alert_composer`)
and waits, unless only its last time points lack images (an aborted scan): its complete time
points are then analysed (``--allow-incomplete-end``; the result's quality warnings say what was
left out).

A new instance for an analysed series starts the next *generation*: a re-analysis into a results
directory of its own. The newest generation supersedes the older ones: the monitor has the
analysis runner stop their running analyses, and their results not yet sent are not sent. The
result series of a re-analysis say so ("re-analysis 2") in their Series Description and have
Series Numbers of their own.

With ``--retention-days``, the same thread removes the series whose work is done, some time
after their last image: spooled images, results and database rows.

Research use only.
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import TYPE_CHECKING, Callable

from dicom_node.completion import (
    ANALYSE,
    ANALYSE_WHOLE_TIMES,
    IGNORE,
    INCOMPLETE,
    OTHER,
    REPORT_INCOMPLETE,
    Assessment,
    assess,
    decide,
    frame_planes,
    is_multiframe,
    required_quiet,
)
from dicom_node.instance import InstanceInfo
from dicom_node.spool import Spool
from triage.base.durable import fsync_directory
from triage.base.errors import one_line
from triage.node.alert_composer import AlertComposer
from triage.node.context import NodeContext
from triage.store.records import SeriesRecord

if TYPE_CHECKING:
    from triage.node.analysis_runner import AnalysisRunner
    from triage.node.streams import StreamFeeds

log = logging.getLogger("triage.node")

RETENTION_SWEEP_S = 600.0     # how often expired series are looked for (more often for short retention)
MONITOR_TICK_S = 0.1          # how often quiet series are looked at
FILED_WAIT_S = 1.0            # how long a look waits for the spool to file the images stored


class CompletionMonitor:
    """The series of ``context``'s store, spooled in ``spool``: their analyses are queued for
    ``runner``, their alerts written with ``alerts``. :meth:`run` is the thread."""

    def __init__(self, context: NodeContext, spool: Spool, runner: AnalysisRunner, alerts: AlertComposer, *,
                 sending: Callable[[], frozenset[str]] = frozenset, streams: StreamFeeds | None = None):
        self._context = context
        self._streams = streams  # series read ahead: dropped when they will not be analysed now
        self._spool = spool
        self._runner = runner
        self._alerts = alerts
        self._sending = sending  # the series that open associations are still sending
        self._reported: set[tuple[str, int]] = set()  # (series, instances) reported incomplete
        # series -> ((instances, last received), assessment, arrival times): assessed once per change
        self._assessed: dict[str, tuple[tuple[int, float], Assessment, list[float]]] = {}

    def run(self) -> None:
        settings, stopping = self._context.settings, self._context.stopping
        next_sweep = 0.0
        while not stopping.wait(MONITOR_TICK_S):
            try:
                self._check_series()
            except Exception as exc:
                log.error("completion check failed (%s); retrying", one_line(exc, 300, with_type=True))
            if settings.retention_days > 0 and time.monotonic() >= next_sweep:
                retention_s = settings.retention_days * 86400.0
                next_sweep = time.monotonic() + min(RETENTION_SWEEP_S, retention_s / 4)
                try:
                    self._remove_expired(time.time() - retention_s)
                except Exception as exc:
                    log.error("retention sweep failed (%s); retrying", one_line(exc, 300, with_type=True))

    def _remove_expired(self, before: float) -> None:
        """Remove the series whose last image arrived before ``before`` and whose work is done
        (analysed and sent, ignored, failed or never complete): spooled images, results, and
        database rows, in that order (a crash in between leaves rows that the next sweep
        removes, never images that a restart would register and analyse again). A series with
        a pending send (PACS down) is kept until its results are sent."""
        store, results = self._context.store, self._context.results
        for record in store.expired_series(before):
            with self._spool.removing():  # no image of it can be stored and recorded meanwhile
                if not store.expired_series(before, record.series_uid):
                    continue  # an image arrived, or work was queued, since the first look
                files, size = self._spool.remove_series(record.study_uid, record.series_uid)
                series_dir = results.series_dir(record.series_uid)
                shutil.rmtree(series_dir, ignore_errors=True)
                if series_dir.exists():
                    log.error("retention: cannot remove %s; retrying at the next sweep", series_dir)
                    continue
                if results.path.exists():
                    fsync_directory(results.path)
                store.forget_series(record.series_uid)
            log.info("retention: removed series %s of study %s from %s (%d images, %.1f MB, with "
                     "any results): last image %s ago", record.series_uid, record.study_uid,
                     record.calling_aet or "?", files, size / 1e6, _age_text(time.time() - record.last_received))

    def _check_series(self) -> None:
        s, store = self._context.settings, self._context.store
        if not self._spool.wait_filed(FILED_WAIT_S):
            return  # the spool logs why its images are not filed; analyses would miss them
        now = time.time()
        sending = self._sending()
        quiet = store.series_in_state("receiving", quiet_since=now - MONITOR_TICK_S)
        for record in quiet:
            self._decide(record, now, sending=record.series_uid in sending)
        waiting = {record.series_uid for record in quiet}
        for uid in [uid for uid in self._assessed if uid not in waiting]:
            del self._assessed[uid]
        # Once quiet for incomplete_warn_seconds, an incomplete series is decided again: its
        # complete time points analysed when only the end is missing, else reported once.
        for record in store.series_in_state("incomplete", quiet_since=now - s.incomplete_warn_seconds):
            if (record.series_uid, record.n_instances) not in self._reported:
                self._decide(record, now, sending=False)

    def _assessment(self, record: SeriesRecord) -> tuple[Assessment, list[float]]:
        """The series' assessment and its images' arrival times, read again only when it changed."""
        key = (record.n_instances, record.last_received)
        cached = self._assessed.get(record.series_uid)
        if cached is None or cached[0] != key:
            store = self._context.store
            cached = (key, assess_series(record.series_uid, store.instances(record.series_uid)),
                      store.arrival_times(record.series_uid))
            self._assessed[record.series_uid] = cached
        return cached[1], cached[2]

    def _decide(self, record: SeriesRecord, now: float, *, sending: bool) -> None:
        s, store = self._context.settings, self._context.store
        assessment, arrivals = self._assessment(record)
        quiet_s = required_quiet(assessment, arrivals, sending=sending, quiet_seconds=s.quiet_seconds)
        decision = decide(assessment, now - record.last_received, quiet_seconds=quiet_s,
                          incomplete_warn_seconds=s.incomplete_warn_seconds)
        uid, since = record.series_uid, record.last_received
        received = (f"received series {uid}: {assessment.n_instances} instances from "
                    f"{record.calling_aet or '?'}")
        if decision in (IGNORE, INCOMPLETE, REPORT_INCOMPLETE) and self._streams is not None:
            self._streams.drop(uid)
        if decision == IGNORE:
            if store.set_series_state(uid, "ignored", classification=OTHER, reason=assessment.reason,
                                      n_positions=assessment.n_positions,
                                      n_times=assessment.n_times, unchanged_since=since):
                log.info("%s (%s)", received, assessment.summary())
        elif decision == ANALYSE:
            self._start_generation(record, assessment, f"{received} ({assessment.summary()})")
        elif decision == ANALYSE_WHOLE_TIMES:
            self._start_generation(record, assessment, (
                f"series {uid}: {assessment.missing} after {now - since:.0f} s quiet: analysing the "
                f"{assessment.whole_times} complete time points"))
        elif decision in (INCOMPLETE, REPORT_INCOMPLETE):
            if store.set_series_state(uid, "incomplete", classification=assessment.classification,
                                      reason=assessment.missing,
                                      n_positions=assessment.n_positions,
                                      n_times=assessment.n_times, unchanged_since=since):
                if record.state == "receiving":
                    log.info("%s (%s); waiting for the missing images", received, assessment.summary())
                if decision == REPORT_INCOMPLETE:
                    self._report_incomplete(store.series(uid), now)

    def _start_generation(self, record: SeriesRecord, assessment: Assessment, what: str) -> None:
        """Queue the next analysis of a series (unless an instance arrived since ``record``),
        logging ``what`` led to it, and supersede the older generations."""
        started = self._context.store.start_generation(record.series_uid, reason=assessment.reason,
                                                       n_positions=assessment.n_positions,
                                                       n_times=assessment.n_times,
                                                       unchanged_since=record.last_received)
        if started is not None:
            log.info("%s; analysis generation %d queued", what, started.number)
            self._runner.supersede(started)
            self._context.wake_workers()

    def _report_incomplete(self, record: SeriesRecord, now: float) -> None:
        key = (record.series_uid, record.n_instances)
        if key in self._reported:
            return
        self._reported.add(key)
        log.warning("series %s still incomplete after %.0f s without new images: %s; not analysed "
                    "(the analysis needs every slice position at every time point) until the "
                    "missing images arrive", record.series_uid, now - record.last_received,
                    record.reason)
        alerts = self._alerts.messages(record.series_uid, record.generation + 1, "incomplete", now,
                                       missing=record.reason, quiet_s=now - record.last_received)
        if alerts:
            self._context.store.add_alerts(alerts)
            self._alerts.notify()


def assess_series(series_uid: str, infos: list[InstanceInfo]) -> Assessment:
    """The completion assessment of a series' instances ``infos`` (the frames of multi-frame
    instances counted; one that cannot be read counts as one image, with a warning)."""
    planes = {}
    for info in filter(is_multiframe, infos):
        try:
            planes[info.sop_instance_uid] = frame_planes(info.path)
        except Exception as exc:
            log.warning("series %s: frames of %s unreadable (%s): counted as one image",
                        series_uid, info.path.name, one_line(exc, 300, with_type=True))
    return assess(infos, planes)


def _age_text(seconds: float) -> str:
    """``3.2 days``, ``5.0 hours`` or ``12 s``."""
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{seconds:.0f} s"
