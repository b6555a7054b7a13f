"""Worker processes die with their parent, even when the parent is killed with SIGKILL."""

import os
import subprocess
import sys
import textwrap
import time

PARENT = textwrap.dedent("""
    import multiprocessing, os, signal, sys, time
    from triage.base.lifetime import die_with_parent

    def wait_forever():
        time.sleep(600)

    if __name__ == "__main__":
        worker = multiprocessing.get_context("fork").Process(target=lambda: (die_with_parent(os.getppid()), wait_forever()))
        worker.start()
        time.sleep(0.5)  # the worker has made its request
        print(worker.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_worker_dies_when_its_parent_is_killed():
    parent = subprocess.run([sys.executable, "-c", PARENT], capture_output=True, text=True, timeout=30,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert parent.returncode == -9, parent.stderr
    worker = int(parent.stdout.split()[0])
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)
