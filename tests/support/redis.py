"""A throw-away Redis server for tests: Debian's ``redis-server`` on a free loopback port,
nothing saved to disk, stopped by its process id.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support import peers

REDIS_SERVER = "/usr/bin/redis-server"


class RedisServer:
    """``with RedisServer(directory) as redis:`` runs a server; ``redis.url`` is its URL."""

    def __init__(self, directory: Path):
        if not Path(REDIS_SERVER).is_file() and shutil.which("redis-server") is None:
            raise AssertionError("redis-server is not installed: run scripts/setup.sh (Debian package redis-server)")
        self.directory = Path(directory)
        self.port = peers.free_port()
        self.log_path = self.directory / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [shutil.which("redis-server") or REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", str(self.directory), "--logfile", str(self.log_path)]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        peers.wait_for_port(self.port, timeout=15, process=self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            peers.stop_process(self.process, timeout=10)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
