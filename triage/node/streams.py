"""Analyses that read their series while it arrives: one child process per arriving perfusion series.

Once a new series has images at two time points of one slice position (it looks like a
perfusion series), a child ``python -m triage.node.child --stream`` is started for it and told
the path of each of its images as it is stored, by a writer thread, so the receiver never waits
for the child; the child parses and decodes each (:mod:`triage.imaging.prefetch`). When the
series' analysis job is claimed, the analysis runner takes the child (:meth:`StreamFeeds.take`)
and tells it where to write (:meth:`Stream.go`); the child then lists the series directory, so an
image it was not told of is read from disk, and one received again is read again: the result is
that of a batch analysis of the directory.

Without a stream (a series received before a restart, a re-analysis, ``MAX_STREAMS`` streams
already, a child that died) the runner starts a batch child instead. A stream is dropped (its
child stopped) when its series is found not to be perfusion, goes incomplete, or the node stops.
Streams only read: everything durable stays with the spool and the job store.

Research use only.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

from dicom_node.instance import InstanceInfo
from triage.node.context import NodeContext

log = logging.getLogger("triage.node")

MAX_STREAMS = 2            # series read ahead at once (each holds its decoded images)
STREAM_STOP_S = 5.0


class Stream:
    """One child reading a series ahead; its stdin fed by a writer thread, in order."""

    def __init__(self, series_uid: str, child: subprocess.Popen):
        self.series_uid, self.child = series_uid, child
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write, name=f"stream-{child.pid}", daemon=True)
        self._writer.start()

    def feed(self, path: Path) -> None:
        self._lines.put(f"file {path}\n")

    def go(self, order: dict) -> None:
        """Tell the child to analyse, after the files fed so far (``order``: see
        ``triage.node.child``); its stdin is closed after."""
        self._lines.put(f"go {json.dumps(order)}\n")
        self._lines.put(None)

    def close(self) -> None:
        """Stop the child (it exits at the end of its input) and its writer."""
        self._lines.put(None)
        try:
            self.child.wait(STREAM_STOP_S)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()

    def _write(self) -> None:
        try:
            while (line := self._lines.get()) is not None:
                self.child.stdin.write(line.encode())
                if self._lines.empty():
                    self.child.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the child is gone: the runner falls back to a batch analysis
        finally:
            try:
                self.child.stdin.close()
            except (BrokenPipeError, OSError):
                pass


class StreamFeeds:
    """The streams of one node: :meth:`stored` is called for every stored instance (quickly,
    from the receiver's threads); :meth:`run` is the thread that starts and feeds streams."""

    def __init__(self, context: NodeContext, config_file: Path | None,
                 wait_filed: Callable[[], bool] = lambda: True):
        self._context = context
        self._wait_filed = wait_filed  # the spool's: an image is read once it is at its path
        self._config_file = config_file
        self._inbox: queue.Queue[InstanceInfo | None] = queue.Queue()
        self._streams: dict[str, Stream] = {}
        self._first_times: dict[str, tuple[tuple, set]] = {}  # series -> (first position, its times)
        self._claimed: set[str] = set()  # series whose analysis began: no stream is started for them
        self._lock = threading.Lock()

    def stored(self, info: InstanceInfo) -> None:
        self._inbox.put(info)

    def run(self) -> None:
        while (info := self._inbox.get()) is not None:
            try:
                self._wait_filed()
                self._route(info)
            except Exception as exc:  # a stream is an optimisation: never stop receiving for it
                log.warning("series %s: reading ahead stopped (%s: %s)", info.series_uid, type(exc).__name__, exc)
                self.drop(info.series_uid)

    def take(self, series_uid: str) -> Stream | None:
        """The series' stream, handed over to its analysis (None: none, or its child died)."""
        with self._lock:
            stream = self._streams.pop(series_uid, None)
            self._first_times.pop(series_uid, None)
            self._claimed.add(series_uid)
        if stream is not None and stream.child.poll() is not None:
            log.warning("series %s: its reading-ahead child exited (status %s): analysed from the spool",
                        series_uid, stream.child.returncode)
            return None
        return stream

    def drop(self, series_uid: str) -> None:
        """Stop reading the series ahead (not perfusion, incomplete)."""
        with self._lock:
            stream = self._streams.pop(series_uid, None)
            self._first_times.pop(series_uid, None)
        if stream is not None:
            stream.close()

    def stop(self) -> None:
        """End the thread and stop every stream."""
        self._inbox.put(None)
        with self._lock:
            streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            stream.close()

    def _route(self, info: InstanceInfo) -> None:
        with self._lock:
            stream = self._streams.get(info.series_uid)
        if stream is not None:
            stream.feed(info.path)
        elif self._looks_like_perfusion(info):
            self._start(info.series_uid)

    def _looks_like_perfusion(self, info: InstanceInfo) -> bool:
        """Whether the series now has two time points at the position of its first image."""
        if info.modality != "CT" or info.position is None or info.time_s is None or info.number_of_frames > 1:
            return False
        with self._lock:
            position, times = self._first_times.setdefault(info.series_uid, (info.position, set()))
            if info.position == position:
                times.add(info.time_s)
            return len(times) >= 2 and len(self._streams) < MAX_STREAMS

    def _start(self, series_uid: str) -> None:
        store = self._context.store
        record = store.series(series_uid)
        if record is None or record.generation != 0 or record.state != "receiving":
            return  # a re-analysis reads its series from the spool
        instances = store.instances(series_uid)
        series_dir = instances[0].path.parent
        log_path = self._context.results.series_dir(series_uid) / ".stream.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "triage.node.child", "--stream", str(series_dir), "--series", series_uid,
                   "--parent-pid", str(os.getpid())]
        if self._config_file:
            command += ["--config", str(self._config_file)]
        with open(log_path, "ab") as log_file:
            child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        stream = Stream(series_uid, child)
        for instance in sorted(instances, key=lambda i: (i.time_s or 0.0, i.path)):
            stream.feed(instance.path)
        with self._lock:
            late = series_uid in self._claimed  # its analysis was claimed while the child started
            if not late:
                self._streams[series_uid] = stream
        if late:
            stream.close()
            return
        log.info("series %s looks like a perfusion series: reading it ahead (pid %d)", series_uid, child.pid)
