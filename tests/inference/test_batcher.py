"""The micro-batcher with a fake forward pass (no model): batching, ordering, failures."""

from __future__ import annotations

import asyncio
import threading

import pytest

from neurons.errors import InferenceError
from neurons.inference.batcher import MicroBatcher


def test_concurrent_callers_share_batches_and_get_their_own_results() -> None:
    calls: list[list[str]] = []
    threads: set[int] = set()

    def forward(texts: list[str]) -> list[str]:
        calls.append(texts)
        threads.add(threading.get_ident())
        return [text.upper() for text in texts]

    async def main() -> None:
        batcher = MicroBatcher(forward, max_batch=8, max_wait_s=0.02)
        await batcher.start()
        answers = await asyncio.gather(
            *(batcher.submit([f"c{i}-a", f"c{i}-bb"]) for i in range(10))
        )
        await batcher.stop()
        assert answers == [[f"C{i}-A", f"C{i}-BB"] for i in range(10)]
        assert max(len(call) for call in calls) > 1
        assert all(len(call) <= 8 for call in calls)
        assert batcher.stats()["batches"] == len(calls)

    asyncio.run(main())
    assert threading.get_ident() not in threads  # forward passes ran off the event loop
    assert len(threads) == 1  # one worker: always the same thread (torch's per-thread state)


def test_a_backlog_runs_as_even_batches_sorted_by_length() -> None:
    calls: list[list[str]] = []

    def forward(texts: list[str]) -> list[str]:
        calls.append(texts)
        return texts

    async def main() -> None:
        batcher = MicroBatcher(forward, max_batch=16, max_wait_s=0.05)
        await batcher.start()
        texts = ["x" * (1 + (i * 37) % 57) for i in range(57)]  # 57 lengths, shuffled
        assert await batcher.submit(texts) == texts
        await batcher.stop()

    asyncio.run(main())
    assert [len(call) for call in calls] == [15, 14, 14, 14]  # not 16+16+16+9
    lengths = [len(text) for call in calls for text in call]
    assert lengths == sorted(lengths)


def test_a_failing_forward_pass_fails_every_waiting_caller() -> None:
    def forward(texts: list[str]) -> list[str]:
        raise RuntimeError("CUDA out of memory")

    async def main() -> None:
        batcher: MicroBatcher[str] = MicroBatcher(forward, max_batch=16, max_wait_s=0.02)
        await batcher.start()
        results = await asyncio.gather(
            *(batcher.submit(["x", "y"]) for _ in range(4)), return_exceptions=True
        )
        assert all(isinstance(result, InferenceError) for result in results)
        assert all("forward pass failed: CUDA out of memory" in str(r) for r in results)
        # the batcher carries on
        batcher._forward = lambda texts: texts
        assert await batcher.submit(["z"]) == ["z"]
        await batcher.stop()

    asyncio.run(main())


def test_stop_fails_pending_callers_cleanly() -> None:
    release = threading.Event()

    def forward(texts: list[str]) -> list[str]:
        release.wait(5)
        return texts

    async def main() -> None:
        batcher: MicroBatcher[str] = MicroBatcher(forward, max_batch=1, max_wait_s=0.0)
        await batcher.start()
        pending = [asyncio.create_task(batcher.submit([str(i)])) for i in range(3)]
        await asyncio.sleep(0.05)
        await batcher.stop()
        release.set()
        for task in pending:
            with pytest.raises(InferenceError, match="stopped"):
                await task
        with pytest.raises(InferenceError, match="not running"):
            await batcher.submit(["late"])

    asyncio.run(main())


def test_two_workers_run_two_passes_at_once_each_on_its_own_thread() -> None:
    """With ``workers=2`` a second batch starts while the first is still in its pass, in
    the other worker thread; never a third at once."""
    both_in = threading.Barrier(2, timeout=5)
    inside = passes = most = 0
    lock = threading.Lock()
    threads: set[int] = set()

    def forward(texts: list[str]) -> list[str]:
        nonlocal inside, passes, most
        with lock:
            inside += 1
            passes += 1
            first_two = passes <= 2
            most = max(most, inside)
            threads.add(threading.get_ident())
        if first_two:
            both_in.wait()  # the first two passes meet here: they overlap
        with lock:
            inside -= 1
        return texts

    async def main() -> None:
        batcher = MicroBatcher(forward, max_batch=2, max_wait_s=0.0, workers=2)
        await batcher.start()
        texts = [[f"{i}a", f"{i}b"] for i in range(8)]
        assert await asyncio.gather(*(batcher.submit(pair) for pair in texts)) == texts
        assert batcher.stats()["workers"] == 2
        await batcher.stop()

    asyncio.run(main())
    assert most == 2 and len(threads) == 2
    with pytest.raises(ValueError, match="workers"):
        MicroBatcher(lambda texts: texts, max_batch=1, max_wait_s=0.0, workers=0)
