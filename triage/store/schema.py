"""The node's tables in ``DATA/triage.db`` (or a hub's PostgreSQL database), created by
:class:`~triage.store.jobs.JobStore` when missing.

``instances``
    One row per SOP Instance UID (a repeated instance updates its row): identifiers, spool path,
    the header facts of :class:`dicom_node.instance.InstanceInfo`, calling AE title and
    ``received_at``.
``series``
    One row per Series Instance UID: ``state`` (``receiving`` → ``ignored`` | ``incomplete`` |
    ``ready``), ``classification`` (``CTP`` or ``other``) and its ``reason``, first/last
    receipt, instance count, slice positions × time points when known, and ``generation``: the
    number of analyses started for it (a late instance of a finished series starts generation
    + 1, analysed into a results directory of its own).
``jobs``
    ``analyse`` and ``send`` jobs per (series, generation), with ``state`` (``pending`` →
    ``running`` → ``done`` | ``failed``, or ``superseded`` when a newer generation of the series
    started first), ``attempts``, ``next_attempt_at`` and the last error. ``options`` (analyse
    jobs) is NULL for an analysis the images started, or the JSON object of a re-run a user
    requested (:meth:`~triage.store.jobs.JobStore.reprocess`): ``{"aif": [x, y, z], "profile":
    name}``, each key optional (``{}``: the same analysis again). A running job has the random
    ``claim`` token of whoever runs it and, if claimed with a lease, ``lease_until``, which its
    worker renews: a job whose lease ended belongs to a worker that died, and is taken over. A
    job not running has neither.
``outbox``
    Alerts to the stroke team's endpoints and chat and e-mail channels (:mod:`triage.node.alerts`,
    :mod:`triage.node.channels`), delivered by
    :mod:`triage.node.delivery` through :class:`~triage.store.outbox.OutboxStore`: ``state``
    ``pending`` → ``delivered`` | ``expired``. A result's alert is written as soon as the result
    is in place, while its DICOM objects are still being made, and again (the same key: kept
    once) in the transaction that finishes the analysis, so a crash in between loses none; a
    failure's in the transaction that records the failure. ``lease_until`` is set while one
    delivering process has the message (:meth:`~triage.store.outbox.OutboxStore.due`).

Times are POSIX seconds (``time.time()``), so they survive a restart. The text is SQLite's;
:func:`triage.store.postgres.postgres_ddl` makes PostgreSQL's of it.
"""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    calling_aet TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    modality TEXT NOT NULL,
    series_description TEXT NOT NULL,
    image_type TEXT NOT NULL,          -- JSON list
    position TEXT,                     -- JSON [x, y, z] mm, or NULL
    orientation TEXT,                  -- JSON 6 direction cosines, or NULL
    time_s REAL,                       -- s after midnight, or NULL
    acquisition_number INTEGER,
    number_of_frames INTEGER NOT NULL,
    received_at REAL NOT NULL,
    temporal_positions INTEGER,        -- NumberOfTemporalPositions, or NULL
    images_in_acquisition INTEGER      -- ImagesInAcquisition, or NULL
);
CREATE INDEX IF NOT EXISTS instances_by_series ON instances (series_uid);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    description TEXT NOT NULL,
    calling_aet TEXT NOT NULL,
    state TEXT NOT NULL,
    classification TEXT,
    reason TEXT,
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    n_instances INTEGER NOT NULL,
    n_positions INTEGER,
    n_times INTEGER,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    series_uid TEXT NOT NULL,
    generation INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('analyse', 'send')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed', 'superseded')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    options TEXT,                      -- JSON analysis options of a requested re-run, or NULL
    claim TEXT,                        -- the running job's claim token, or NULL
    lease_until REAL,                  -- when the running job's lease ends, or NULL (no lease)
    UNIQUE (series_uid, generation, kind)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,        -- idempotency key, sent in the Idempotency-Key header
    series_uid TEXT NOT NULL,
    generation INTEGER NOT NULL,
    kind TEXT NOT NULL,              -- 'result' | 'failure' | 'incomplete'
    format TEXT NOT NULL,            -- 'json' | 'fhir' | 'slack' | 'teams' | 'telegram_photo' | 'telegram' | 'email'
    url TEXT NOT NULL,               -- the webhook, or a channel's address (triage.node.channels)
    body BLOB NOT NULL,
    state TEXT NOT NULL,             -- 'pending' | 'delivered' | 'expired'
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    created_at REAL NOT NULL,
    delivered_at REAL,
    last_error TEXT,
    lease_until REAL                 -- the end of a deliverer's lease, or NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
"""
MIGRATIONS = (
    ("jobs", "options", "ALTER TABLE jobs ADD COLUMN options TEXT"),
    ("instances", "temporal_positions", "ALTER TABLE instances ADD COLUMN temporal_positions INTEGER"),
    ("instances", "images_in_acquisition", "ALTER TABLE instances ADD COLUMN images_in_acquisition INTEGER"),
    ("jobs", "claim", "ALTER TABLE jobs ADD COLUMN claim TEXT"),
    ("jobs", "lease_until", "ALTER TABLE jobs ADD COLUMN lease_until REAL"),
    ("outbox", "lease_until", "ALTER TABLE outbox ADD COLUMN lease_until REAL"),
)
"""Columns added after the first release: (table, column, statement adding it)."""

INSTANCE_COLUMNS = ("sop_uid", "series_uid", "study_uid", "sop_class_uid", "path", "calling_aet",
                    "patient_id", "modality", "series_description", "image_type", "position",
                    "orientation", "time_s", "acquisition_number", "number_of_frames",
                    "received_at", "temporal_positions", "images_in_acquisition")
"""The ``instances`` columns, in the order :class:`~triage.store.jobs.JobStore` writes and reads them."""
