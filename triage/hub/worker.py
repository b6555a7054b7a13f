"""``triage worker``: a hub worker that runs analyses, DICOM export, sending and alerts.

A Celery worker (thread pool of ``max_jobs`` tasks, :mod:`triage.hub.queue`) on the hub's queue.
Each task names a job of the shared job store (``database``); :meth:`Worker.run_job` claims it
there (:meth:`~triage.store.jobs.JobStore.claim_job_id`: a token and a lease of ``LEASE_S``,
renewed every ``RENEW_S`` while it runs) and runs it with the node's own
:class:`~triage.node.analysis_runner.AnalysisRunner` (the analysis child reads the spooled images
from the shared data directory and writes the result folder there) or
:class:`~triage.node.sender.Sender`. A job that is done, or running under another worker's live
claim, is not run again (the task is "skipped"); a worker killed -9 stops renewing, and the
listener's dispatcher puts the job back once the lease has run out. The worker's threads deliver
the outbox's alerts (:mod:`triage.node.delivery`, one per webhook; several workers share the
outbox through its claims).

SIGTERM (Celery's warm shutdown) stops the running child analyses; their jobs go back to the queue.
Research use only.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from celery import signals

from triage import __version__
from triage.base.errors import InputError, one_line
from triage.hub.metrics import WorkerMetrics, serve_metrics
from triage.hub.queue import QUEUE_NAME, TASK_NAME, make_app, queue_depth
from triage.node.alert_composer import AlertComposer
from triage.node.alerts import alert_config, where
from triage.node.analysis_runner import MAX_ANALYSIS_ATTEMPTS, AnalysisRunner
from triage.node.context import NodeContext
from triage.node.node import job_store_error, tls_config, where_stored
from triage.node.sender import Sender, destination, log_destination
from triage.report.folder import ResultsRoot
from triage.settings import NodeSettings, Settings
from triage.store.database import DatabaseError
from triage.store.jobs import JobStore

log = logging.getLogger("triage.hub")

LEASE_S = 15.0  # a claim not renewed for this long is a dead worker's: its job is queued again
RENEW_S = LEASE_S / 3


def check_hub(s: NodeSettings) -> None:
    """Refuse hub settings a worker cannot run with (one-line reasons)."""
    if not s.queue or not s.database:
        raise InputError("a worker needs the hub's queue and job store: --queue redis://HOST:PORT/DB and "
                         "--database postgresql://USER@HOST:PORT/NAME (or queue/database in the --config file)")
    if urlsplit(s.queue).scheme not in ("redis", "rediss"):
        raise InputError(f"--queue {where(s.queue)}: expected a redis:// URL")
    if urlsplit(s.database).scheme not in ("postgresql", "postgres"):
        raise InputError(f"--database {where(s.database)}: expected a postgresql:// URL")
    if s.max_jobs < 1:
        raise InputError("--max-jobs must be at least 1")
    if not 0 <= s.metrics_port < 65536:
        raise InputError(f"--metrics-port {s.metrics_port} is not a TCP port")


class Worker:
    """The node's analysis runner, sender and alert delivery on the hub's job store."""

    def __init__(self, settings: Settings, config_file: Path | None = None):
        s = settings.node
        check_hub(s)
        self.settings = s
        self.data_dir = Path(s.data_dir).resolve()
        remote = destination(s)
        try:
            pacs_tls = tls_config(s).client_context() if s.pacs_tls else None
        except (ValueError, ssl.SSLError, OSError, AttributeError) as exc:
            raise InputError(f"--pacs/--pacs-tls: {exc}") from None
        alerts = alert_config(settings.alerts, http_port=s.http_port, language=settings.analysis.language)
        try:
            self.store = JobStore(s.database)
        except DatabaseError as exc:
            raise InputError(job_store_error(s, exc)) from None
        self.stopping = threading.Event()
        context = NodeContext(s, self.store, ResultsRoot(self.data_dir / "results"), remote, self.stopping,
                              threading.Condition())
        self.alerts = AlertComposer(alerts, self.store, self.stopping)
        self.runner = AnalysisRunner(context, self.alerts, Path(config_file).resolve() if config_file else None)
        self.sender = Sender(context, pacs_tls)
        self.metrics = WorkerMetrics()

    def run_job(self, job_id: int, kind: str) -> str:
        """The task: claim job ``job_id`` and run it; the job's state after it, or ``skipped``.
        A finished analysis's send job is run at once in the same task (the SR should not wait
        behind another study's analysis); its own message, published meanwhile, is then skipped."""
        outcome = self._run_claimed(self.store.claim_job_id(job_id, LEASE_S), kind)
        if kind == "analyse" and outcome == "done":
            job = self.store.job(job_id)
            send = [j for j in self.store.jobs(job.series_uid, kind="send") if j.generation == job.generation]
            if send:
                self._run_claimed(self.store.claim_job_id(send[0].id, LEASE_S), "send")
        return outcome

    def _run_claimed(self, job, kind: str) -> str:
        """Run a job claimed for this worker (None: not claimable, ``skipped``); its state after."""
        if job is None:
            self.metrics.skipped(kind)
            return "skipped"
        if job.kind == "analyse" and job.attempts > MAX_ANALYSIS_ATTEMPTS:  # its workers kept dying
            self.runner.give_up(job, f"its worker stopped {job.attempts - 1} times while analysing it "
                                     "(killed, or out of memory)")
            return self.store.job(job.id).state
        self.metrics.started(job.kind)
        started = time.monotonic()
        finished = threading.Event()
        keeper = threading.Thread(target=self._keep_claim, args=(job, finished), name=f"claim-{job.id}", daemon=True)
        keeper.start()
        outcome = "unknown"
        try:
            (self.runner if job.kind == "analyse" else self.sender).run_job(job)
            outcome = self.store.job(job.id).state
        finally:
            finished.set()
            keeper.join()
            self.metrics.finished(job.kind, outcome, time.monotonic() - started)
        return outcome

    def _keep_claim(self, job, finished: threading.Event) -> None:
        """Renew the claim of ``job`` every RENEW_S until ``finished``."""
        while not finished.wait(RENEW_S):
            try:
                if not self.store.renew_lease(job.id, job.claim, LEASE_S):
                    if self.store.job(job.id).state == "running":
                        log.warning("%s job of series %s generation %d: claim lost to another worker",
                                    job.kind, job.series_uid, job.generation)
                    return
            except Exception as exc:  # the database: the lease may run out; the job then runs again
                log.error("cannot renew the claim of job %d (%s)", job.id, one_line(exc, 300, with_type=True))

    def stop(self) -> None:
        """At the worker's shutdown: stop the running child analyses (their jobs are put back)."""
        self.stopping.set()
        self.runner.terminate_children()


def run_worker(settings: Settings, *, config_file: Path | None = None) -> int:
    """Run a hub worker until SIGTERM or SIGINT; 0 after the stop. InputError (one line) for
    settings it cannot run with or a job store it cannot open."""
    worker = Worker(settings, config_file)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)-7s %(message)s")
    for noisy in ("pynetdicom", "dicom_node.scu", "dicom_node.stow", "celery", "kombu"):
        logging.getLogger(noisy).setLevel(logging.WARNING if noisy in ("celery", "kombu") else logging.CRITICAL)
    s = settings.node
    app = make_app(s.queue)

    @app.task(name=TASK_NAME)
    def run_job(job_id: int, kind: str) -> str:
        return worker.run_job(job_id, kind)

    threads = worker.alerts.delivery_threads()
    for thread in threads:
        thread.start()
    server = None
    if s.metrics_port:
        try:
            server = serve_metrics(s.http_address, s.metrics_port,
                                   lambda: worker.metrics.text(worker.store, lambda: queue_depth(app)))
        except OSError as exc:
            raise InputError(f"cannot serve metrics on {s.http_address}:{s.metrics_port}: {exc.strerror}") from None
    signals.worker_shutting_down.connect(lambda **_: worker.stop(), weak=False)
    # A receiver of setup_logging keeps Celery from configuring logging: ours stays (INFO).
    signals.setup_logging.connect(lambda **_: None, weak=False)
    log.info("stroke-triage worker %s (research use only: not for clinical decisions), pid %d", __version__, os.getpid())
    log.info("jobs from %s (queue %s), job store %s, data in %s; up to %d tasks at once%s", where(s.queue),
             QUEUE_NAME, where_stored(s), worker.data_dir, s.max_jobs,
             f"; metrics on http://{s.http_address}:{s.metrics_port}/metrics" if server else "")
    log_destination(worker.sender.remote, worker.sender.over_tls, worker.data_dir / "results")
    if not (worker.data_dir / "spool").is_dir():
        log.warning("%s has no spool/ folder: is it the listener's data directory, shared and mounted at the "
                    "same path here? Analyses cannot read the images otherwise", worker.data_dir)
    try:
        app.worker_main(["worker", "--pool", "threads", "--concurrency", str(s.max_jobs), "--queues", QUEUE_NAME,
                         "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
                         "--hostname", f"triage-{os.getpid()}@{socket.gethostname()}"])
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise InputError(f"the Celery worker stopped with status {exc.code}") from None
    finally:
        worker.stop()
        if server is not None:
            server.shutdown()
        for thread in threads:
            thread.join(5.0)
        worker.store.close()
    log.info("worker stopped")
    return 0
