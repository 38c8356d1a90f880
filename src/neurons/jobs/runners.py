"""Who runs a job, and whether that process still lives.

A runner is ``host:pid:nonce``. The nonce tells two runs of one process apart (a job started,
cancelled and started again by the same control plane must not be renewed by the first run's
heartbeat); the pid lets a process on the same host see at once that a runner died, without
waiting for its lease to run out.
"""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["pid_exists", "runner_identity", "runner_is_dead"]


def runner_identity() -> str:
    """A fresh ``host:pid:nonce`` for this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def runner_is_dead(runner: str | None) -> bool:
    """True when ``runner`` is empty or names a process on this host that no longer exists.

    >>> runner_is_dead(None), runner_is_dead(runner_identity())
    (True, False)
    >>> runner_is_dead("another-host:1:abc")  # elsewhere: only the lease can tell
    False
    """
    if not runner:
        return True
    host, _, rest = runner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return not pid_exists(int(pid_text))


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists here (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True
