"""``triage serve`` as a child process for tests and benchmarks: a free loopback DICOM port, its
log in a file next to the data directory, stopped by its own process id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import peers
from triage.base.names import safe_name
from triage.store.jobs import JobStore

ROOT = Path(__file__).resolve().parents[2]


TEST_JOURNAL_MB = 32  # the default 1 GiB journal would be written out for every test's node


class NodeProcess:
    """``triage serve --data-dir data_dir`` on 127.0.0.1; ``quiet_seconds`` None keeps the
    node's default series-completion quiet period."""

    def __init__(self, data_dir: Path, *, pacs: str = "", allow: tuple[str, ...] = ("CT1",),
                 quiet_seconds: float | None = 1.5, extra: tuple[str, ...] = ()):
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.port = peers.free_port()
        self.pacs, self.allow, self.quiet_seconds, self.extra = pacs, allow, quiet_seconds, extra
        self.process: subprocess.Popen | None = None

    def start(self) -> "NodeProcess":
        """Start the node (again: the same data directory and port) and wait for its port."""
        command = [sys.executable, "-m", "triage.cli", "serve", "--data-dir", str(self.data_dir),
                   "--listen-address", "127.0.0.1", "--dicom-port", str(self.port),
                   "--spool-journal-mb", str(TEST_JOURNAL_MB), *self.extra]
        if self.quiet_seconds is not None:
            command += ["--quiet-seconds", str(self.quiet_seconds)]
        for name in self.allow:
            command += ["--allow-aet", name]
        if self.pacs:
            command += ["--pacs", self.pacs]
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        peers.wait_for_port(self.port, timeout=30, process=self.process)
        return self

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, pattern: str, *, count: int = 1, timeout: float = 60.0) -> list[str]:
        """Lines matching ``pattern`` once there are ``count`` of them."""
        return peers.wait_for_log("node", self.log, self.process, pattern, count=count, timeout=timeout)

    def result_dir(self, series_uid: str, generation: int) -> Path:
        """``results/<series>/<generation>/`` of the data directory (the analyze output contract)."""
        return self.data_dir / "results" / safe_name(series_uid) / str(generation)

    def kill9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM, wait for the graceful stop (SIGKILL after 30 s); the exit status."""
        peers.stop_process(self.process, timeout=30)
        return self.process.returncode

    def store(self) -> JobStore:
        return JobStore(self.data_dir / "triage.db")
