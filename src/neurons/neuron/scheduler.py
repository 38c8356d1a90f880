"""A fair request queue: first come, first served, with a bound on waiting requests.

Ollama answers 503 ``server busy, please try again.  maximum pending requests exceeded`` when
its pending queue is full; we keep the same contract. ``asyncio.Semaphore`` does not promise
FIFO wake-ups, so waiters are kept in an explicit deque of futures.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from neurons.errors import ServerBusyError

__all__ = ["BUSY_MESSAGE", "FairScheduler"]

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"


class FairScheduler:
    def __init__(self, slots: int, max_queue: int) -> None:
        self.slots = slots
        self.max_queue = max_queue
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        if self.running < self.slots and not self._waiters:
            self.running += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise ServerBusyError(BUSY_MESSAGE)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future in self._waiters:
                self._waiters.remove(future)
            elif future.done() and not future.cancelled():
                # The slot was handed to us just as we were cancelled: pass it on.
                self._release()
            raise

    def _release(self) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)  # the slot moves to this waiter; running unchanged
                return
        self.running -= 1
