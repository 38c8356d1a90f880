"""Dynamic micro-batching across concurrent callers, as text-embeddings-inference and infinity
do: one forward pass over many callers' texts costs little more than over one caller's.

One collector task takes the first waiting text, then keeps collecting until ``max_batch``
texts or ``max_wait_s`` have passed, whichever comes first. When more than a batch is waiting
(under load) it takes up to four batches' worth, sorts them by length and runs them as
batches of similar lengths, so short texts do not pay for a long neighbour's padding.

Forward passes run in the batcher's own ``workers`` threads (the event loop keeps serving),
up to ``workers`` at once, each thread always the same (torch's OpenMP team and oneDNN's
caches belong to the calling thread, so passes hopping between the default executor's
threads would each set up their own). The collector waits for a free worker before it
collects, so texts that arrive meanwhile join the next batch. On a 2-core CPU two passes on
one torch thread each beat one pass on two threads: a preempted OpenMP thread holds its
whole team at the next barrier, while two single-threaded passes only slow each other down
(``InferenceConfig``'s defaults say what was measured).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from neurons.errors import InferenceError

__all__ = ["MicroBatcher"]

logger = logging.getLogger(__name__)

R = TypeVar("R")
# How many batches' worth of a backlog one round sorts together by length.
_SORT_WINDOW = 4


@dataclass
class _Item(Generic[R]):
    text: str
    future: asyncio.Future[R]


class MicroBatcher(Generic[R]):
    """Runs ``forward(texts) -> one result per text`` over batches of queued texts.

    ``forward`` is called from ``workers`` threads, up to ``workers`` calls at once. If it raises,
    every text of that batch fails with an :class:`InferenceError` that names the cause; the
    batcher carries on with the next batch."""

    def __init__(
        self,
        forward: Callable[[list[str]], Sequence[R]],
        max_batch: int,
        max_wait_s: float,
        workers: int = 1,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._forward = forward
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.workers = workers
        self._free: asyncio.Semaphore | None = None
        self._passes: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[_Item[R]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0
        self.items = 0
        self.largest = 0

    async def start(self) -> None:
        if self._task is None:
            self._executor = ThreadPoolExecutor(
                self.workers, thread_name_prefix="inference-forward"
            )
            self._free = asyncio.Semaphore(self.workers)
            self._task = asyncio.create_task(self._run(), name="inference-batcher")

    async def stop(self) -> None:
        """End the collector; texts still queued or in a pass fail with InferenceError."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for running in list(self._passes):
            running.cancel()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)  # a pass under way finishes; its callers are gone
        self._fail_queued(InferenceError("the inference service stopped"))

    async def submit(self, texts: Sequence[str]) -> list[R]:
        """One result per text, in order, once their batches have run."""
        if self._task is None:
            raise InferenceError("the inference service is not running")
        loop = asyncio.get_running_loop()
        items = [_Item[R](text, loop.create_future()) for text in texts]
        for item in items:
            self._queue.put_nowait(item)
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        finally:
            for item in items:
                if not item.future.done():
                    item.future.cancel()  # a cancelled caller's texts are skipped
                elif not item.future.cancelled():
                    item.future.exception()  # one failure is raised; mark the rest as seen

    def stats(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "mean_batch_size": self.items / self.batches if self.batches else 0.0,
            "largest_batch": self.largest,
            "max_batch": self.max_batch,
            "max_wait_ms": self.max_wait_s * 1000,
            "workers": self.workers,
            "queued": self._queue.qsize(),
        }

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        free = self._free
        assert free is not None
        while True:
            await free.acquire()  # a worker is free: collect for it
            items: list[_Item[R]] = []
            try:
                items.append(await self._queue.get())
                deadline = loop.time() + self.max_wait_s
                while len(items) < self.max_batch:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        items.append(await asyncio.wait_for(self._queue.get(), remaining))
                    except TimeoutError:
                        break
                # A backlog beyond one batch: take more and group by length.
                while len(items) < self.max_batch * _SORT_WINDOW and not self._queue.empty():
                    items.append(self._queue.get_nowait())
                live = sorted((item for item in items if not item.future.done()), key=_length)
                batches = _even_batches(live, self.max_batch)
                for index, batch in enumerate(batches):
                    if index:
                        await free.acquire()
                    task = asyncio.create_task(self._pass_then_free(batch, free))
                    self._passes.add(task)
                    task.add_done_callback(self._passes.discard)
                if not batches:
                    free.release()
            except asyncio.CancelledError:
                _fail(items, InferenceError("the inference service stopped"))
                raise

    async def _pass_then_free(self, batch: list[_Item[R]], free: asyncio.Semaphore) -> None:
        try:
            await self._pass(batch)
        except asyncio.CancelledError:
            _fail(batch, InferenceError("the inference service stopped"))
            raise
        finally:
            free.release()

    async def _pass(self, batch: list[_Item[R]]) -> None:
        try:
            texts = [item.text for item in batch]
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(self._executor, self._forward, texts)
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} texts")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.exception("embedding forward pass over %d texts failed", len(batch))
            _fail(batch, InferenceError(f"the embedding forward pass failed: {error}"))
            return
        self.batches += 1
        self.items += len(batch)
        self.largest = max(self.largest, len(batch))
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    def _fail_queued(self, error: InferenceError) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(error)


def _fail(items: list[_Item[Any]], error: InferenceError) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)


def _even_batches(items: list[_Item[R]], max_batch: int) -> list[list[_Item[R]]]:
    """``items`` in as few batches as ``max_batch`` allows, of sizes that differ by one at
    most: 57 texts at 16 run as 15+14+14+14, not 16+16+16+9 (a pass over 9 texts costs
    nearly what one over 16 does)."""
    count = -(-len(items) // max_batch)
    size, extra = divmod(len(items), count) if count else (0, 0)
    batches, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        batches.append(items[start:end])
        start = end
    return batches


def _length(item: _Item[Any]) -> int:
    return len(item.text)
