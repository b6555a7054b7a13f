"""The node's metrics in the Prometheus text exposition format (version 0.0.4), from the database.

Everything is computed at scrape time from the job store's tables (:mod:`triage.store.metrics`),
so the figures survive a restart (and shrink when retention removes old series):

- ``triage_instances``, ``triage_series{state}``, ``triage_jobs{kind,state}``,
  ``triage_outbox_messages{state}``: rows now (gauges);
- histograms, in seconds, of the analyses the images started (a re-run a user requested is
  left out: its time is the request's, not the scanner's):
  ``triage_receive_to_result_seconds`` from the last image received before the analysis was
  queued to its ``analyse`` job done; ``triage_result_to_alert_seconds`` from that result to
  the delivery of its result alert (outbox ``delivered_at``); ``triage_receive_to_alert_seconds``
  from the last image to that delivery.
"""

from __future__ import annotations

import math

from triage.store.jobs import JobStore
from triage.store.metrics import MetricsQueries

BUCKETS_S = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def exposition(store: JobStore) -> str:
    """The metrics text (``text/plain; version=0.0.4``) of the node's database."""
    figures = MetricsQueries(store)
    lines: list[str] = []
    metric(lines, "triage_instances", "Received instances recorded in the job store.",
           [({}, figures.instance_count())])
    metric(lines, "triage_series", "Series by state.",
           [({"state": state}, count) for state, count in figures.series_by_state()])
    metric(lines, "triage_jobs", "Jobs by kind and state.",
           [({"kind": kind, "state": state}, count) for kind, state, count in figures.jobs_by_kind_and_state()])
    metric(lines, "triage_outbox_messages", "Alert messages by state.",
           [({"state": state}, count) for state, count in figures.outbox_by_state()])
    times = figures.analysis_times()
    histogram(lines, "triage_receive_to_result_seconds",
               "Last image received to analysis result ready.",
               [t.result - t.received for t in times if t.received is not None])
    histogram(lines, "triage_result_to_alert_seconds", "Analysis result ready to result alert delivered.",
               [t.alerted - t.result for t in times if t.alerted is not None])
    histogram(lines, "triage_receive_to_alert_seconds", "Last image received to result alert delivered.",
               [t.alerted - t.received for t in times if t.alerted is not None and t.received is not None])
    return "\n".join(lines) + "\n"


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    text = ",".join(f'{key}="{_escape(str(value))}"' for key, value in sorted(labels.items()))
    return "{" + text + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def metric(lines: list[str], name: str, help_text: str, samples: list[tuple[dict, float]], *,
          kind: str = "gauge") -> None:
    """Append the metric ``name`` with one line per (labels, value) of ``samples`` to ``lines``
    (``kind``: its Prometheus type, ``gauge`` or ``counter``)."""
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples]


def histogram(lines: list[str], name: str, help_text: str, values: list[float]) -> None:
    """Append the histogram ``name`` of ``values`` (s) over ``BUCKETS_S`` to ``lines``."""
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for bound in BUCKETS_S:
        lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {sum(v <= bound for v in values)}')
    lines += [f'{name}_bucket{{le="+Inf"}} {len(values)}', f"{name}_sum {_number(math.fsum(values))}",
              f"{name}_count {len(values)}"]


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) and not float(value).is_integer() else str(int(value))
