"""The node's persistent state, in one SQLite file (``DATA/triage.db``), or in one PostgreSQL
database that the processes of a hub share. Every SQL statement of the project is in this
package, written once for both.

- :mod:`triage.store.database`: the connection all the modules share (one lock, short
  write transactions that exclude each other), SQLite's (WAL) or PostgreSQL's;
- :mod:`triage.store.postgres`: the PostgreSQL backend (psycopg 3) and its translation of the
  statements and table definitions;
- :mod:`triage.store.schema`: the node's tables ``instances``, ``series``, ``jobs`` and
  ``outbox`` (their columns and meaning) and the migrations of older databases;
- :mod:`triage.store.records`: the rows and outcomes the job store returns
  (``SeriesRecord``, ``Job``, ``Generation``, ``Recorded``, ``Recovery``);
- :mod:`triage.store.jobs`: :class:`~triage.store.jobs.JobStore`, which opens the database:
  received instances, series, analysis and send jobs, crash recovery;
- :mod:`triage.store.outbox`: the ``outbox`` table's messages and the queries of their
  delivery (:mod:`triage.node.delivery`);
- :mod:`triage.store.accounts`: the web API's tables ``users``, ``api_tokens``, ``sessions`` and
  ``audit`` (:mod:`triage.web.accounts`);
- :mod:`triage.store.shares`: the web API's share links and their uses, ``share_links`` and
  ``share_uses`` (:mod:`triage.web.shares`);
- :mod:`triage.store.studies` and :mod:`triage.store.metrics`: the web API's read-only views
  of the node's tables (:mod:`triage.web.studies`, :mod:`triage.web.metrics`).

Each table module takes the :class:`~triage.store.jobs.JobStore` and uses its connection.
Times are POSIX seconds (``time.time()``), so they survive a restart.
"""
