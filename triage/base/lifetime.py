"""Processes that must not outlive their parent (Linux ``PR_SET_PDEATHSIG``).

The node runs each analysis in a child process, and the analysis reads headers in forked worker
processes. When the node is killed (even with SIGKILL) the kernel kills the child, and the
child's death kills its workers, so nothing is left behind writing results or holding memory.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies.

    Returns False when the parent ``parent_pid`` is already gone (the request came too late:
    the caller should exit) and True otherwise, also where the request is not supported (not
    Linux), in which case nothing changes.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except AttributeError:
        return True
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    return os.getppid() == parent_pid
