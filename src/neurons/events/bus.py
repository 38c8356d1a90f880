"""The event bus: what happened in the network (nodes, models, jobs, snapshots), in one order.

The contract
------------

``publish(kind, subject="", **payload)``
    Synchronous, thread-safe, callable from worker threads and from the event loop. It stores
    the event in the shared log (:class:`~neurons.store.events.EventRepository`), then wakes
    this process's subscribers. It never raises into the caller: a bad kind, a payload that is
    not plain JSON or a failed store write is logged and the event dropped, because the bus
    must never break the request or job that published. Called on an event loop's thread it
    does not wait for the database either (a write may wait seconds for SQLite's lock while
    another process writes): it hands the event to the bus's writer thread, which stores
    events in the order they were handed over. Called from any other thread, the event is
    stored when ``publish`` returns.

    Payloads hold **public fields only** (what the API would show anyway: names, states,
    counts, error messages); a publisher never passes a token, key, password or header. As a
    last guard, values under keys that look secret (``token``, ``secret``, ``password``,
    ``api_key``, ``authorization`` ...) are stored as ``"[redacted]"`` and a warning logged.

``async for event in subscribe(after=0, kinds=None)``
    Yields stored events in id order: first the backlog after ``after``, then new ones as
    they come, for as long as the caller iterates (or until :meth:`EventBus.close`). It is
    woken at once by this process's publishes and polls the log every ``poll_s`` (0.5 s) for
    events other processes appended (a ``neurons learn run`` CLI writes the same database).
    It never skips or repeats an id: every event it yields is read from the log, after the
    last id it yielded, so a wake-up only says "look now" and carries nothing itself.

Ordering across processes is the log's id order. Within a process, events published from one
thread are stored in the order they were published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Protocol

from neurons.errors import InvalidRequestError, NeuronsError
from neurons.events.kinds import valid_kind
from neurons.store import Store
from neurons.store.events import MAX_LIMIT, StoredEvent, encode_payload

__all__ = ["REDACTED", "EventBus", "Publish"]

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"token|secret|password|passwd|authori[sz]ation|api_?key|master_?key|private_?key|cookie",
    re.IGNORECASE,
)


class Publish(Protocol):
    """What a publisher is given: :meth:`EventBus.publish`, or a stand-in in its tests."""

    def __call__(self, kind: str, subject: str = "", **payload: Any) -> None: ...


@dataclass(frozen=True, eq=False)
class _Waiter:
    """One subscription's doorbell: set from any thread through its loop."""

    loop: asyncio.AbstractEventLoop
    event: asyncio.Event


@dataclass(frozen=True)
class _Pending:
    kind: str
    subject: str
    payload: dict[str, Any]


class EventBus:
    """Publish events into the shared log and follow it (see the module's contract)."""

    def __init__(
        self,
        store: Store,
        *,
        poll_s: float = 0.5,
        batch: int = 500,
        max_pending: int = 10_000,
        writer_idle_s: float = 5.0,
    ) -> None:
        if not 1 <= batch <= MAX_LIMIT:
            raise ValueError(f"batch must be 1-{MAX_LIMIT}")
        self.store = store
        self.poll_s = poll_s
        self.batch = batch
        self.max_pending = max_pending
        self.writer_idle_s = writer_idle_s
        # Events handed over on an event loop, and the thread storing them. The thread ends
        # after writer_idle_s without work (a control plane that publishes rarely, and every
        # bus a test creates, keeps no thread) and is started again by the next hand-over.
        self._cond = threading.Condition()
        self._pending: deque[_Pending] = deque()
        self._writer: threading.Thread | None = None
        self._writing = False
        self._waiters_lock = threading.Lock()
        self._waiters: set[_Waiter] = set()
        self._closed = False

    # -- publishing -------------------------------------------------------------------------

    def publish(self, kind: str, subject: str = "", **payload: Any) -> None:
        """Store an event and wake the subscribers; never raises (see the contract)."""
        try:
            item = _prepare(kind, subject, payload)
            if item is None:
                return
            if _on_event_loop() and not self._closed:
                self._hand_over(item)
            else:
                self._store_and_wake(item)
        except Exception:  # the last guard: nothing a publisher passes may break it
            log.exception("event %r dropped", kind)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event handed over has been stored (or dropped); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._writing, timeout)

    def latest_id(self) -> int:
        """The newest event's id in the log (0 when empty): ``subscribe(after=...)`` it to
        follow only what happens from now on."""
        return self.store.events.latest_id()

    def _hand_over(self, item: _Pending) -> None:
        with self._cond:
            if len(self._pending) >= self.max_pending:
                log.warning("event %s (%s) dropped: %d waiting", item.kind, item.subject,
                            len(self._pending))  # fmt: skip
                return
            self._pending.append(item)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_handed_over, name="neurons-events", daemon=True
                )
                self._writer.start()
            else:
                self._cond.notify_all()

    def _write_handed_over(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.writer_idle_s
                while not self._pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._closed:
                        self._writer = None
                        self._cond.notify_all()
                        return
                    self._cond.wait(remaining)
                item = self._pending.popleft()
                self._writing = True
            try:
                self._store_and_wake(item)
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()

    def _store_and_wake(self, item: _Pending) -> None:
        try:
            self.store.events.append(item.kind, item.subject, item.payload)
        except Exception as exc:  # a locked or broken database: drop it, keep the caller going
            log.warning("event %s (%s) dropped: %s", item.kind, item.subject, exc)
            return
        self._wake()

    def _wake(self) -> None:
        with self._waiters_lock:
            waiters = list(self._waiters)
        for waiter in waiters:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody to wake
                waiter.loop.call_soon_threadsafe(waiter.event.set)

    # -- subscribing ------------------------------------------------------------------------

    @property
    def subscribers(self) -> int:
        """Subscriptions open now (an SSE client that went away is no longer counted)."""
        with self._waiters_lock:
            return len(self._waiters)

    async def subscribe(
        self, after: int = 0, kinds: AbstractSet[str] | None = None
    ) -> AsyncGenerator[StoredEvent, None]:
        """The events after ``after`` (only ``kinds``' when given), in id order, backlog
        first, then live, until the caller stops iterating or the bus is closed."""
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidRequestError("after must be an event id (0 or more)")
        wanted = None if kinds is None else frozenset(kinds)
        waiter = _Waiter(asyncio.get_running_loop(), asyncio.Event())
        with self._waiters_lock:
            self._waiters.add(waiter)
        last = after
        try:
            while not self._closed:
                # Cleared before reading: a publish stored after the read below rings again,
                # and one stored before it is in what the read returns.
                waiter.event.clear()
                batch = await self._read(last, wanted)
                for event in batch:
                    last = event.id
                    yield event
                if len(batch) < self.batch and not self._closed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(waiter.event.wait(), self.poll_s)
        finally:
            with self._waiters_lock:
                self._waiters.discard(waiter)

    async def _read(self, after: int, kinds: frozenset[str] | None) -> list[StoredEvent]:
        try:
            return await asyncio.to_thread(self.store.events.list, after, kinds, self.batch)
        except NeuronsError as exc:  # locked for a moment, or gone: try again at the next poll
            log.warning("reading events after %d failed: %s", after, exc)
            return []

    def close(self, timeout: float | None = 5.0) -> None:
        """End every subscription and store what was handed over. Publishing still works
        afterwards (each event is then stored before ``publish`` returns): a snapshot taken
        at shutdown is still announced."""
        self._closed = True
        self._wake()
        with self._cond:
            self._cond.notify_all()
        self.flush(timeout)


def _prepare(kind: str, subject: str, payload: Mapping[str, Any]) -> _Pending | None:
    """Check an event before it is handed over: a bad one is dropped here, in the caller's
    thread, where the log line points at the publisher."""
    if not valid_kind(kind):
        log.warning("event dropped: %r is not a kind (area.what, lowercase)", kind)
        return None
    if not isinstance(subject, str):
        log.warning("event %s dropped: its subject is %s, not text", kind, type(subject).__name__)
        return None
    cleaned = _redacted(payload, kind)
    try:
        encode_payload(cleaned)
    except InvalidRequestError as exc:
        log.warning("event %s (%s) dropped: %s", kind, subject, exc)
        return None
    return _Pending(kind, subject, cleaned)


def _redacted(value: Mapping[str, Any], kind: str) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(key, str) and _SECRET_KEY.search(key) and item not in (None, False, True):
            log.warning("event %s: field %r looks secret; stored as %s", kind, key, REDACTED)
            cleaned[key] = REDACTED
        elif isinstance(item, Mapping):
            cleaned[key] = _redacted(item, kind)
        else:
            cleaned[key] = item
    return cleaned


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
