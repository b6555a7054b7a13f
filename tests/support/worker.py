"""``triage worker`` as a child process for tests and benchmarks: its log in a file, stopped
(or killed -9) by its own process id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import peers

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``triage worker --data-dir data_dir --queue queue --database database`` named ``name``
    (its log: ``<data_dir>/../<name>.log``)."""

    def __init__(self, name: str, data_dir: Path, *, queue: str, database: str, extra: tuple[str, ...] = ()):
        self.name = name
        self.log_path = data_dir.parent / f"{name}.log"
        self.command = [sys.executable, "-m", "triage.cli", "worker", "--data-dir", str(data_dir),
                        "--queue", queue, "--database", database, *extra]
        self.process: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.wait_for_log(r"stroke-triage worker .* pid \d+", timeout=30)
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, *, count: int = 1, timeout: float = 60.0) -> list[str]:
        """Lines matching ``pattern`` once there are ``count`` of them."""
        return peers.wait_for_log(self.name, self.log, self.process, pattern, count=count, timeout=timeout)

    def kill9(self) -> None:
        """SIGKILL the worker process only (its analysis children die with it: PR_SET_PDEATHSIG)."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM, wait for the stop (SIGKILL after 30 s); the exit status."""
        if self.process is not None and self.process.poll() is None:
            peers.stop_process(self.process, timeout=30)
        return self.process.returncode
