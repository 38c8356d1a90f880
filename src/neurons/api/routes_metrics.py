"""``/api/ai/metrics``: the live view and seed 001's model metrics as JSON (read scope).

- ``GET /summary?window_s=``: rates over the last 10 s, a series over the window (one point
  per ``step_s``), totals since start, the nodes and the jobs under way.
- ``GET /stream?interval_s=&window_s=``: the same summary as Server-Sent Events
  (``event: summary``), one every ``interval_s``, for the dashboard's live charts. It ends
  when the client goes away or the control plane starts to drain. It is left out of the
  OpenAPI schema, which describes answers that end.
- ``GET /models?model=``: ``ModelMetrics`` per model, each with its nodes and digests.

With ``metrics`` off in the settings every route answers 404.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from neurons.api.responses import errors
from neurons.errors import NotFoundError
from neurons.metrics.service import MetricsService

__all__ = ["router"]

router = APIRouter(prefix="/api/ai/metrics", tags=["metrics"])

EVENT_STREAM = "text/event-stream"
_TICK_S = 0.25  # how often a waiting stream looks whether the plane is draining

WindowS = Annotated[
    int, Query(ge=10, le=900, description="Seconds of history in the series (10-900).")
]


class ModelsResponse(BaseModel):
    success: Literal[True] = True
    models: list[dict[str, Any]] = Field(
        description="Per model: inference_count, error_count, average_latency (seconds, of "
        "the successes), tokens_per_s, prompt_tokens, completion_tokens, last_used_at, "
        "digests, and the same per node (with its digest)."
    )


class SummaryResponse(BaseModel):
    success: Literal[True] = True
    now: float = Field(description="Epoch seconds when it was read.")
    window_s: int
    step_s: int
    current: dict[str, Any] = Field(
        description="The last 10 s: requests_per_s, error_rate, tokens_per_s, p50_ms, p95_ms."
    )
    since_start: dict[str, Any] = Field(
        description="requests, errors, prompt_tokens, completion_tokens since the plane started."
    )
    series: list[dict[str, Any]] = Field(description="One point per step_s, oldest first.")
    nodes: list[dict[str, Any]]
    jobs: list[dict[str, Any]] = Field(description="Jobs pending or running, of every kind.")


def _metrics(request: Request) -> MetricsService:
    metrics: MetricsService | None = request.app.state.metrics
    if metrics is None:
        raise NotFoundError("metrics are off (settings: metrics)")
    return metrics


@router.get("/summary", response_model=SummaryResponse, responses=errors(404))
async def summary(request: Request, window_s: WindowS = 300) -> dict[str, Any]:
    """The live view: what the dashboard's overview and ``neurons top`` show."""
    return {"success": True, **await _metrics(request).summary(window_s)}


# Not in the OpenAPI schema: a schema-driven client or fuzzer would wait on it for ever.
@router.get("/stream", include_in_schema=False)
async def stream(
    request: Request,
    window_s: WindowS = 300,
    interval_s: Annotated[
        float, Query(ge=0.5, le=60, description="Seconds between two summaries (0.5-60).")
    ] = 2.0,
) -> StreamingResponse:
    """The summary again and again, as Server-Sent Events."""
    metrics = _metrics(request)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    body = _summaries(metrics, window_s, interval_s, metrics.streams_ended)
    return StreamingResponse(body, headers=headers, media_type=EVENT_STREAM)


@router.get("/models", response_model=ModelsResponse, responses=errors(404))
async def models(
    request: Request,
    model: Annotated[
        str | None, Query(max_length=256, description="Only this model (its full name).")
    ] = None,
) -> dict[str, Any]:
    """Seed 001's ModelMetrics per model and node, since this control plane started."""
    return {"success": True, "models": _metrics(request).models(model)}


async def _summaries(
    metrics: MetricsService, window_s: int, interval_s: float, ended: threading.Event
) -> AsyncIterator[bytes]:
    while not ended.is_set():
        data = json.dumps(await metrics.summary(window_s), separators=(",", ":"))
        yield f"event: summary\ndata: {data}\n\n".encode()
        due = time.monotonic() + interval_s
        while not ended.is_set() and time.monotonic() < due:
            await asyncio.sleep(min(_TICK_S, max(0.0, due - time.monotonic())))
