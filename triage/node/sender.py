"""The sender thread: push each result's DICOM objects to the PACS.

A finished analysis queues a send job (when a PACS is set, ``--pacs`` or ``--pacs-dicomweb``).
The ``sender`` thread C-STOREs ``dicom/*.dcm`` of its result folder (:mod:`triage.report.folder`)
to the PACS (:mod:`dicom_node.scu`), or stores them on a DICOMweb server with STOW-RS
(:mod:`dicom_node.stow`: an HTTP error or an unreachable server counts as an unreachable PACS,
an instance the server lists as failed as a C-STORE failure status), recording each
acknowledged object in the folder's ``.sent`` ledger, and retries with exponential backoff
(capped at ``SEND_BACKOFF_CAP_S``) while the PACS is unreachable. A send
job is done only when every object was acknowledged; result UIDs are deterministic, so a
repeated send after a crash is harmless to the PACS. The results of a generation superseded
before they were sent are not sent; a send under way finishes (the PACS cannot be asked to
forget what it acknowledged).

Research use only.
"""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path

from dicom_node.scu import RemoteAE, SendError, SendReport, send_files
from dicom_node.stow import StowEndpoint, store_files
from triage.base.errors import InputError
from triage.node.alerts import unencrypted
from triage.node.context import NodeContext, run_claimed, run_jobs
from triage.settings import NodeSettings
from triage.store.records import Job

log = logging.getLogger("triage.node")

SEND_BACKOFF_START_S = 2.0
SEND_BACKOFF_CAP_S = 60.0
MAX_SEND_REFUSALS = 10         # sends the PACS answered with failure statuses before giving up
SEND_TIMEOUT_S = 30.0


class Sender:
    """The send jobs of ``context``'s store, to ``context.remote`` (over DICOM TLS with
    ``tls``). :meth:`run` is the thread."""

    def __init__(self, context: NodeContext, tls: ssl.SSLContext | None):
        self._context = context
        self._tls = tls

    @property
    def remote(self) -> RemoteAE | StowEndpoint | None:
        return self._context.remote

    @property
    def over_tls(self) -> bool:
        """C-STORE over DICOM TLS."""
        return self._tls is not None

    def run(self) -> None:
        run_jobs(self._context, "send", self._send, self._send_failed_in_node)

    def run_job(self, job: Job) -> None:
        """Run one send job claimed elsewhere (a hub worker's task, :mod:`triage.hub`)."""
        run_claimed(job, self._send, self._send_failed_in_node)

    def _send_failed_in_node(self, job: Job, reason: str) -> None:
        delay = _backoff(job.attempts)
        log.error("sending series %s generation %d failed: %s; retry in %.0f s", job.series_uid,
                  job.generation, reason, delay)
        self._context.store.retry_job(job.id, reason, delay, claim=job.claim)

    def _send(self, job: Job) -> None:
        store, remote = self._context.store, self._context.remote
        uid, generation = job.series_uid, job.generation
        folder = self._context.results.folder(uid, generation)
        objects = folder.dicom_objects()
        already = folder.sent()
        newest = store.series(uid).generation
        # A send that failed while a newer generation started (not when every newer analysis
        # failed: then this is the fallback that the analysis runner queued).
        if newest > generation and store.newer_result_possible(uid, generation):
            if store.supersede_job(job.id, newest, claim=job.claim):
                log.info("results of %s generation %d not sent: superseded by generation %d "
                         "(%d of %d objects were already sent)", uid, generation, newest,
                         len(already), len(objects))
            return
        if not objects:
            store.fail_job(job.id, "no result objects to send", claim=job.claim)
            log.error("series %s generation %d: no result objects in %s; nothing sent", uid,
                      generation, folder.dicom_dir)
            return
        started = time.monotonic()
        pending = sorted((path for path in objects if path.name not in already), key=_send_order)
        if not pending:  # acknowledged before a stop, the job not yet marked done
            store.finish_job(job.id, claim=job.claim)
            log.info("series %s generation %d: all %d objects were already acknowledged by %s",
                     uid, generation, len(objects), remote)
            return
        try:
            report = self._deliver(pending)
        except SendError as exc:
            delay = _backoff(job.attempts)
            store.retry_job(job.id, str(exc), delay, claim=job.claim)
            log.warning("%s; series %s generation %d not sent, retry in %.0f s", exc, uid, generation,
                        delay)
            return
        folder.record_sent([r.path.name for r in report.results if r.stored])
        if report.ok:
            store.finish_job(job.id, claim=job.claim)
            series = store.series(uid)
            decompressed = (f"; {len(report.decompressed)} sent decompressed: the PACS refused their "
                            "compressed transfer syntax" if report.decompressed else "")
            log.info("sent %d objects of series %s generation %d to %s in %.1f s (%.1f s after its "
                     "last image%s)", len(pending), uid, generation, remote,
                     time.monotonic() - started, time.time() - series.last_received, decompressed)
            return
        self._not_all_stored(job, report.failed, len(pending))

    def _deliver(self, paths: list[Path]) -> SendReport:
        remote = self._context.remote
        if isinstance(remote, StowEndpoint):
            return store_files(paths, remote, timeout=SEND_TIMEOUT_S)
        return send_files(paths, remote, calling_aet=self._context.settings.ae_title, tls=self._tls,
                          timeout=SEND_TIMEOUT_S)

    def _not_all_stored(self, job: Job, failed: list, pending: int) -> None:
        """Retry a send that the PACS did not store whole, or give up after MAX_SEND_REFUSALS
        sends it answered with failure statuses."""
        remote, uid, generation = self._context.remote, job.series_uid, job.generation
        reason = f"{len(failed)} of {pending} objects not stored: {failed[0].path.name}: {failed[0].reason}"
        refused = any(f.status is not None for f in failed)  # the PACS answered with a failure
        if not refused or job.attempts < MAX_SEND_REFUSALS:
            delay = _backoff(job.attempts)
            self._context.store.retry_job(job.id, reason, delay, claim=job.claim)
            log.warning("PACS %s did not store every object of series %s generation %d (%s), retry "
                        "in %.0f s", remote, uid, generation, reason, delay)
        else:
            self._context.store.fail_job(job.id, reason, claim=job.claim)
            log.error("PACS %s refused objects of series %s generation %d %d times, given up: %s",
                      remote, uid, generation, job.attempts, reason)


def destination(s: NodeSettings) -> RemoteAE | StowEndpoint | None:
    """Where the results of ``s`` go: the PACS of ``pacs`` (C-STORE), the DICOMweb server of
    ``pacs_dicomweb`` (STOW-RS), or nowhere (None); InputError with one line when a setting is
    malformed or both are set."""
    if s.pacs and s.pacs_dicomweb:
        raise InputError("--pacs and --pacs-dicomweb are both set: results go to one PACS, by C-STORE "
                         "or by STOW-RS; set one of them")
    if (s.pacs_dicomweb_password_file or s.pacs_dicomweb_ca) and not s.pacs_dicomweb:
        raise InputError("--pacs-dicomweb-password-file and --pacs-dicomweb-ca need --pacs-dicomweb")
    try:
        if s.pacs_dicomweb:
            return StowEndpoint.parse(s.pacs_dicomweb, password_file=s.pacs_dicomweb_password_file,
                                      ca_file=s.pacs_dicomweb_ca)
        return RemoteAE.parse(s.pacs) if s.pacs else None
    except ValueError as exc:
        raise InputError(str(exc)) from None


def log_destination(remote: RemoteAE | StowEndpoint | None, over_tls: bool, results: Path) -> None:
    """Say at start-up where results go (``over_tls``: C-STORE over DICOM TLS), with a warning
    for STOW-RS over plain http beyond this machine."""
    if isinstance(remote, StowEndpoint):
        log.info("results go to %s by DICOMweb STOW-RS", remote)
        if unencrypted((remote.url,)):
            log.warning("results go to %s by plain http (patient data%s not encrypted; use https)", remote,
                        " and the password" if remote.auth else "")
    elif remote:
        log.info("results go to %s%s", remote, " over DICOM TLS" if over_tls else "")
    else:
        log.info("no PACS set (--pacs, --pacs-dicomweb): results are kept in %s", results)


def _backoff(attempts: int) -> float:
    """Seconds before send attempt ``attempts + 1``: 2, 4, 8, ... capped at SEND_BACKOFF_CAP_S."""
    return min(SEND_BACKOFF_CAP_S, SEND_BACKOFF_START_S * 2 ** max(0, attempts - 1))


def _send_order(path: Path) -> tuple[int, str]:
    """The structured report first (the numbers a reader looks for), then the segmentation,
    then the pictures."""
    return ({"sr.dcm": 0, "seg.dcm": 1}.get(path.name, 2), path.name)
