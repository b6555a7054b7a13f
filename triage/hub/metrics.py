"""A hub worker's metrics in the Prometheus text format, on ``http_address``:``metrics_port``.

``GET /metrics`` answers, computed at each scrape:

- ``triage_worker_tasks_total{kind,outcome}`` (counter): tasks this worker ran, by job kind and
  the job's state after it (``done``, ``failed``, ``pending`` = retried or put back,
  ``superseded``) or ``skipped`` (the job was not claimable: done, or run by another worker);
- ``triage_worker_task_seconds_total{kind}`` (counter) and ``triage_worker_tasks_running{kind}``;
- ``triage_queue_depth``: messages waiting in the hub's queue (``-1`` when the broker cannot be
  reached);
- the job store's figures (:func:`triage.web.metrics.exposition`), the same for every worker.

The counters are this process's own: they start at zero with it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from triage.store.jobs import JobStore
from triage.web.metrics import exposition, metric

KINDS = ("analyse", "send")


class WorkerMetrics:
    """The counters of one worker's tasks (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tasks: Counter = Counter()      # (kind, outcome): tasks
        self._seconds: Counter = Counter()    # kind: s
        self._running: Counter = Counter()    # kind: tasks now

    def started(self, kind: str) -> None:
        with self._lock:
            self._running[kind] += 1

    def finished(self, kind: str, outcome: str, seconds: float) -> None:
        with self._lock:
            self._running[kind] -= 1
            self._tasks[kind, outcome] += 1
            self._seconds[kind] += seconds

    def skipped(self, kind: str) -> None:
        with self._lock:
            self._tasks[kind, "skipped"] += 1

    def text(self, store: JobStore, queue_depth: Callable[[], int]) -> str:
        """The exposition text (``text/plain; version=0.0.4``)."""
        with self._lock:
            tasks, seconds, running = dict(self._tasks), dict(self._seconds), dict(self._running)
        lines: list[str] = []
        metric(lines, "triage_worker_tasks_total", "Tasks this worker ran, by job kind and outcome.",
               [({"kind": kind, "outcome": outcome}, n) for (kind, outcome), n in sorted(tasks.items())],
               kind="counter")
        metric(lines, "triage_worker_task_seconds_total", "Seconds this worker spent in tasks, by job kind.",
               [({"kind": kind}, float(seconds.get(kind, 0.0))) for kind in KINDS], kind="counter")
        metric(lines, "triage_worker_tasks_running", "Tasks running in this worker now, by job kind.",
               [({"kind": kind}, running.get(kind, 0)) for kind in KINDS])
        try:
            depth = queue_depth()
        except Exception:  # the broker is down: say so in the figure, not by failing the scrape
            depth = -1
        metric(lines, "triage_queue_depth", "Messages waiting in the hub's task queue (-1: broker unreachable).",
               [({}, depth)])
        return "\n".join(lines) + "\n" + exposition(store)


def serve_metrics(address: str, port: int, text: Callable[[], str]) -> ThreadingHTTPServer:
    """Serve ``text()`` at ``/metrics`` on ``address``:``port`` in a daemon thread; the server
    (``shutdown()`` stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server name)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # scrapes are not logged
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
