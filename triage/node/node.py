"""The DICOM node behind ``triage serve``: receive, find complete perfusion series, analyse, send.

:class:`Node` builds the parts below around one job store (``DATA/triage.db``,
:mod:`triage.store.jobs`), starts their threads and stops them. The life of a study, part by part:

- Receiving (:mod:`dicom_node.scp`, a thread per association): the storage SCP writes each
  instance durably to ``DATA/spool/<study>/<series>/`` and records it in the job store
  (:meth:`Node.on_stored`) before it acknowledges it.
- Completion (:mod:`triage.node.monitor`, thread ``completion``): every ``TICK_S`` the quiet
  series are classified; a complete CT perfusion series, or the complete time points of an
  aborted scan, gets an analysis job; a perfusion series still incomplete is reported. A new
  instance for an analysed series starts the next *generation*, a re-analysis, which supersedes
  the older ones. The same thread removes expired series (``--retention-days``).
- Analysis (:mod:`triage.node.analysis_runner`, ``max_jobs`` threads ``analysis-N``): each job
  runs in a child process (``python -m triage.node.child``) into
  ``DATA/results/<series>/<generation>/`` (:mod:`triage.report.folder`); failures are retried or
  fail the job; a finished analysis queues its send.
- Alerts (:mod:`triage.node.alert_composer`, a thread ``alerts-N`` per ``--webhook``): each
  result, each analysis failed for good and each series reported incomplete is written to the
  job store's outbox and POSTed to the stroke team's endpoints (:mod:`triage.node.delivery`).
- Sending (:mod:`triage.node.sender`, thread ``sender``): the result objects go to the PACS,
  retried with backoff while it is unreachable.
- With ``--http-port``, the web API and viewer (:mod:`triage.web`) show the store and the
  results, and can queue a re-run (:meth:`Node.reprocess`).

The parts share a :class:`~triage.node.context.NodeContext` (settings, job store, results root,
PACS, stop event, wake condition) and call each other: the monitor and :meth:`Node.reprocess`
have the analysis runner supersede the older generations, the runner and the monitor write
alerts with the alert composer, and a thread that queued work wakes the workers.

Every job lives in SQLite: after a crash or a stop, :meth:`~triage.store.jobs.JobStore.recover`
resumes the unfinished work. SIGTERM/SIGINT stop the node gracefully: the DICOM port closes
(running transfers get a few seconds; unacknowledged instances are the sender's to resend),
child analyses are terminated (re-run after the next start), the database is closed, exit 0.

Research use only.
"""

from __future__ import annotations

import logging
import signal
import ssl
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from dicom_node.instance import InstanceInfo
from dicom_node.scp import StorageSCP, TlsConfig
from dicom_node.spool import Spool
from triage import __version__
from triage.base.errors import InputError, one_line
from triage.node.alert_composer import AlertComposer
from triage.node.alerts import alert_config, log_alert_config, where
from triage.node.analysis_runner import CHILD_STOP_S, AnalysisRunner
from triage.node.context import NodeContext
from triage.node.monitor import CompletionMonitor
from triage.node.streams import StreamFeeds
from triage.node.sender import SEND_TIMEOUT_S, Sender, destination, log_destination
from triage.report.folder import ResultsRoot
from triage.settings import NodeSettings, Settings
from triage.store.database import DatabaseError
from triage.store.postgres import DatabaseUnreachable
from triage.store.jobs import JobStore

log = logging.getLogger("triage.node")


class Node:
    """The node's parts around one job store. :meth:`start`, then :meth:`stop`."""

    def __init__(self, settings: Settings, *, config_file: Path | None = None):
        _check(settings.node)
        self.settings = settings.node
        self.config_file = Path(config_file).resolve() if config_file else None
        self.data_dir = Path(self.settings.data_dir).resolve()
        self.spool_root = self.data_dir / "spool"
        self.results = ResultsRoot(self.data_dir / "results")
        self.remote = destination(self.settings)
        self.store: JobStore | None = None
        self.scp: StorageSCP | None = None
        self.spool: Spool | None = None
        self.web = None  # triage.web.server.WebServer when http_port is set
        self._pacs_tls: ssl.SSLContext | None = None
        self._stopping = threading.Event()
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._alert_config = alert_config(settings.alerts, http_port=self.settings.http_port,
                                          language=settings.analysis.language)  # None without --webhook
        self._public_url = settings.alerts.public_url  # the share links' base
        self._language = settings.analysis.language  # the viewer's words
        self._alerts: AlertComposer | None = None
        self._runner: AnalysisRunner | None = None
        self._monitor: CompletionMonitor | None = None
        self._streams: StreamFeeds | None = None
        self._sender: Sender | None = None
        self.hub = bool(self.settings.queue)  # a hub's listener: workers run the jobs (triage.hub)

    # Life cycle

    def start(self) -> None:
        """Recover, start listening, start the monitor, workers and sender. Returns at once."""
        s = self.settings
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot use the data directory {self.data_dir}: {exc}") from None
        try:
            self.store = JobStore(s.database or self.data_dir / "triage.db")
        except (OSError, DatabaseError) as exc:
            raise InputError(job_store_error(s, exc)) from None
        try:
            spool = Spool(self.spool_root, reserve_bytes=s.spool_reserve_mb * 2**20,
                          journal_bytes=s.spool_journal_mb * 2**20)
        except OSError as exc:
            self.store.close()
            raise InputError(f"cannot use the data directory {self.data_dir}: {exc}") from None
        self.spool = spool
        # A hub's running jobs run on live workers: their leases tell (triage.hub.dispatcher).
        recovery = self.store.recover(self.spool_root, reset_running=not self.hub)
        if recovery.jobs_reset or recovery.instances_registered:
            log.info("resumed after a stop: %d unfinished job(s) back in the queue, %d spooled "
                     "instance(s) registered again", recovery.jobs_reset, recovery.instances_registered)
        for path, reason in recovery.unreadable:
            log.warning("spool file %s cannot be read (%s): left out", path, reason)
        if s.pacs_tls:
            try:
                self._pacs_tls = tls_config(s).client_context()
            except (ssl.SSLError, OSError) as exc:
                self.store.close()
                raise InputError(f"DICOM TLS to the PACS: cannot use --tls-cert/--tls-key/--tls-ca: "
                                 f"{exc}") from None
        self._build_parts(spool)
        allowed = None if s.accept_any_aet else frozenset(s.allow_aet)
        self._listen(spool, allowed)
        self._threads = [threading.Thread(target=self._monitor.run, name="completion", daemon=True)]
        if self.hub:
            self._threads.append(threading.Thread(target=self._dispatcher.run, name="dispatcher", daemon=True))
        else:
            self._threads += [threading.Thread(target=self._sender.run, name="sender", daemon=True),
                              threading.Thread(target=self._streams.run, name="streams", daemon=True)]
            self._threads += [threading.Thread(target=self._runner.run, name=f"analysis-{k + 1}", daemon=True)
                              for k in range(s.max_jobs)]
            self._threads += self._alerts.delivery_threads()
        for thread in self._threads:
            thread.start()
        self._log_startup(allowed)

    def _build_parts(self, spool: Spool) -> None:
        """The alert composer, analysis runner, completion monitor and sender, sharing one context;
        in a hub, the dispatcher instead of the sender and the read-ahead (the runner only
        supersedes: the workers' runners see it in the store and stop their analyses)."""
        context = NodeContext(self.settings, self.store, self.results, self.remote, self._stopping, self._wake)
        self._alerts = AlertComposer(self._alert_config, self.store, self._stopping)
        if self.hub:
            from triage.hub.dispatcher import Dispatcher  # Celery is imported only by a hub's listener
            from triage.hub.queue import make_app

            self._dispatcher = Dispatcher(context, make_app(self.settings.queue))
        else:
            self._streams = StreamFeeds(context, self.config_file, spool.wait_filed)
            self._sender = Sender(context, self._pacs_tls)
        self._runner = AnalysisRunner(context, self._alerts, self.config_file, streams=self._streams)
        self._monitor = CompletionMonitor(context, spool, self._runner, self._alerts, sending=self._series_being_sent,
                                          streams=self._streams)

    def _listen(self, spool: Spool, allowed: frozenset | None) -> None:
        """Start the storage SCP, and the web server when http_port is set (the store is closed
        when either cannot start)."""
        s = self.settings
        self.scp = StorageSCP(
            spool, ae_title=s.ae_title, host=s.listen_address, port=s.dicom_port, allowed_aets=allowed,
            on_stored=self.on_stored, max_associations=s.max_associations,
            max_connections_per_peer=s.max_connections_per_peer,
            request_timeout=s.association_request_timeout, tls=tls_config(s))
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
        if self._streams is not None:
            self._streams.stop()
        if self._runner is not None:
            self._runner.terminate_children()
        for thread in self._threads:
            thread.join(SEND_TIMEOUT_S + CHILD_STOP_S + 5.0)
        busy = [t.name for t in self._threads if t.is_alive()]
        if busy:
            log.warning("threads still busy at exit: %s (their jobs resume after the next start)",
                        ", ".join(busy))
        elif self.store is not None:
            self.store.close()
        if self.spool is not None:
            self.spool.close()
        log.info("stopped")

    def _start_web(self) -> None:
        """Serve the web API and viewer on ``http_address``:``http_port`` (imported only then)."""
        from triage.web.app import create_app
        from triage.web.server import WebServer

        s = self.settings
        self.web = WebServer(create_app(self.data_dir, self.store, reprocess=self.reprocess,
                                        public_url=self._public_url, language=self._language),
                             s.http_address, s.http_port, s.http_trusted_proxies)
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
        self._runner.supersede(started)
        with self._wake:
            self._wake.notify_all()
        return started.number

    def _log_startup(self, allowed: frozenset | None) -> None:
        s = self.settings
        log.info("stroke-triage node %s (research use only: not for clinical decisions)", __version__)
        log.info("data in %s", self.data_dir)
        log_destination(self.remote, bool(self._pacs_tls), self.results.path)
        if allowed is None:
            log.warning("accepting associations from ANY calling AE title (--accept-any-aet)")
        else:
            log.info("accepting calling AE titles: %s", ", ".join(sorted(allowed)))
        if self.hub:
            log.info("a hub's listener: complete series are queued on %s for the `triage worker` processes; "
                     "job store %s", where(s.queue), where_stored(s))
            log.info("series complete after %.1f s without new images", s.quiet_seconds)
        else:
            log.info("series complete after %.1f s without new images; up to %d analyses at once",
                     s.quiet_seconds, s.max_jobs)
        if s.spool_journal_mb:
            log.info("each image is durable in the spool's %d MiB journal before it is acknowledged "
                     "(--spool-journal-mb)", s.spool_journal_mb)
        else:
            log.info("each image's own file is synced before it is acknowledged (--spool-journal-mb 0)")
        if s.retention_days > 0:
            log.info("series are removed %g days after their last image once their work is done "
                     "(--retention-days)", s.retention_days)
        else:
            log.info("series are kept for ever (--retention-days 0): the spool and results grow "
                     "until the disk reserve refuses new images")
        if self._alert_config:
            log_alert_config(self._alert_config)

    # Receiving

    def _series_being_sent(self) -> frozenset[str]:
        """The series an open association's latest image belongs to (see StorageSCP.sending_series)."""
        return self.scp.sending_series() if self.scp is not None else frozenset()

    def on_stored(self, info: InstanceInfo) -> None:
        """Called by the SCP after an instance is durably in the spool, before it is
        acknowledged; an exception here makes the C-STORE fail."""
        recorded = self.store.record_instance(info)
        if self._streams is not None:
            self._streams.stored(info)
        if recorded.previous_state is None:
            log.info("series %s: first image from %s (study %s)", info.series_uid,
                     info.calling_aet or "?", info.study_uid)
        elif recorded.new and recorded.previous_state == "ready":
            log.info("series %s: new image after analysis generation %d: re-analysis once the "
                     "series is quiet and complete", info.series_uid, recorded.generation)


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
    logging.getLogger("dicom_node.stow").setLevel(logging.CRITICAL)
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
        (s.max_connections_per_peer >= 1, "--max-connections-per-peer must be at least 1"),
        (s.association_request_timeout > 0, "--association-request-timeout must be positive"),
        (s.spool_reserve_mb >= 0, "--spool-reserve-mb must not be negative"),
        (s.spool_journal_mb == 0 or s.spool_journal_mb >= 8,
         "--spool-journal-mb must be 0 (no journal) or at least 8"),
        (s.retention_days >= 0, "--retention-days must not be negative (0 keeps everything)"),
        (bool(s.tls_cert) == bool(s.tls_key), "DICOM TLS needs both --tls-cert and --tls-key"),
        (not s.tls_ca or bool(s.tls_cert), "--tls-ca needs --tls-cert and --tls-key"),
        (not s.pacs_tls or bool(s.pacs and s.tls_cert), "--pacs-tls needs --pacs and --tls-cert/--tls-key"),
        (not s.queue or urlsplit(s.queue).scheme in ("redis", "rediss"), "--queue: expected a redis:// URL"),
        (not s.database or urlsplit(s.database).scheme in ("postgresql", "postgres"),
         "--database: expected a postgresql:// URL"),
        (not s.queue or bool(s.database),
         "--queue needs --database: the listener and the workers share a PostgreSQL job store"),
    ]
    for ok, reason in checks:
        if not ok:
            raise InputError(reason)
    for name in ("tls_cert", "tls_key", "tls_ca"):
        value = getattr(s, name)
        if value and not Path(value).is_file():
            raise InputError(f"--{name.replace('_', '-')} {value}: no such file")


def where_stored(s: NodeSettings) -> str:
    """The job store of ``s``, named without password: ``PostgreSQL host:port/name``, or the
    SQLite file."""
    if not s.database:
        return str(Path(s.data_dir).resolve() / "triage.db")
    from triage.store.postgres import where

    return f"PostgreSQL {where(s.database)}"


def job_store_error(s: NodeSettings, exc: Exception) -> str:
    """The one-line reason why the job store of ``s`` cannot be opened."""
    if isinstance(exc, DatabaseUnreachable):  # it names the server and database itself
        return one_line(exc)
    return f"cannot use the job store {where_stored(s)}: {one_line(exc)}"


def tls_config(s: NodeSettings) -> TlsConfig | None:
    """The DICOM TLS files of ``s`` (None: plain TCP)."""
    if not s.tls_cert:
        return None
    return TlsConfig(cert=Path(s.tls_cert), key=Path(s.tls_key), ca=Path(s.tls_ca) if s.tls_ca else None)
