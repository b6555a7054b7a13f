"""The node's metrics in the Prometheus text exposition format (version 0.0.4), from the database.

Everything is computed at scrape time from the job store's tables, so the figures survive a
restart (and shrink when retention removes old series):

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

BUCKETS_S = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

# Per analysis generation started by the images: when its last image arrived, when its
# result was ready (its result alert written, else its analysis job done: the alert goes out
# before the DICOM export ends the job), when its first result alert was delivered (NULL if not yet).
_LATENCY_SQL = """
SELECT (SELECT max(i.received_at) FROM instances i WHERE i.series_uid = j.series_uid
        AND i.received_at <= j.created_at) AS received,
       min(j.updated_at, coalesce((SELECT min(o.created_at) FROM outbox o WHERE o.series_uid = j.series_uid
           AND o.generation = j.generation AND o.kind = 'result'), j.updated_at)) AS result,
       (SELECT min(o.delivered_at) FROM outbox o WHERE o.series_uid = j.series_uid
        AND o.generation = j.generation AND o.kind = 'result' AND o.state = 'delivered') AS alerted
FROM jobs j WHERE j.kind = 'analyse' AND j.state = 'done' AND j.options IS NULL
"""


def exposition(db: JobStore) -> str:
    """The metrics text (``text/plain; version=0.0.4``) of the node's database."""
    lines: list[str] = []
    count = db.query("SELECT count(*) FROM instances")[0][0]
    _gauge(lines, "triage_instances", "Received instances recorded in the job store.", [({}, count)])
    _gauge(lines, "triage_series", "Series by state.",
           [({"state": r[0]}, r[1]) for r in db.query("SELECT state, count(*) FROM series GROUP BY state")])
    _gauge(lines, "triage_jobs", "Jobs by kind and state.",
           [({"kind": r[0], "state": r[1]}, r[2])
            for r in db.query("SELECT kind, state, count(*) FROM jobs GROUP BY kind, state")])
    _gauge(lines, "triage_outbox_messages", "Alert messages by state.",
           [({"state": r[0]}, r[1]) for r in db.query("SELECT state, count(*) FROM outbox GROUP BY state")])
    rows = db.query(_LATENCY_SQL)
    _histogram(lines, "triage_receive_to_result_seconds",
               "Last image received to analysis result ready.",
               [r["result"] - r["received"] for r in rows if r["received"] is not None])
    _histogram(lines, "triage_result_to_alert_seconds", "Analysis result ready to result alert delivered.",
               [r["alerted"] - r["result"] for r in rows if r["alerted"] is not None])
    _histogram(lines, "triage_receive_to_alert_seconds", "Last image received to result alert delivered.",
               [r["alerted"] - r["received"] for r in rows
                if r["alerted"] is not None and r["received"] is not None])
    return "\n".join(lines) + "\n"


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    text = ",".join(f'{key}="{_escape(str(value))}"' for key, value in sorted(labels.items()))
    return "{" + text + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _gauge(lines: list[str], name: str, help_text: str, samples: list[tuple[dict, float]]) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples]


def _histogram(lines: list[str], name: str, help_text: str, values: list[float]) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for bound in BUCKETS_S:
        lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {sum(v <= bound for v in values)}')
    lines += [f'{name}_bucket{{le="+Inf"}} {len(values)}', f"{name}_sum {_number(math.fsum(values))}",
              f"{name}_count {len(values)}"]


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) and not float(value).is_integer() else str(int(value))
