"""The node's alerts to the stroke team: composed where the analysis ends, delivered by threads.

With ``--webhook`` or a chat or e-mail channel, each result, each analysis failed for good and
each perfusion series reported incomplete is announced to the stroke team. The analysis workers
and the completion monitor ask :meth:`AlertComposer.messages` for the messages of what happened
(built by :mod:`triage.node.alerts`) and write them to the job store's outbox with it: a
result's as soon as its ``result.json`` is in place, before the DICOM export; a failure's in the
transaction that fails the job. They then :meth:`~AlertComposer.notify` the delivery threads
(``alerts-N``), one per webhook and per channel address, which send the outbox's messages
(:mod:`triage.node.delivery`).

Research use only.
"""

from __future__ import annotations

import logging
import threading

from triage.base.errors import one_line
from triage.node.alerts import (
    AlertConfig,
    failure_messages,
    incomplete_messages,
    patient_details,
    result_messages,
)
from triage.node.delivery import Deliverer
from triage.store.jobs import JobStore
from triage.store.outbox import OutboxMessage, OutboxStore

log = logging.getLogger("triage.node")


class AlertComposer:
    """The alerts of one job store, to the webhooks and channels of ``config`` (None: without
    any, no alerts)."""

    def __init__(self, config: AlertConfig | None, store: JobStore, stopping: threading.Event):
        self.config = config
        self._store = store
        self._stopping = stopping
        self._deliverers: list[Deliverer] = []  # one per webhook or channel address

    def delivery_threads(self) -> list[threading.Thread]:
        """The delivery threads, one per webhook and per channel address, not yet started.
        Alerts of an earlier run to a webhook or channel no longer configured are dropped first."""
        urls = self.config.addresses() if self.config else ()
        dropped = OutboxStore(self._store).expire_pending("its webhook is no longer configured", keep_urls=urls)
        if dropped:
            log.warning("%d undelivered alert(s) of an earlier run dropped: their webhook or channel is no "
                        "longer configured (--webhook, slack_webhook, ...)", dropped)
        if not self.config:
            return []
        self._deliverers = [Deliverer(self._store, self.config.secret, self._stopping, url, self.config.channels)
                            for url in urls]
        return [threading.Thread(target=d.run, name=f"alerts-{k + 1}", daemon=True)
                for k, d in enumerate(self._deliverers)]

    def notify(self) -> None:
        """Wake the delivery threads: alerts were written."""
        for deliverer in self._deliverers:
            deliverer.notify()

    def messages(self, series_uid: str, generation: int, kind: str, at: float, **facts) -> list[OutboxMessage]:
        """The outbox messages of a ``result``, ``failure`` or ``incomplete`` series at ``at``
        ([] without alerts). Building them never stops the result or failure from being
        recorded: an error is logged and the alert left out."""
        if self.config is None:
            return []
        build = {"result": result_messages, "failure": failure_messages, "incomplete": incomplete_messages}[kind]
        try:
            return build(self.config, self._store.series(series_uid), generation, at=at,
                         patient=self._patient(series_uid), **facts)
        except Exception as exc:
            log.error("series %s generation %d: the %s alert cannot be written (%s); not sent",
                      series_uid, generation, kind, one_line(exc, 300, with_type=True))
            return []

    def _patient(self, series_uid: str) -> dict | None:
        """PatientID and name of the series for its alerts with --alert-patient-details, else
        None (None too, with a warning, when no header of the series can be read)."""
        if not self.config.patient_details:
            return None
        try:
            return patient_details(self._store.instances(series_uid)[0].path)
        except Exception as exc:
            log.warning("series %s: patient details not readable for its alert (%s): sent without",
                        series_uid, type(exc).__name__)
            return None
