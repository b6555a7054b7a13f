"""The listener's dispatcher: publishes the job store's due jobs to the hub's queue.

In a hub (settings ``queue`` and ``database``) the completion monitor and the web API queue jobs
in the job store as in one process; this thread (``dispatcher``) publishes each due pending job
to Celery (:func:`triage.hub.queue.publish`) as soon as it is queued (the monitor wakes it) and
looks again every ``DISPATCH_S``. It also puts back the jobs whose worker stopped renewing its
lease (a worker killed -9, a machine lost): they are due again at once, their attempt counted.

A job is published once per state it is in (attempts, due time, last change); a job still
pending ``REPUBLISH_S`` after its publication is published again, in case the broker lost the
message (a Redis restart without persistence). Publishing twice is harmless: the first worker
to claim the job runs it, the other drops the message. A broker that cannot be reached is said
once and retried; the jobs wait in the job store meanwhile.
"""

from __future__ import annotations

import logging
import time

from celery import Celery

from triage.base.errors import one_line
from triage.hub.queue import publish
from triage.node.context import NodeContext

log = logging.getLogger("triage.hub")

DISPATCH_S = 0.5
REPUBLISH_S = 60.0


class Dispatcher:
    """Publishes the due jobs of ``context.store`` with ``app``. :meth:`run` is the thread."""

    def __init__(self, context: NodeContext, app: Celery):
        self._context = context
        self._app = app
        self._published: dict[int, tuple[tuple, float]] = {}  # job id: (its state, when published)
        self._failing = False

    def run(self) -> None:
        while not self._context.stopping.is_set():
            try:
                self.dispatch(time.time())
                if self._failing:
                    log.info("task queue and job store reachable again: due jobs published")
                self._failing = False
            except Exception as exc:  # the broker or the database: the jobs wait in the store
                if not self._failing:
                    log.error("cannot publish the due jobs (%s); retrying every %.1f s",
                              one_line(exc, 300, with_type=True), DISPATCH_S)
                self._failing = True
            with self._context.wake:
                if not self._context.stopping.is_set():
                    self._context.wake.wait(DISPATCH_S)

    def dispatch(self, now: float) -> int:
        """Put back the jobs of dead workers, publish the due jobs not yet published in their
        present state; how many were published."""
        store = self._context.store
        for job in store.expired_leases(now):
            log.warning("%s job of series %s generation %d: its worker stopped renewing its claim "
                        "(attempt %d); queued again", job.kind, job.series_uid, job.generation, job.attempts)
        due = store.due_jobs(now)
        count = 0
        for job in due:
            state = (job.attempts, job.next_attempt_at, job.updated_at)
            seen = self._published.get(job.id)
            if seen is not None and seen[0] == state and now - seen[1] < REPUBLISH_S:
                continue
            publish(self._app, job.id, job.kind)
            self._published[job.id] = (state, now)
            count += 1
        pending = {job.id for job in due}
        for job_id in [j for j in self._published if j not in pending]:
            del self._published[job_id]
        return count
