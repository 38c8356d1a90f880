"""``GET /api/ai/events``: the event bus's log, as JSON pages or as a live Server-Sent Events
stream (read scope, like every GET).

- ``Accept: text/event-stream``: every event after the cursor, then each new one as it
  happens, as ``id: <id>`` / ``event: <kind>`` / ``data: <json>`` and a blank line; a
  ``: keep-alive`` comment every 15 s keeps proxies from closing an idle stream. The cursor is
  the ``Last-Event-ID`` header (a browser's EventSource sends it when it reconnects) or else
  ``after=``. The stream ends when the client goes away.
- Otherwise: ``{"success": true, "events": [...], "last_id": N}``, at most ``limit`` events;
  ``last_id`` is the cursor to pass as ``after=`` next time (it moves past events the
  ``kind=`` filter left out, so a filtered reader does not read them again).

``kind=`` (repeatable or comma-separated) keeps only those kinds in both forms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from neurons.api.responses import errors
from neurons.errors import InvalidRequestError
from neurons.events import KINDS, EventBus
from neurons.metrics.service import MetricsService
from neurons.store.events import MAX_LIMIT, StoredEvent
from neurons.store.ids import row_id

__all__ = ["KEEP_ALIVE_S", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/ai/events", tags=["events"])

KEEP_ALIVE_S = 15.0
EVENT_STREAM = "text/event-stream"
# Sent first: how long an EventSource waits before it reconnects (with Last-Event-ID).
_RETRY = b"retry: 2000\n\n"
_KEEP_ALIVE = b": keep-alive\n\n"

_KIND_LIST = ", ".join(sorted(KINDS))
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "JSON: a page of events. With Accept: text/event-stream: a stream of Server-Sent "
            "Events (id, event = the kind, data = the event as JSON)."
        ),
        "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
    }
}


def _bus(request: Request) -> EventBus:
    bus: EventBus = request.app.state.events
    return bus


def _kinds(values: list[str] | None) -> set[str] | None:
    if not values:
        return None
    kinds = {k.strip() for value in values for k in value.split(",") if k.strip()}
    return kinds or None


def _cursor(after: int, last_event_id: str | None) -> int:
    """Where to read on from: a reconnecting client's Last-Event-ID wins over ``after=``
    (which still holds the URL's first value)."""
    if last_event_id is None or not last_event_id.strip():
        return after
    cursor = row_id(last_event_id)
    if cursor is None:
        raise InvalidRequestError(f"Last-Event-ID must be an event id, not {last_event_id!r}")
    return cursor


@router.get("", responses={**_STREAM_DOC, **errors(400)})
async def events(
    request: Request,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="Read events with a larger id.")
    ] = 0,
    kind: Annotated[
        list[str] | None,
        Query(description=f"Only these kinds (repeat it, or comma-separate): {_KIND_LIST}."),
    ] = None,
    limit: Annotated[int, Query(description=f"At most this many (1-{MAX_LIMIT}).")] = 500,
    last_event_id: Annotated[
        str | None, Header(description="Resume after this event id (overrides after=).")
    ] = None,
) -> Response:
    """The event log: a JSON page, or (Accept: text/event-stream) a live SSE stream."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequestError(f"limit must be 1-{MAX_LIMIT}")
    cursor = _cursor(after, last_event_id)
    kinds = _kinds(kind)
    bus = _bus(request)
    if EVENT_STREAM in request.headers.get("accept", ""):
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(_stream(bus, cursor, kinds), headers=headers,
                                 media_type=EVENT_STREAM)  # fmt: skip
    page, last_id = await asyncio.to_thread(_page, bus, cursor, kinds, limit)
    return JSONResponse(
        {"success": True, "events": [e.to_dict() for e in page], "last_id": last_id}
    )


def _page(
    bus: EventBus, after: int, kinds: set[str] | None, limit: int
) -> tuple[list[StoredEvent], int]:
    # The newest id is read first: every event up to it is committed (ids commit in order),
    # so a short page has seen all of them and the cursor may move up to it.
    newest = bus.store.events.latest_id()
    page = bus.store.events.list(after, kinds, limit)
    if len(page) == limit:
        return page, page[-1].id
    return page, max(after, newest, page[-1].id if page else 0)


def sse(event: StoredEvent) -> bytes:
    """One event as a Server-Sent Events message (JSON holds no raw line break)."""
    data = json.dumps(event.to_dict(), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


async def _stream(bus: EventBus, after: int, kinds: set[str] | None) -> AsyncIterator[bytes]:
    """The SSE body. The subscription runs in its own task feeding a queue, so waiting for
    the next event can time out into a keep-alive without cancelling the subscription."""
    queue: asyncio.Queue[StoredEvent | None] = asyncio.Queue(maxsize=bus.batch)

    async def pump() -> None:
        try:
            # aclosing: the subscription's own finally (it stops being woken) runs now, not
            # whenever the generator is collected.
            async with contextlib.aclosing(bus.subscribe(after, kinds)) as subscription:
                async for event in subscription:
                    await queue.put(event)
        except Exception:
            log.exception("event stream after %d failed", after)
        await queue.put(None)  # the bus closed (or failed): end the stream

    task = asyncio.create_task(pump())
    try:
        yield _RETRY
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), KEEP_ALIVE_S)
            except TimeoutError:
                yield _KEEP_ALIVE
                continue
            if event is None:
                return
            yield sse(event)
    finally:
        # The client went away (Starlette cancels this generator) or the bus closed. Not
        # awaited: under a cancelled scope every await is cancelled again; the task ends on
        # the loop's next turn (its scheduled step holds it until then).
        task.cancel()


def end_event_streams(app: object) -> None:
    """End every event and metrics stream of ``app`` now (its bus stays writable). Called
    when a graceful shutdown starts: an SSE client keeps its connection open for ever, so
    uvicorn's drain would wait on it to the deadline and the components would stop late."""
    state = getattr(app, "state", None)
    bus = getattr(state, "events", None)
    if isinstance(bus, EventBus):
        bus.close(timeout=0)
    metrics = getattr(state, "metrics", None)
    if isinstance(metrics, MetricsService):  # its summary streams too (routes_metrics)
        metrics.streams_ended.set()
