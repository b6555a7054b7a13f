"""The DICOM node behind ``triage serve``: receive, find complete perfusion series, analyse, send.

- The storage SCP (:mod:`dicom_node.scp`) writes each instance durably to
  ``DATA/spool/<study>/<series>/`` and records it in the job store (``DATA/triage.db``,
  :mod:`triage.store.jobs`) before it acknowledges it.
- The completion monitor looks at quiet series every ``TICK_S`` and classifies them
  (:mod:`dicom_node.completion`): a complete CT perfusion series gets an analysis job; others are
  recorded and left alone, with the reason in the log. A perfusion series still incomplete
  after ``incomplete_warn_seconds`` is reported and waits, unless only its last time points lack
  images (an aborted scan): its complete time points are then analysed
  (``--allow-incomplete-end``; the result's quality warnings say what was left out). A new
  instance for an analysed series starts the next *generation*: a re-analysis into a results
  directory of its own. The newest generation supersedes the older ones: their running
  analyses are stopped and their results not yet sent are not sent (a send under way
  finishes: the PACS cannot be asked to forget what it acknowledged). The result series of a
  re-analysis say so ("re-analysis 2") in their Series Description and have Series Numbers of
  their own.
- ``max_jobs`` workers run each analysis in a child process (``python -m triage.node.child``:
  crash isolation, memory returned, killable) into ``DATA/results/<series>/<generation>/``.
  Bad input (exit 2) fails the job with its reason; other failures are retried
  ``MAX_ANALYSIS_ATTEMPTS`` times.
- With ``--webhook``, each result, each analysis failed for good and each perfusion series
  reported incomplete is announced to the stroke team's endpoints (:mod:`triage.node.alerts`): the
  messages are written to the job store's outbox (a result's as soon as its ``result.json`` is
  in place, before the DICOM export; a failure's with the failure), and a delivery thread per
  webhook POSTs them (:mod:`triage.node.delivery`).
- The sender pushes ``dicom/*.dcm`` of each result to the PACS, retrying with exponential
  backoff (capped at ``SEND_BACKOFF_CAP_S``) while the PACS is unreachable. A send job is done
  only when every object was acknowledged; result UIDs are deterministic, so a repeated send
  after a crash is harmless to the PACS.

Every job lives in SQLite: after a crash or a stop, :meth:`~triage.store.jobs.JobStore.recover`
resumes the unfinished work. SIGTERM/SIGINT stop the node gracefully: the DICOM port closes
(running transfers get a few seconds; unacknowledged instances are the sender's to resend),
child analyses are terminated (re-run after the next start), the database is closed, exit 0.

Research use only.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

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
    first_time_point_files,
    frame_planes,
    is_multiframe,
)
from dicom_node.instance import InstanceInfo
from dicom_node.scp import StorageSCP, TlsConfig
from dicom_node.scu import RemoteAE, SendError, send_files
from dicom_node.spool import Spool
from triage import __version__
from triage.base.durable import fsync_directory
from triage.base.errors import EXIT_INPUT, InputError, one_line
from triage.node.alerts import (
    alert_config,
    failure_messages,
    incomplete_messages,
    patient_details,
    result_messages,
    unencrypted,
    where,
)
from triage.node.delivery import Deliverer, OutboxStore
from triage.report.folder import ResultFolder, ResultsRoot
from triage.settings import NodeSettings, Settings
from triage.store.jobs import Generation, Job, JobStore, OutboxMessage, SeriesRecord

log = logging.getLogger("triage.node")

TICK_S = 0.5
MAX_ANALYSIS_ATTEMPTS = 3
ANALYSIS_RETRY_S = 10.0
SEND_BACKOFF_START_S = 2.0
SEND_BACKOFF_CAP_S = 60.0
MAX_SEND_REFUSALS = 10         # sends the PACS answered with failure statuses before giving up
SEND_TIMEOUT_S = 30.0
ANALYSIS_TIMEOUT_S = 900.0     # a child analysis running longer is killed and retried
RESULT_POLL_S = 0.1            # how often a running analysis is looked at for its result (alerts)
CHILD_STOP_S = 5.0
RETENTION_SWEEP_S = 600.0     # how often expired series are looked for (more often for short retention)


class Node:
    """The node's threads around one job store. :meth:`start`, then :meth:`stop`."""

    def __init__(self, settings: Settings, *, config_file: Path | None = None):
        _check(settings.node)
        self.settings = settings.node
        self.config_file = Path(config_file).resolve() if config_file else None
        self.data_dir = Path(self.settings.data_dir).resolve()
        self.spool_root = self.data_dir / "spool"
        self.results = ResultsRoot(self.data_dir / "results")
        try:
            self.remote = RemoteAE.parse(self.settings.pacs) if self.settings.pacs else None
        except ValueError as exc:
            raise InputError(str(exc)) from None
        self.store: JobStore | None = None
        self.scp: StorageSCP | None = None
        self.web = None  # triage.web.server.WebServer when http_port is set
        self._pacs_tls: ssl.SSLContext | None = None
        self._stopping = threading.Event()
        self._wake = threading.Condition()
        self._children: dict[int, subprocess.Popen] = {}
        self._children_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._reported: set[tuple[str, int]] = set()
        self._announced: set[int] = set()  # running analyses whose result alert is written
        self._alerts = alert_config(settings.alerts, http_port=self.settings.http_port)  # None without --webhook
        self._deliverers: list[Deliverer] = []  # one per webhook

    # Life cycle

    def start(self) -> None:
        """Recover, start listening, start the monitor, workers and sender. Returns at once."""
        s = self.settings
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.store = JobStore(self.data_dir / "triage.db")
            spool = Spool(self.spool_root, reserve_bytes=s.spool_reserve_mb * 2**20)
        except (OSError, sqlite3.Error) as exc:
            raise InputError(f"cannot use the data directory {self.data_dir}: {exc}") from None
        recovery = self.store.recover(self.spool_root)
        if recovery.jobs_reset or recovery.instances_registered:
            log.info("resumed after a stop: %d unfinished job(s) back in the queue, %d spooled "
                     "instance(s) registered again", recovery.jobs_reset, recovery.instances_registered)
        for path, reason in recovery.unreadable:
            log.warning("spool file %s cannot be read (%s): left out", path, reason)
        if s.pacs_tls:
            try:
                self._pacs_tls = _tls(s).client_context()
            except (ssl.SSLError, OSError) as exc:
                self.store.close()
                raise InputError(f"DICOM TLS to the PACS: cannot use --tls-cert/--tls-key/--tls-ca: "
                                 f"{exc}") from None
        allowed = None if s.accept_any_aet else frozenset(s.allow_aet)
        self.scp = StorageSCP(
            spool, ae_title=s.ae_title, host=s.listen_address, port=s.dicom_port, allowed_aets=allowed,
            on_stored=self.on_stored, max_associations=s.max_associations, tls=_tls(s))
        try:
            self.scp.start()
        except ssl.SSLError as exc:
            self.store.close()
            raise InputError(f"DICOM TLS: cannot use --tls-cert/--tls-key/--tls-ca: {exc}") from None
        except OSError as exc:
            self.store.close()
            raise InputError(f"cannot listen on {s.listen_address}:{s.dicom_port}: "
                             f"{exc.strerror or exc}") from None
        if s.http_port:
            try:
                self._start_web()
            except InputError:
                self.scp.stop()
                self.store.close()
                raise
        self._threads = [threading.Thread(target=self._monitor, name="completion", daemon=True),
                         threading.Thread(target=self._run_jobs, name="sender", daemon=True,
                                          args=("send", self._send, self._send_failed_in_node))]
        self._threads += [threading.Thread(target=self._run_jobs, name=f"analysis-{k + 1}", daemon=True,
                                           args=("analyse", self._analyse, self._retry_or_fail))
                          for k in range(s.max_jobs)]
        urls = self._alerts.urls if self._alerts else ()
        dropped = OutboxStore(self.store).expire_pending("its webhook is no longer configured", keep_urls=urls)
        if dropped:
            log.warning("%d undelivered alert(s) of an earlier run dropped: their webhook is no longer "
                        "configured (--webhook)", dropped)
        if self._alerts:
            self._deliverers = [Deliverer(self.store, self._alerts.secret, self._stopping, url)
                                for url in urls]
            self._threads += [threading.Thread(target=d.run, name=f"alerts-{k + 1}", daemon=True)
                              for k, d in enumerate(self._deliverers)]
        for thread in self._threads:
            thread.start()
        self._log_startup(allowed)

    def stop(self) -> None:
        """Stop gracefully: the DICOM port closes (open associations get a few seconds to finish,
        then the receiver aborts them), child analyses are terminated and their jobs put back
        in the queue, the database is closed."""
        log.info("stopping: the DICOM port closes; open transfers get a few seconds to finish")
        self._stopping.set()
        if self.web is not None:
            self.web.stop()
        if self.scp is not None:
            self.scp.stop()
        with self._wake:
            self._wake.notify_all()
        with self._children_lock:
            children = list(self._children.values())
        for child in children:
            _terminate(child)
        for thread in self._threads:
            thread.join(SEND_TIMEOUT_S + CHILD_STOP_S + 5.0)
        busy = [t.name for t in self._threads if t.is_alive()]
        if busy:
            log.warning("threads still busy at exit: %s (their jobs resume after the next start)",
                        ", ".join(busy))
        elif self.store is not None:
            self.store.close()
        log.info("stopped")

    def _start_web(self) -> None:
        """Serve the web API and viewer on ``http_address``:``http_port`` (imported only then)."""
        from triage.web.app import create_app
        from triage.web.server import WebServer

        s = self.settings
        self.web = WebServer(create_app(self.data_dir, self.store, reprocess=self.reprocess),
                             s.http_address, s.http_port)
        self.web.start()
        log.info("web API and viewer on http://%s:%d/ (users: triage user add NAME --role viewer|admin)",
                 s.http_address, s.http_port)

    def reprocess(self, series_uid: str, options: dict) -> int | None:
        """Queue a re-run of an analysed series with ``options`` (``aif``, ``profile``) as its
        next generation, stopping the older generation's running analysis; the generation, or
        None when the series cannot be re-run now (see :meth:`JobStore.reprocess`)."""
        started = self.store.reprocess(series_uid, options)  # the web API logs who asked for what
        if started is None:
            return None
        self._supersede(started)
        with self._wake:
            self._wake.notify_all()
        return started.number

    def _log_startup(self, allowed: frozenset | None) -> None:
        s = self.settings
        log.info("stroke-triage node %s (research use only: not for clinical decisions)", __version__)
        log.info("data in %s", self.data_dir)
        if self.remote:
            log.info("results go to %s%s", self.remote, " over DICOM TLS" if self._pacs_tls else "")
        else:
            log.info("no PACS set (--pacs): results are kept in %s", self.results.path)
        if allowed is None:
            log.warning("accepting associations from ANY calling AE title (--accept-any-aet)")
        else:
            log.info("accepting calling AE titles: %s", ", ".join(sorted(allowed)))
        log.info("series complete after %.1f s without new images; up to %d analyses at once",
                 s.quiet_seconds, s.max_jobs)
        if s.retention_days > 0:
            log.info("series are removed %g days after their last image once their work is done "
                     "(--retention-days)", s.retention_days)
        else:
            log.info("series are kept for ever (--retention-days 0): the spool and results grow "
                     "until the disk reserve refuses new images")
        if self._alerts:
            log.info("alerts go to %d webhook(s), signed (%s)%s%s", len(self._alerts.urls),
                     ", ".join(where(url) for url in self._alerts.urls),
                     "; with patient name and ID" if self._alerts.patient_details else "",
                     "; with FHIR reports" if self._alerts.fhir else "")
            if unencrypted(self._alerts.urls):
                log.warning("alerts to %s go over plain http: anyone on the way can read them (signed, "
                            "not encrypted; use https)", ", ".join(unencrypted(self._alerts.urls)))

    # Receiving

    def on_stored(self, info: InstanceInfo) -> None:
        """Called by the SCP after an instance is durably in the spool, before it is
        acknowledged; an exception here makes the C-STORE fail."""
        recorded = self.store.record_instance(info)
        if recorded.previous_state is None:
            log.info("series %s: first image from %s (study %s)", info.series_uid,
                     info.calling_aet or "?", info.study_uid)
        elif recorded.new and recorded.previous_state == "ready":
            log.info("series %s: new image after analysis generation %d: re-analysis once the "
                     "series is quiet and complete", info.series_uid, recorded.generation)

    # Completion

    def _monitor(self) -> None:
        next_sweep = 0.0
        while not self._stopping.wait(TICK_S):
            try:
                self._check_series()
            except Exception as exc:
                log.error("completion check failed (%s); retrying", one_line(exc, 300, with_type=True))
            if self.settings.retention_days > 0 and time.monotonic() >= next_sweep:
                retention_s = self.settings.retention_days * 86400.0
                next_sweep = time.monotonic() + min(RETENTION_SWEEP_S, retention_s / 4)
                try:
                    self._remove_expired(time.time() - retention_s)
                except Exception as exc:
                    log.error("retention sweep failed (%s); retrying", one_line(exc, 300, with_type=True))

    # Retention

    def _remove_expired(self, before: float) -> None:
        """Remove the series whose last image arrived before ``before`` and whose work is done
        (analysed and sent, ignored, failed or never complete): spooled images, results, and
        database rows, in that order (a crash in between leaves rows that the next sweep
        removes, never images that a restart would register and analyse again). A series with
        a pending send (PACS down) is kept until its results are sent."""
        for record in self.store.expired_series(before):
            with self.scp.spool.removing():  # no image of it can be stored and recorded meanwhile
                if not self.store.expired_series(before, record.series_uid):
                    continue  # an image arrived, or work was queued, since the first look
                files, size = self.scp.spool.remove_series(record.study_uid, record.series_uid)
                results = self.results.series_dir(record.series_uid)
                shutil.rmtree(results, ignore_errors=True)
                if results.exists():
                    log.error("retention: cannot remove %s; retrying at the next sweep", results)
                    continue
                if self.results.path.exists():
                    fsync_directory(self.results.path)
                self.store.forget_series(record.series_uid)
            log.info("retention: removed series %s of study %s from %s (%d images, %.1f MB, with "
                     "any results): last image %s ago", record.series_uid, record.study_uid,
                     record.calling_aet or "?", files, size / 1e6, _age_text(time.time() - record.last_received))

    def _check_series(self) -> None:
        s = self.settings
        now = time.time()
        for record in self.store.series_in_state("receiving", quiet_since=now - s.quiet_seconds):
            self._decide(record, now)
        # Once quiet for incomplete_warn_seconds, an incomplete series is decided again: its
        # complete time points analysed when only the end is missing, else reported once.
        for record in self.store.series_in_state("incomplete",
                                                 quiet_since=now - s.incomplete_warn_seconds):
            if (record.series_uid, record.n_instances) not in self._reported:
                self._decide(record, now)

    def _decide(self, record: SeriesRecord, now: float) -> None:
        s = self.settings
        assessment = self._assess(record.series_uid)
        decision = decide(assessment, now - record.last_received, quiet_seconds=s.quiet_seconds,
                          incomplete_warn_seconds=s.incomplete_warn_seconds)
        uid, since = record.series_uid, record.last_received
        received = (f"received series {uid}: {assessment.n_instances} instances from "
                    f"{record.calling_aet or '?'}")
        if decision == IGNORE:
            if self.store.set_series_state(uid, "ignored", classification=OTHER, reason=assessment.reason,
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
            if self.store.set_series_state(uid, "incomplete", classification=assessment.classification,
                                           reason=assessment.missing,
                                           n_positions=assessment.n_positions,
                                           n_times=assessment.n_times, unchanged_since=since):
                if record.state == "receiving":
                    log.info("%s (%s); waiting for the missing images", received, assessment.summary())
                if decision == REPORT_INCOMPLETE:
                    self._report_incomplete(self.store.series(uid), now)

    def _start_generation(self, record: SeriesRecord, assessment: Assessment, what: str) -> None:
        """Queue the next analysis of a series (unless an instance arrived since ``record``),
        logging ``what`` led to it, and supersede the older generations."""
        started = self.store.start_generation(record.series_uid, reason=assessment.reason,
                                              n_positions=assessment.n_positions,
                                              n_times=assessment.n_times,
                                              unchanged_since=record.last_received)
        if started is not None:
            log.info("%s; analysis generation %d queued", what, started.number)
            self._supersede(started)
            with self._wake:
                self._wake.notify_all()

    def _supersede(self, started: Generation) -> None:
        """Act on the jobs of older generations that ``started`` superseded: stop their running
        analyses (the worker logs the outcome, see :meth:`_analyse`) unless their result was
        already announced to the stroke team (then it is kept: it finishes, not sent), log the
        others."""
        for job in started.superseded:
            if job.state == "running":
                with self._children_lock:
                    child = self._children.get(job.id)
                    if job.id in self._announced:
                        log.info("analysis of %s generation %d superseded by generation %d after its "
                                 "result was announced: it finishes, its results are kept and not sent",
                                 job.series_uid, job.generation, started.number)
                    elif child is not None and child.returncode is None:
                        _signal_group(child, signal.SIGTERM)
            elif job.kind == "analyse":
                log.info("analysis of %s generation %d superseded by generation %d before it started",
                         job.series_uid, job.generation, started.number)
            else:
                log.info("results of %s generation %d not sent: superseded by generation %d",
                         job.series_uid, job.generation, started.number)

    def _assess(self, series_uid: str, infos: list[InstanceInfo] | None = None) -> Assessment:
        infos = self.store.instances(series_uid) if infos is None else infos
        planes = {}
        for info in filter(is_multiframe, infos):
            try:
                planes[info.sop_instance_uid] = frame_planes(info.path)
            except Exception as exc:
                log.warning("series %s: frames of %s unreadable (%s): counted as one image",
                            series_uid, info.path.name, one_line(exc, 300, with_type=True))
        return assess(infos, planes)

    def _report_incomplete(self, record: SeriesRecord, now: float) -> None:
        key = (record.series_uid, record.n_instances)
        if key in self._reported:
            return
        self._reported.add(key)
        log.warning("series %s still incomplete after %.0f s without new images: %s; not analysed "
                    "(the analysis needs every slice position at every time point) until the "
                    "missing images arrive", record.series_uid, now - record.last_received,
                    record.reason)
        alerts = self._alert_messages(record.series_uid, record.generation + 1, "incomplete", now,
                                      missing=record.reason, quiet_s=now - record.last_received)
        if alerts:
            self.store.add_alerts(alerts)
            self._notify_alerts()

    # Analysis

    def _run_jobs(self, kind: str, handle, on_failure) -> None:
        """Claim and run jobs of ``kind`` until the stop; ``on_failure(job, reason)`` when
        ``handle(job)`` raises (one failing job never stops the thread)."""
        while not self._stopping.is_set():
            try:
                job = self.store.claim_job(kind)
            except Exception as exc:
                log.error("job store unavailable (%s); retrying", one_line(exc, 300, with_type=True))
                job = None
            if job is None:
                self._sleep(kind)
                continue
            try:
                handle(job)
            except Exception as exc:
                on_failure(job, f"internal failure in the node: {one_line(exc, 300, with_type=True)}")

    def _sleep(self, kind: str) -> None:
        """Wait for new work: a notification, the next due job of ``kind``, or ``TICK_S``."""
        due = self.store.next_due(kind)
        timeout = TICK_S if due is None else min(TICK_S, max(0.0, due - time.time()))
        with self._wake:
            if not self._stopping.is_set():
                self._wake.wait(max(timeout, 0.05))

    def _analyse(self, job: Job) -> None:
        uid, generation = job.series_uid, job.generation
        instances = self.store.instances(uid)
        folder = self.results.folder(uid, generation)
        folder.path.parent.mkdir(parents=True, exist_ok=True)
        for stale in folder.stale_staging():  # left by a killed analysis
            shutil.rmtree(stale, ignore_errors=True)
        references = self.results.references(uid, generation)
        references.write_text("".join(f"{path}\n" for path in first_time_point_files(instances)))
        command = [sys.executable, "-m", "triage.node.child", str(instances[0].path.parent),
                   str(folder.path), "--series", uid, "--uid-seed", f"{uid}/{generation}",
                   "--generation", str(generation),
                   "--references", str(references), "--parent-pid", str(os.getpid())]
        if self.config_file:
            command += ["--config", str(self.config_file)]
        command += _option_flags(job.analysis_options())
        assessment = self._assess(uid, instances)  # incomplete: the monitor chose its whole time points
        if not assessment.complete and assessment.whole_times:
            command.append("--allow-incomplete-end")
        log_path = self.results.log(uid, generation)
        started = time.monotonic()
        with open(log_path, "wb") as log_file:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        with self._children_lock:
            self._children[job.id] = child
        # stop() or a newer generation (_supersede) that began while the child started; once
        # the child is in self._children, they stop it themselves.
        if self._stopping.is_set() or self.store.job(job.id).state == "superseded":
            _terminate(child)
        log.info("analysis of %s generation %d started (%d images, attempt %d, pid %d)", uid,
                 generation, len(instances), job.attempts, child.pid)
        announced = False
        try:
            status, announced = self._wait_for_analysis(job, child, folder)
        except subprocess.TimeoutExpired:
            child.kill()
            status = child.wait()
            with open(log_path, "a") as log_file:
                log_file.write(f"error: no result after {ANALYSIS_TIMEOUT_S:.0f} s: analysis killed\n")
        finally:
            with self._children_lock:
                self._children.pop(job.id, None)
                self._announced.discard(job.id)
        seconds = time.monotonic() - started
        if self.store.job(job.id).state == "superseded":
            # Never sent: a stopped analysis leaves nothing behind (its outputs may have been
            # renamed into place before the stop came, with the DICOM objects half written).
            stale = folder.stale_staging() + ([folder.path] if status else [])
            for path in stale:
                shutil.rmtree(path, ignore_errors=True)
            self._log_superseded(job, "finished, not sent" if status == 0 else "stopped")
        elif self._stopping.is_set() and status != 0:
            self.store.release_job(job.id)
            log.info("analysis of %s generation %d interrupted by the stop; it runs again after "
                     "the next start", uid, generation)
        elif status == 0:
            self._analysed(job, folder, seconds, announced)
        elif status == EXIT_INPUT:
            reason = _last_error(log_path) or "bad input"
            self._fail_analysis(job, reason)
            log.error("analysis of %s generation %d failed after %.1f s: %s (not retried; details "
                      "in %s)", uid, generation, seconds, reason, log_path)
            self._fall_back(job)
        else:
            reason = _last_error(log_path) or _exit_text(status)
            self._retry_or_fail(job, f"{reason} ({_exit_text(status)})")

    def _wait_for_analysis(self, job: Job, child: subprocess.Popen, folder: ResultFolder) -> tuple[int, bool]:
        """The child's exit status, and whether the result was announced while it ran: the
        result alert goes out as soon as ``result.json`` is in place (the analysis output is
        renamed there whole), not after the DICOM export that follows (seconds). Raises
        TimeoutExpired after ``ANALYSIS_TIMEOUT_S``."""
        deadline = time.monotonic() + ANALYSIS_TIMEOUT_S
        watching, announced = self._alerts is not None, False
        while True:
            try:
                return child.wait(RESULT_POLL_S if watching else max(0.0, deadline - time.monotonic())), announced
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    raise
                if watching and folder.has_result():
                    watching = False  # one try: an alert that cannot be built is tried again at the end
                    announced = self._announce_result(job, folder)

    def _announce_result(self, job: Job, folder: ResultFolder) -> bool:
        """Put the result alert of a running analysis in the outbox; whether it was. From then
        on a newer generation does not stop the analysis (:meth:`_supersede`): the results the
        stroke team was told of stay on disk."""
        with self._children_lock:  # against _supersede: stopped, or announced, never both
            if self.store.job(job.id).state != "running":  # superseded meanwhile
                return False
            self._announced.add(job.id)
        try:
            result, now = folder.read(), time.time()
        except InputError as exc:  # the job's end reads it again, and fails it if need be
            log.error("series %s generation %d: no result for the alert (%s)", job.series_uid,
                      job.generation, exc)
            return False
        alerts = self._alert_messages(job.series_uid, job.generation, "result", now, result=result,
                                      folder=folder)
        if alerts:
            self.store.add_alerts(alerts, now=now)
            self._notify_alerts()
        return bool(alerts)

    def _analysed(self, job: Job, folder: ResultFolder, seconds: float, announced: bool = False) -> None:
        """Record a finished analysis (and its result alert, unless ``announced`` already) and
        queue its send."""
        result = folder.read()
        objects = folder.dicom_objects()
        send = (job.series_uid, job.generation, "send") if self.remote else None
        now = time.time()
        alerts = [] if announced else self._alert_messages(job.series_uid, job.generation, "result",
                                                           now, result=result, folder=folder)
        if not self.store.finish_job(job.id, then=send, alerts=alerts, now=now):  # superseded as it finished
            self._log_superseded(job, "finished, not sent")
            return
        if alerts:
            self._notify_alerts()
        log.info("analysis of %s generation %d finished in %.1f s: core %.1f mL, Tmax>6 s %.1f mL, "
                 "mismatch %.1f mL; %d result objects in %s%s", job.series_uid, job.generation,
                 seconds, result.core_ml, result.tmax6_ml, result.mismatch_ml, len(objects),
                 folder.path, "" if send else " (no PACS configured: not sent)")
        if send:
            with self._wake:
                self._wake.notify_all()

    def _log_superseded(self, job: Job, outcome: str) -> None:
        log.info("analysis of %s generation %d superseded by generation %d: %s", job.series_uid,
                 job.generation, self.store.series(job.series_uid).generation, outcome)

    def _retry_or_fail(self, job: Job, reason: str) -> None:
        if job.attempts < MAX_ANALYSIS_ATTEMPTS:
            delay = ANALYSIS_RETRY_S * job.attempts
            self.store.retry_job(job.id, reason, delay)
            log.warning("analysis of %s generation %d failed (attempt %d of %d): %s; retry in %.0f s",
                        job.series_uid, job.generation, job.attempts, MAX_ANALYSIS_ATTEMPTS, reason, delay)
        else:
            self._fail_analysis(job, reason)
            log.error("analysis of %s generation %d failed %d times, given up: %s", job.series_uid,
                      job.generation, job.attempts, reason)
            self._fall_back(job)

    def _notify_alerts(self) -> None:
        """Wake the delivery threads: alerts were written."""
        for deliverer in self._deliverers:
            deliverer.notify()

    def _fail_analysis(self, job: Job, reason: str) -> None:
        """Fail an analysis for good, and alert the stroke team in the same transaction."""
        now = time.time()
        alerts = self._alert_messages(job.series_uid, job.generation, "failure", now, reason=reason)
        if self.store.fail_job(job.id, reason, alerts=alerts, now=now) and alerts:
            self._notify_alerts()

    def _alert_messages(self, series_uid: str, generation: int, kind: str, at: float,
                        **facts) -> list[OutboxMessage]:
        """The outbox messages of a ``result``, ``failure`` or ``incomplete`` series at ``at``
        ([] without --webhook). Building them never stops the result or failure from being
        recorded: an error is logged and the alert left out."""
        if self._alerts is None:
            return []
        build = {"result": result_messages, "failure": failure_messages, "incomplete": incomplete_messages}[kind]
        try:
            return build(self._alerts, self.store.series(series_uid), generation, at=at,
                         patient=self._patient(series_uid), **facts)
        except Exception as exc:
            log.error("series %s generation %d: the %s alert cannot be written (%s); not sent",
                      series_uid, generation, kind, one_line(exc, 300, with_type=True))
            return []

    def _patient(self, series_uid: str) -> dict | None:
        """PatientID and name of the series for its alerts with --alert-patient-details, else
        None (None too, with a warning, when no header of the series can be read)."""
        if not self._alerts.patient_details:
            return None
        try:
            return patient_details(self.store.instances(series_uid)[0].path)
        except Exception as exc:
            log.warning("series %s: patient details not readable for its alert (%s): sent without",
                        series_uid, type(exc).__name__)
            return None

    def _fall_back(self, job: Job) -> None:
        """After the analysis of a re-analysis failed for good: send the newest earlier result
        that was not sent (its send was dropped when the re-analysis started), so the PACS gets
        the analysis of the images received up to then rather than nothing."""
        if job.generation < 2 or not self.remote or self.store.newer_result_possible(job.series_uid, job.generation):
            return
        older = self.store.resend_generation(job.series_uid, job.generation)
        if older is None:
            log.error("series %s: no earlier result to send in place of generation %d: read the "
                      "images without it", job.series_uid, job.generation)
            return
        generation, sent = older
        if sent:
            log.warning("series %s: the PACS has generation %d's results; they do not include the "
                        "images received since (generation %d failed)", job.series_uid, generation,
                        job.generation)
            return
        log.warning("series %s: sending generation %d's results in place of generation %d, whose "
                    "analysis failed (they do not include the images received since)",
                    job.series_uid, generation, job.generation)
        with self._wake:
            self._wake.notify_all()

    # Sending

    def _send_failed_in_node(self, job: Job, reason: str) -> None:
        delay = _backoff(job.attempts)
        log.error("sending series %s generation %d failed: %s; retry in %.0f s", job.series_uid,
                  job.generation, reason, delay)
        self.store.retry_job(job.id, reason, delay)

    def _send(self, job: Job) -> None:
        uid, generation = job.series_uid, job.generation
        folder = self.results.folder(uid, generation)
        objects = folder.dicom_objects()
        already = folder.sent()
        newest = self.store.series(uid).generation
        # A send that failed while a newer generation started (not when every newer analysis
        # failed: then this is the fallback that _fall_back queued).
        if newest > generation and self.store.newer_result_possible(uid, generation):
            if self.store.supersede_job(job.id, newest):
                log.info("results of %s generation %d not sent: superseded by generation %d "
                         "(%d of %d objects were already sent)", uid, generation, newest,
                         len(already), len(objects))
            return
        if not objects:
            self.store.fail_job(job.id, "no result objects to send")
            log.error("series %s generation %d: no result objects in %s; nothing sent", uid,
                      generation, folder.dicom_dir)
            return
        started = time.monotonic()
        pending = [path for path in objects if path.name not in already]
        if not pending:  # acknowledged before a stop, the job not yet marked done
            self.store.finish_job(job.id)
            log.info("series %s generation %d: all %d objects were already acknowledged by %s",
                     uid, generation, len(objects), self.remote)
            return
        try:
            report = send_files(pending, self.remote, calling_aet=self.settings.ae_title, tls=self._pacs_tls,
                                timeout=SEND_TIMEOUT_S)
        except SendError as exc:
            delay = _backoff(job.attempts)
            self.store.retry_job(job.id, str(exc), delay)
            log.warning("%s; series %s generation %d not sent, retry in %.0f s", exc, uid, generation,
                        delay)
            return
        folder.record_sent([r.path.name for r in report.results if r.stored])
        if report.ok:
            self.store.finish_job(job.id)
            series = self.store.series(uid)
            decompressed = (f"; {len(report.decompressed)} sent decompressed: the PACS refused their "
                            "compressed transfer syntax" if report.decompressed else "")
            log.info("sent %d objects of series %s generation %d to %s in %.1f s (%.1f s after its "
                     "last image%s)", len(pending), uid, generation, self.remote,
                     time.monotonic() - started, time.time() - series.last_received, decompressed)
            return
        failed = report.failed
        reason = f"{len(failed)} of {len(pending)} objects not stored: {failed[0].path.name}: {failed[0].reason}"
        refused = any(f.status is not None for f in failed)  # the PACS answered with a failure
        if not refused or job.attempts < MAX_SEND_REFUSALS:
            delay = _backoff(job.attempts)
            self.store.retry_job(job.id, reason, delay)
            log.warning("PACS %s did not store every object of series %s generation %d (%s), retry "
                        "in %.0f s", self.remote, uid, generation, reason, delay)
        else:
            self.store.fail_job(job.id, reason)
            log.error("PACS %s refused objects of series %s generation %d %d times, given up: %s",
                      self.remote, uid, generation, job.attempts, reason)


def serve(settings: Settings, *, config_file: Path | None = None) -> int:
    """Run the node until SIGTERM or SIGINT; 0 after a graceful stop.

    Raises InputError (one line) for settings the node cannot run with, a data directory it
    cannot use, or a port it cannot listen on.
    """
    node = Node(settings, config_file=config_file)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(message)s")
    # One line per event: the node logs each send and its failure itself, the receiver each
    # association; pynetdicom's and the sender's own lines would repeat them.
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    logging.getLogger("dicom_node.scu").setLevel(logging.CRITICAL)
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda number, frame: stop.set())
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        node.start()
        while not stop.wait(1.0):
            pass
        node.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _check(s: NodeSettings) -> None:
    """Refuse settings the node cannot run with (one-line reasons)."""
    checks = [
        (0 < s.dicom_port < 65536, f"--dicom-port {s.dicom_port} is not a TCP port"),
        (0 <= s.http_port < 65536, f"--http-port {s.http_port} is not a TCP port"),
        (0 < len(s.ae_title) <= 16 and s.ae_title.strip() == s.ae_title and "\\" not in s.ae_title,
         f"--ae-title {s.ae_title!r} is not a valid AE title (1 to 16 characters, no backslash)"),
        (s.quiet_seconds > 0, "--quiet-seconds must be positive"),
        (s.incomplete_warn_seconds >= 0, "--incomplete-warn-seconds must not be negative"),
        (s.accept_any_aet or bool(s.allow_aet),
         "no calling AE title is allowed: name the senders with --allow-aet NAME (repeatable) "
         "or accept any caller with --accept-any-aet"),
        (s.max_jobs >= 1, "--max-jobs must be at least 1"),
        (s.max_associations >= 1, "--max-associations must be at least 1"),
        (s.spool_reserve_mb >= 0, "--spool-reserve-mb must not be negative"),
        (s.retention_days >= 0, "--retention-days must not be negative (0 keeps everything)"),
        (bool(s.tls_cert) == bool(s.tls_key), "DICOM TLS needs both --tls-cert and --tls-key"),
        (not s.tls_ca or bool(s.tls_cert), "--tls-ca needs --tls-cert and --tls-key"),
        (not s.pacs_tls or bool(s.pacs and s.tls_cert), "--pacs-tls needs --pacs and --tls-cert/--tls-key"),
    ]
    for ok, reason in checks:
        if not ok:
            raise InputError(reason)
    for name in ("tls_cert", "tls_key", "tls_ca"):
        value = getattr(s, name)
        if value and not Path(value).is_file():
            raise InputError(f"--{name.replace('_', '-')} {value}: no such file")


def _option_flags(options: dict) -> list[str]:
    """The ``triage.node.child`` flags of a requested re-run's ``options`` (``aif``, ``profile``)."""
    flags = ["--aif", ",".join(str(int(v)) for v in options["aif"])] if options.get("aif") else []
    return flags + (["--profile", options["profile"]] if options.get("profile") else [])


def _tls(s: NodeSettings) -> TlsConfig | None:
    if not s.tls_cert:
        return None
    return TlsConfig(cert=Path(s.tls_cert), key=Path(s.tls_key), ca=Path(s.tls_ca) if s.tls_ca else None)


def _age_text(seconds: float) -> str:
    """``3.2 days``, ``5.0 hours`` or ``12 s``."""
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{seconds:.0f} s"


def _backoff(attempts: int) -> float:
    """Seconds before send attempt ``attempts + 1``: 2, 4, 8, ... capped at SEND_BACKOFF_CAP_S."""
    return min(SEND_BACKOFF_CAP_S, SEND_BACKOFF_START_S * 2 ** max(0, attempts - 1))


def _terminate(child: subprocess.Popen) -> None:
    """SIGTERM a child analysis and its worker processes, SIGKILL them after CHILD_STOP_S."""
    if child.poll() is None:
        _signal_group(child, signal.SIGTERM)
        try:
            child.wait(CHILD_STOP_S)
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    """Send ``signum`` to the process group the child leads (``start_new_session``): the child
    and the worker processes it forked, by the child's id."""
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:  # the child and its workers are gone
        pass


def _last_error(log_path: Path) -> str:
    """The last ``error: ...`` line of a child's log, without the prefix ('' if none)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error: ")]
    return errors[-1][len("error: "):].strip() if errors else ""


def _exit_text(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"

