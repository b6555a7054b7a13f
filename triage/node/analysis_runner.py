"""The analysis workers: run each queued analysis in a child process, record its outcome.

``max_jobs`` worker threads (``analysis-N``) claim the analysis jobs that the completion monitor
(:mod:`triage.node.monitor`) queued and run each in a child process (``python -m
triage.node.child``: crash isolation, memory returned, killable) into the result folder
``DATA/results/<series>/<generation>/`` (:class:`triage.report.folder.ResultsRoot`). Bad input
(exit 2) fails the job with its reason; other failures are retried ``MAX_ANALYSIS_ATTEMPTS``
times, and a child running longer than ``ANALYSIS_TIMEOUT_S`` is killed and retried. A finished
analysis queues its send (:mod:`triage.node.sender`) when a PACS is set.

The result alert (:mod:`triage.node.alert_composer`) is written as soon as the child has renamed
the result's announcement into place (its ``result.json`` and summary picture, made before the
maps, the other pictures and the DICOM export: :meth:`ResultFolder.announcement`), or its whole
result folder; a failure's alert with the failure. When a newer generation starts, its older generations' running analyses are stopped
(:meth:`AnalysisRunner.supersede`), unless their result was already announced: then they finish
and their results are kept, not sent. When the analysis of a re-analysis fails for good, the
newest earlier result not yet sent is sent in its place.

Research use only.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dicom_node.completion import first_time_point_files
from triage.base.errors import EXIT_INPUT, InputError
from triage.node.alert_composer import AlertComposer
from triage.node.context import NodeContext, run_claimed, run_jobs
from triage.node.monitor import assess_series
from triage.report.folder import ResultFolder
from triage.store.records import Generation, Job

if TYPE_CHECKING:
    from triage.node.streams import StreamFeeds

log = logging.getLogger("triage.node")

MAX_ANALYSIS_ATTEMPTS = 3
ANALYSIS_RETRY_S = 10.0
ANALYSIS_TIMEOUT_S = 900.0     # a child analysis running longer is killed and retried
RESULT_POLL_S = 0.1            # how often a running analysis is looked at for its result (alerts)
STATE_POLL_S = 1.0             # how often its job is looked at in the store (superseded elsewhere?)
CHILD_STOP_S = 5.0


class AnalysisRunner:
    """The analysis jobs of ``context``'s store, their alerts written with ``alerts`` (the
    configuration file ``config_file`` passed on to each child). :meth:`run` is a worker thread;
    several run at once."""

    def __init__(self, context: NodeContext, alerts: AlertComposer, config_file: Path | None, *,
                 streams: StreamFeeds | None = None):
        self._context = context
        self._streams = streams  # children reading their series ahead (triage.node.streams)
        self._alerts = alerts
        self._config_file = config_file
        self._children: dict[int, subprocess.Popen] = {}  # running analyses by job id
        self._announced: set[int] = set()  # running analyses whose result alert is written
        self._stopped: set[int] = set()  # running analyses told to stop (superseded)
        self._children_lock = threading.Lock()

    def run(self) -> None:
        run_jobs(self._context, "analyse", self._analyse, self._retry_or_fail)

    def run_job(self, job: Job) -> None:
        """Run one analysis job claimed elsewhere (a hub worker's task, :mod:`triage.hub`)."""
        run_claimed(job, self._analyse, self._retry_or_fail)

    def terminate_children(self) -> None:
        """Terminate the running child analyses (at the stop: their jobs run again after the
        next start)."""
        with self._children_lock:
            children = list(self._children.values())
        for child in children:
            _terminate(child)

    def supersede(self, started: Generation) -> None:
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
                    elif child is not None and child.returncode is None and job.id not in self._stopped:
                        self._stopped.add(job.id)
                        _signal_group(child, signal.SIGTERM)
            elif job.kind == "analyse":
                log.info("analysis of %s generation %d superseded by generation %d before it started",
                         job.series_uid, job.generation, started.number)
            else:
                log.info("results of %s generation %d not sent: superseded by generation %d",
                         job.series_uid, job.generation, started.number)

    def _analyse(self, job: Job) -> None:
        uid, generation = job.series_uid, job.generation
        folder = self._context.results.folder(uid, generation)
        log_path = self._context.results.log(uid, generation)
        child, started = self._start_child(job, folder, log_path)
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
                self._stopped.discard(job.id)
        self._conclude(job, folder, log_path, status, time.monotonic() - started, announced)

    def _start_child(self, job: Job, folder: ResultFolder, log_path: Path) -> tuple[subprocess.Popen, float]:
        """Start the child analysis of ``job`` into ``folder``, its output to ``log_path``; the
        child and when it started (``time.monotonic``)."""
        store, results = self._context.store, self._context.results
        uid, generation = job.series_uid, job.generation
        instances = store.instances(uid)
        folder.path.parent.mkdir(parents=True, exist_ok=True)
        for stale in folder.stale_staging() + [folder.announcement().path]:  # left by a killed analysis
            shutil.rmtree(stale, ignore_errors=True)
        references = results.references(uid, generation)
        references.write_text("".join(f"{path}\n" for path in first_time_point_files(instances)))
        assessment = assess_series(uid, instances)  # incomplete: the monitor chose its whole time points
        incomplete_end = not assessment.complete and bool(assessment.whole_times)
        started = time.monotonic()
        stream = self._streams.take(uid) if self._streams is not None and not job.analysis_options() else None
        if stream is not None:
            stream.go({"out": str(folder.path), "uid_seed": f"{uid}/{generation}", "generation": generation,
                       "references": str(references), "allow_incomplete_end": incomplete_end, "log": str(log_path)})
            child = stream.child
        else:
            command = [sys.executable, "-m", "triage.node.child", str(instances[0].path.parent),
                       str(folder.path), "--series", uid, "--uid-seed", f"{uid}/{generation}",
                       "--generation", str(generation),
                       "--references", str(references), "--parent-pid", str(os.getpid())]
            if self._config_file:
                command += ["--config", str(self._config_file)]
            command += _option_flags(job.analysis_options()) + (["--allow-incomplete-end"] if incomplete_end else [])
            with open(log_path, "wb") as log_file:
                child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        with self._children_lock:
            self._children[job.id] = child
        # stop() or a newer generation (supersede) that began while the child started; once
        # the child is in self._children, they stop it themselves.
        if self._context.stopping.is_set() or store.job(job.id).state == "superseded":
            _terminate(child)
        log.info("analysis of %s generation %d started (%d images, attempt %d, pid %d%s)", uid,
                 generation, len(instances), job.attempts, child.pid, ", read ahead" if stream else "")
        return child, started

    def _conclude(self, job: Job, folder: ResultFolder, log_path: Path, status: int, seconds: float,
                  announced: bool) -> None:
        """Record the outcome of ``job``'s child analysis, which exited with ``status``."""
        uid, generation = job.series_uid, job.generation
        if self._context.store.job(job.id).state == "superseded":
            # Never sent: a stopped analysis leaves nothing behind (its outputs may have been
            # renamed into place before the stop came, with the DICOM objects half written).
            stale = folder.stale_staging() + [folder.announcement().path] + ([folder.path] if status else [])
            for path in stale:
                shutil.rmtree(path, ignore_errors=True)
            self._log_superseded(job, "finished, not sent" if status == 0 else "stopped")
        elif self._context.stopping.is_set() and status != 0:
            self._context.store.release_job(job.id, claim=job.claim)
            log.info("analysis of %s generation %d interrupted by the stop; it runs again after "
                     "the next start (in a hub: on the next worker free)", uid, generation)
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
        result alert goes out as soon as the announcement or the whole result folder is in place
        (each renamed there whole), not after the maps, pictures and DICOM export (seconds).
        Every ``STATE_POLL_S`` the job is looked at: one superseded by another process (a hub's
        listener) is stopped as :meth:`supersede` stops it. Raises TimeoutExpired after
        ``ANALYSIS_TIMEOUT_S``."""
        deadline = time.monotonic() + ANALYSIS_TIMEOUT_S
        watching, announced, next_look = self._alerts.config is not None, False, time.monotonic() + STATE_POLL_S
        while True:
            try:
                return child.wait(RESULT_POLL_S), announced
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if now >= deadline:
                    raise
                source = next((f for f in (folder, folder.announcement()) if f.has_result()), None) if watching else None
                if source is not None:
                    watching = False  # one try: an alert that cannot be built is tried again at the end
                    announced = self._announce_result(job, source)
                if now >= next_look:
                    next_look = now + STATE_POLL_S
                    self._stop_if_superseded(job, child)

    def _stop_if_superseded(self, job: Job, child: subprocess.Popen) -> None:
        """SIGTERM the child of ``job`` once the store says the job was superseded, unless its
        result was announced (then it finishes, as with :meth:`supersede`)."""
        with self._children_lock:
            if job.id in self._announced or job.id in self._stopped:
                return
            if self._context.store.job(job.id).state == "superseded":
                self._stopped.add(job.id)
                _signal_group(child, signal.SIGTERM)

    def _announce_result(self, job: Job, folder: ResultFolder) -> bool:
        """Put the result alert of a running analysis (read from ``folder``: the result folder or
        its announcement) in the outbox; whether it was. From then
        on a newer generation does not stop the analysis (:meth:`supersede`): the results the
        stroke team was told of stay on disk."""
        store = self._context.store
        with self._children_lock:  # against supersede: stopped, or announced, never both
            if store.job(job.id).state != "running":  # superseded meanwhile
                return False
            self._announced.add(job.id)
        try:
            result, now = folder.read(), time.time()
        except InputError as exc:  # the job's end reads it again, and fails it if need be
            log.error("series %s generation %d: no result for the alert (%s)", job.series_uid,
                      job.generation, exc)
            return False
        alerts = self._alerts.messages(job.series_uid, job.generation, "result", now, result=result,
                                       folder=folder)
        if alerts:
            store.add_alerts(alerts, now=now)
            self._alerts.notify()
        return bool(alerts)

    def _analysed(self, job: Job, folder: ResultFolder, seconds: float, announced: bool = False) -> None:
        """Record a finished analysis (and its result alert, unless ``announced`` already) and
        queue its send."""
        result = folder.read()
        objects = folder.dicom_objects()
        send = (job.series_uid, job.generation, "send") if self._context.remote else None
        now = time.time()
        alerts = [] if announced else self._alerts.messages(job.series_uid, job.generation, "result",
                                                            now, result=result, folder=folder)
        if not self._context.store.finish_job(job.id, then=send, alerts=alerts, now=now, claim=job.claim):  # superseded
            self._log_superseded(job, "finished, not sent")
            return
        if alerts:
            self._alerts.notify()
        log.info("analysis of %s generation %d finished in %.1f s: core %.1f mL, Tmax>6 s %.1f mL, "
                 "mismatch %.1f mL; %d result objects in %s%s", job.series_uid, job.generation,
                 seconds, result.core_ml, result.tmax6_ml, result.mismatch_ml, len(objects),
                 folder.path, "" if send else " (no PACS configured: not sent)")
        if send:
            self._context.wake_workers()

    def _log_superseded(self, job: Job, outcome: str) -> None:
        log.info("analysis of %s generation %d superseded by generation %d: %s", job.series_uid,
                 job.generation, self._context.store.series(job.series_uid).generation, outcome)

    def _retry_or_fail(self, job: Job, reason: str) -> None:
        if job.attempts < MAX_ANALYSIS_ATTEMPTS:
            delay = ANALYSIS_RETRY_S * job.attempts
            self._context.store.retry_job(job.id, reason, delay, claim=job.claim)
            log.warning("analysis of %s generation %d failed (attempt %d of %d): %s; retry in %.0f s",
                        job.series_uid, job.generation, job.attempts, MAX_ANALYSIS_ATTEMPTS, reason, delay)
        else:
            self._fail_analysis(job, reason)
            log.error("analysis of %s generation %d failed %d times, given up: %s", job.series_uid,
                      job.generation, job.attempts, reason)
            self._fall_back(job)

    def give_up(self, job: Job, reason: str) -> None:
        """Fail a claimed analysis for good without running it (its alert sent, an earlier
        result sent in its place where there is one)."""
        self._fail_analysis(job, reason)
        log.error("analysis of %s generation %d given up: %s", job.series_uid, job.generation, reason)
        self._fall_back(job)

    def _fail_analysis(self, job: Job, reason: str) -> None:
        """Fail an analysis for good, and alert the stroke team in the same transaction."""
        now = time.time()
        alerts = self._alerts.messages(job.series_uid, job.generation, "failure", now, reason=reason)
        if self._context.store.fail_job(job.id, reason, alerts=alerts, now=now, claim=job.claim) and alerts:
            self._alerts.notify()

    def _fall_back(self, job: Job) -> None:
        """After the analysis of a re-analysis failed for good: send the newest earlier result
        that was not sent (its send was dropped when the re-analysis started), so the PACS gets
        the analysis of the images received up to then rather than nothing."""
        store = self._context.store
        if job.generation < 2 or not self._context.remote or store.newer_result_possible(job.series_uid, job.generation):
            return
        older = store.resend_generation(job.series_uid, job.generation)
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
        self._context.wake_workers()


def _option_flags(options: dict) -> list[str]:
    """The ``triage.node.child`` flags of a requested re-run's ``options`` (``aif``, ``profile``)."""
    flags = ["--aif", ",".join(str(int(v)) for v in options["aif"])] if options.get("aif") else []
    return flags + (["--profile", options["profile"]] if options.get("profile") else [])


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
