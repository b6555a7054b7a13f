"""The hub: one listener and several workers sharing a Redis queue and a PostgreSQL job store.

With the settings ``queue`` (a Redis URL, Celery's broker) and ``database`` (a PostgreSQL URL),
``triage serve`` only receives, spools, detects completion and queues; the analyses, DICOM
export, sending and alerts run in ``triage worker`` processes, on this machine or others that
mount the same data directory at the same path:

- :mod:`triage.hub.queue`: the Celery application and the one task, which carries a job's id
  only: the job itself, its state and its claim live in the job store;
- :mod:`triage.hub.dispatcher`: the listener's thread that publishes the due jobs and puts back
  the jobs of workers that died (their lease ran out);
- :mod:`triage.hub.worker`: ``triage worker``, a Celery worker whose task claims the job in the
  job store, keeps its lease while it runs, and runs it with the node's own analysis runner and
  sender; its threads deliver the alerts;
- :mod:`triage.hub.metrics`: a worker's Prometheus metrics.

Exactly once rests on the job store, not on process memory or the broker: a job runs only under
a claim (a token and a lease renewed while it runs, :meth:`triage.store.jobs.JobStore.claim_job_id`),
jobs and alerts have unique keys, and result UIDs are derived from (series, generation), so a
repeated send stores nothing twice in the PACS. Research use only.
"""
