"""The node's web API and viewer (FastAPI), served by ``triage serve`` when ``http_port`` > 0.

- :mod:`triage.web.app`: the application (routes, authentication, pages);
- :mod:`triage.web.accounts`: users, API tokens, sessions and the audit log (tables in
  :mod:`triage.store.accounts`);
- :mod:`triage.web.shares`: read-only, expiring share links to one study (tables in
  :mod:`triage.store.shares`);
- :mod:`triage.web.studies`: the study list and details from the job store and the results;
- :mod:`triage.web.slices`: map and overlay slices as PNG on the acquisition grid;
- :mod:`triage.web.metrics`: the Prometheus exposition;
- :mod:`triage.web.server`: uvicorn in a thread of the node.

Research use only.
"""
