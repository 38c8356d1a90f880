"""EventBus on a real SQLite file: a subscriber gets the backlog, then live events, in id order
with none skipped or repeated (publishers on worker threads and on the loop at once); an
event another process appends reaches it by polling; a broken store or a bad event never
raises from ``publish``; secret-looking fields are redacted; ``close`` ends subscriptions."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading

import pytest
from sqlalchemy import text

from neurons.events import REDACTED, EventBus
from neurons.events.kinds import KINDS, NODE_UP
from neurons.store import Store, StoredEvent


async def take(bus: EventBus, count: int, after: int = 0, **kw: object) -> list[StoredEvent]:
    """The first ``count`` events a subscription yields (fails after 10 s)."""
    got: list[StoredEvent] = []

    async def run() -> None:
        async for event in bus.subscribe(after, **kw):  # type: ignore[arg-type]
            got.append(event)
            if len(got) == count:
                return

    await asyncio.wait_for(run(), 10)
    return got


def test_backlog_then_live_events_in_order_without_gaps_or_repeats(store: Store) -> None:
    bus = EventBus(store, poll_s=30)  # a long poll: live events must come by the wake-up
    for i in range(3):
        bus.publish("test.backlog", f"b{i}", n=i)
    before = store.events.latest_id()

    async def scenario() -> list[StoredEvent]:
        consumer = asyncio.create_task(take(bus, 3 + 4 * 25 + 10))
        await asyncio.sleep(0.1)  # subscribed and waiting on the backlog's end

        def worker(w: int) -> None:
            for i in range(25):
                bus.publish("test.thread", f"w{w}", n=i)

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for i in range(10):  # and from the loop, handed to the writer thread
            bus.publish("test.loop", "loop", n=i)
            await asyncio.sleep(0)
        for thread in threads:
            await asyncio.to_thread(thread.join)
        return await consumer

    events = asyncio.run(scenario())
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), "out of order or repeated"
    assert ids == list(range(ids[0], ids[0] + len(ids))), "an id was skipped"
    assert [e.subject for e in events[:3]] == ["b0", "b1", "b2"] and ids[2] == before
    for w in range(4):  # each thread's events in the order it published them
        assert [e.payload["n"] for e in events if e.subject == f"w{w}"] == list(range(25))
    assert [e.payload["n"] for e in events if e.kind == "test.loop"] == list(range(10))
    assert bus.subscribers == 0  # the subscription ended with the iteration


def test_after_and_kinds_narrow_a_subscription(store: Store) -> None:
    bus = EventBus(store)
    bus.publish("node.up", "a")
    mark = bus.latest_id()
    bus.publish("node.down", "a")
    bus.publish("node.up", "b")

    events = asyncio.run(take(bus, 1, after=mark, kinds={"node.up"}))
    assert [(e.kind, e.subject) for e in events] == [("node.up", "b")]


def test_an_event_appended_by_another_process_reaches_a_subscriber(
    store: Store, db_url: str
) -> None:
    bus = EventBus(store, poll_s=0.2)
    bus.publish("test.local", "here")
    script = textwrap.dedent(
        f"""
        from neurons.events import EventBus
        from neurons.store import open_store
        store = open_store({db_url!r})
        store.events.append("learning.round", "run-1", {{"round": 1}})
        EventBus(store).publish("job.transition", "learning/1", previous="running",
                                status="completed")
        store.close()
        """
    )

    async def scenario() -> list[StoredEvent]:
        consumer = asyncio.create_task(take(bus, 3))
        await asyncio.sleep(0.3)  # the local event delivered, the subscriber idle
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", script], capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr.decode()
        return await consumer

    events = asyncio.run(scenario())
    assert [e.kind for e in events] == ["test.local", "learning.round", "job.transition"]
    assert events[2].payload == {"previous": "running", "status": "completed"}


def test_publish_never_raises_and_drops_what_it_cannot_store(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    bus = EventBus(store)
    caplog.set_level(logging.WARNING, "neurons.events.bus")
    bus.publish("Not A Kind", "x")
    bus.publish("test.bad", 42)  # type: ignore[arg-type]
    bus.publish("test.bad", "x", when=object())
    bus.publish("test.bad", "x", ratio=float("inf"))
    assert store.events.latest_id() == 0
    assert len(caplog.records) == 4

    with store.engine.begin() as conn:  # the log itself is gone: every write fails
        conn.execute(text("DROP TABLE events"))
    caplog.clear()
    bus.publish(NODE_UP, "alpha", to="online")  # from this thread: written at once

    async def on_the_loop() -> None:
        bus.publish(NODE_UP, "beta", to="online")  # handed over, dropped by the writer

    asyncio.run(on_the_loop())
    assert bus.flush(10)
    dropped = [r.getMessage() for r in caplog.records]
    assert len(dropped) == 2 and all("dropped" in m for m in dropped), dropped


def test_secret_looking_fields_are_redacted(store: Store) -> None:
    bus = EventBus(store)
    bus.publish(
        "node.up", "alpha", token="tok-SECRET", has_token=True, detail={"api_key": "nk-1"}, n=1
    )
    (event,) = store.events.list()
    assert event.payload == {
        "token": REDACTED,
        "has_token": True,
        "detail": {"api_key": REDACTED},
        "n": 1,
    }


def test_close_ends_subscriptions_and_later_publishes_are_still_stored(store: Store) -> None:
    bus = EventBus(store, poll_s=30)

    async def scenario() -> list[StoredEvent]:
        got: list[StoredEvent] = []

        async def follow() -> None:
            async for event in bus.subscribe():
                got.append(event)

        consumer = asyncio.create_task(follow())
        bus.publish("test.before", "x")  # handed over; stored by the writer
        await asyncio.sleep(0.2)
        await asyncio.to_thread(bus.close)
        await asyncio.wait_for(consumer, 5)
        bus.publish("test.after", "x")  # closed: stored before publish returns
        return got

    got = asyncio.run(scenario())
    assert [e.kind for e in got] == ["test.before"]
    assert [e.kind for e in store.events.list()] == ["test.before", "test.after"]
    assert bus.subscribers == 0


def test_every_kind_is_named_and_valid() -> None:
    import doctest

    import neurons.events.kinds as kinds

    assert doctest.testmod(kinds).failed == 0
    assert set(KINDS) == {
        "node.up", "node.down", "node.breaker", "job.transition",
        "model.created", "model.deleted", "model.synced", "snapshot.saved",
    }  # fmt: skip
    assert all(kinds.valid_kind(k) and KINDS[k] for k in KINDS)
