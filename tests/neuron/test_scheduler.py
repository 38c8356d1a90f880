from __future__ import annotations

import asyncio

import pytest

from neurons.errors import ServerBusyError
from neurons.neuron.scheduler import BUSY_MESSAGE, FairScheduler


def test_fifo_order_and_queue_bound() -> None:
    async def scenario() -> list[int]:
        scheduler = FairScheduler(slots=1, max_queue=3)
        order: list[int] = []
        gate = asyncio.Event()

        async def job(i: int) -> None:
            async with scheduler.slot():
                if i == 0:
                    await gate.wait()
                order.append(i)

        tasks = [asyncio.create_task(job(0))]
        await asyncio.sleep(0)
        for i in range(1, 4):
            tasks.append(asyncio.create_task(job(i)))
            await asyncio.sleep(0)
        assert scheduler.waiting == 3
        with pytest.raises(ServerBusyError) as caught:
            async with scheduler.slot():
                pass
        assert caught.value.message == BUSY_MESSAGE
        gate.set()
        await asyncio.gather(*tasks)
        assert scheduler.running == 0 and scheduler.waiting == 0
        return order

    assert asyncio.run(scenario()) == [0, 1, 2, 3]


def test_cancelled_waiter_gives_up_its_place() -> None:
    async def scenario() -> None:
        scheduler = FairScheduler(slots=1, max_queue=5)
        gate = asyncio.Event()

        async def holder() -> None:
            async with scheduler.slot():
                await gate.wait()

        async def waiter() -> None:
            async with scheduler.slot():
                pass

        hold = asyncio.create_task(holder())
        await asyncio.sleep(0)
        waiting = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert scheduler.waiting == 0
        gate.set()
        await hold
        assert scheduler.running == 0

    asyncio.run(scenario())
