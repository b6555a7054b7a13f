"""The hub's task queue: a Celery application on a Redis broker, carrying job ids.

A message says only "run job N (of kind K)"; the job store holds the job. Messages are
acknowledged late (after the task returned), so a worker killed -9 leaves its message to be
delivered again once the broker's visibility timeout (``VISIBILITY_TIMEOUT_S``) has passed; long
before that, the listener's dispatcher (:mod:`triage.hub.dispatcher`) has put the job back and
published it again when the dead worker's lease ran out. A message for a job that is done, or
running under a live claim, is dropped by the worker (:meth:`triage.store.jobs.JobStore.claim_job_id`).
"""

from __future__ import annotations

from celery import Celery

from triage.node.analysis_runner import ANALYSIS_TIMEOUT_S

QUEUE_NAME = "triage"
TASK_NAME = "triage.run_job"
# Longer than the longest task (an analysis is killed after ANALYSIS_TIMEOUT_S, the DICOM export
# and the send follow), so that a message is not delivered twice while its task still runs.
VISIBILITY_TIMEOUT_S = ANALYSIS_TIMEOUT_S + 300.0


def make_app(broker_url: str) -> Celery:
    """The Celery application on ``broker_url`` (``redis://HOST:PORT/DB``), no result backend."""
    app = Celery("triage", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE_NAME,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5.0,
        task_publish_retry=False,  # a broker that is down fails the publish: the dispatcher retries
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
    )
    return app


def publish(app: Celery, job_id: int, kind: str) -> None:
    """Queue the run of job ``job_id`` of ``kind`` (``analyse`` or ``send``). Raises the broker's
    error (kombu's ``OperationalError``) when it cannot be reached."""
    app.send_task(TASK_NAME, args=[job_id, kind], queue=QUEUE_NAME)


def queue_depth(app: Celery) -> int:
    """Messages waiting in the queue (not those a worker has taken and not yet acknowledged)."""
    with app.connection_for_write() as connection:
        return int(connection.default_channel.client.llen(QUEUE_NAME))
