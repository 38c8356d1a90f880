"""The one stop signal of every kind of background work, and the reasons it is set for."""

from __future__ import annotations

import asyncio
import threading
import time

__all__ = ["StopReason", "StopSignal"]


class StopReason:
    CANCEL = "cancel"  # someone cancelled the job: it ends ``cancelled``
    SHUTDOWN = "shutdown"  # this process is stopping: the job stays ``running`` for the next
    LEASE_LOST = "lease_lost"  # another process holds the job now: leave the row alone


class StopSignal(threading.Event):
    """The one stop signal of every kind: a :class:`threading.Event` (training threads poll
    ``is_set()``) that also says why, and can be awaited from the event loop. The first
    reason set wins."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = ""

    def stop(self, reason: str) -> None:
        if not self.is_set():
            self.reason = reason
        self.set()

    async def wait_async(self, timeout: float | None = None) -> bool:
        """Wait without blocking the loop; True once set."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True
