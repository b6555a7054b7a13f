"""A throw-away PostgreSQL cluster (Debian package ``postgresql``) for the job store's tests.

:class:`PostgresServer` runs ``initdb`` (trust authentication, UTF8, no sync) into a
temporary directory of its own and starts ``postgres`` on a free loopback port with fsync off,
its Unix socket in that directory. Run as root, both run as the ``postgres`` OS user (the
server refuses root), which then owns the directory. :meth:`~PostgresServer.create_database`
makes an empty database and returns its URL; :meth:`~PostgresServer.stop` ends the postmaster by
its process id (SIGINT: fast shutdown, then SIGKILL) and removes the directory.

Fixtures: ``postgres_server`` (one cluster per test session; the test fails, telling to run
``scripts/setup.sh``, when the PostgreSQL binaries are missing), ``postgres_url`` (a fresh
database per test) and ``store_target``, which runs a test once on a SQLite file and once on a
PostgreSQL database. A test module imports the fixtures it uses.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
OS_USER = "postgres"
_names = itertools.count(1)


def binaries() -> Path | None:
    """The folder of the newest installed PostgreSQL's ``initdb`` and ``postgres``, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """A PostgreSQL cluster in a new temporary directory, started at once on 127.0.0.1:``port``
    (superuser ``postgres``, no password)."""

    def __init__(self, bin_dir: Path):
        self.root = Path(tempfile.mkdtemp(prefix="triage-pg-"))
        self.port = free_port()
        self._as_user = {}
        if os.getuid() == 0:
            user = pwd.getpwnam(OS_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        data = self.root / "data"
        subprocess.run([bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                        "--no-sync", "--locale=C.UTF-8"], check=True, capture_output=True, **self._as_user)
        with open(self.root / "server.log", "wb") as log:
            self.process = subprocess.Popen(
                [bin_dir / "postgres", "-D", data, "-k", self.root, "-h", "127.0.0.1", "-p", str(self.port), "-F"],
                stdout=log, stderr=subprocess.STDOUT, **self._as_user)
        self._wait_until_ready()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create the empty database ``name`` (letters, digits, ``_``); its URL."""
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """End the postmaster (its sessions too) by its process id and remove the directory."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.root / "server.log").read_text(errors="replace")
                    self.stop()
                    raise RuntimeError(f"PostgreSQL did not start on port {self.port}: {log[-2000:]}") from None
                time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = binaries()
    if bin_dir is None:
        pytest.fail("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/setup.sh",
                    pytrace=False)
    server = PostgresServer(bin_dir)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a new, empty database of the session's cluster."""
    return postgres_server.create_database(f"test_{next(_names)}")


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request, tmp_path) -> Path | str:
    """What a :class:`~triage.store.jobs.JobStore` opens: a SQLite file, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return tmp_path / "triage.db"
    return request.getfixturevalue("postgres_url")
