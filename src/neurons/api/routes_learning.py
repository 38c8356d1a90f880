"""Distributed-learning runs under ``/api/ai/learning``: thin routes over
:class:`~neurons.learning.service.LearningService`.

``POST /runs`` takes a JSON body with :class:`~neurons.learning.runs.RunConfig`'s fields
(unknown fields are refused) and ``"start": true|false`` (default true); the run trains in the
background. Seed 003's keys (:mod:`neurons.learning.seed_keys`) come as its nested sections,
``"model": {"type": "transformer", "num_layers": 2}``, ``"learning_system": {...}``,
``"distributed_learning": {"node_config": {...}}``, or dotted under ``"set":
{"node_config.max_students": 0}``; each goes over the configured defaults
(``Settings.learning_defaults``), and a bad one is a 400 naming it
(``learning_system.max_nodes: invalid learning run: ...``); a field set twice (flat and in a
section) is refused too.

``GET /runs/{id}`` is its state with the per-round history, ``GET /runs/{id}/events`` its
events in order (``after`` = the last event id seen), ``GET /runs/{id}/report`` its
accuracy per round per node and who taught whom (``?format=html``: the page ``neurons learn
report`` writes), ``POST /runs/{id}/start`` resumes a
cancelled or failed run from its checkpoint, ``POST /runs/{id}/cancel`` stops it after the
current round. ``POST /teach`` starts an LLM teaching job (a run of mode ``teach``) from
:class:`~neurons.learning.teaching.TeachConfig`'s fields: ``teacher`` and ``student`` (model
names), optionally ``teacher_node``, ``student_node``, ``tuned``, ``prompts``, ``held_out``,
``hyperparameters``, ``num_predict``, ``seed``; it is followed, cancelled and reported through
the same ``/runs/{id}`` routes. Errors use the seed's envelope.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import HTMLResponse

from neurons.api.responses import errors
from neurons.errors import InvalidRequestError
from neurons.learning.choices import MODES
from neurons.learning.report import render_html
from neurons.learning.service import LearningService

__all__ = ["router"]

router = APIRouter(prefix="/api/ai/learning", tags=["learning"])
RUN = "{run_id:path}"  # any id, ``../x`` included, reaches the store and answers 404


def _service(request: Request) -> LearningService:
    service: LearningService = request.app.state.learning
    return service


@router.post("/runs", responses=errors(400, 409))
async def create_run(request: Request, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """Create a learning run from RunConfig fields and seed 003's keys and (unless ``start``
    is false) start it."""
    fields = dict(body)
    start = fields.pop("start", True)
    if not isinstance(start, bool):
        raise InvalidRequestError("start must be true or false")
    service = _service(request)
    record = await service.create(fields)
    if start:
        record = await service.start(record.run_id)
    return {"success": True, "run_id": record.run_id, "run": record.to_dict()}


@router.post("/teach", responses=errors(400, 404, 409))
async def teach(request: Request, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """Create an LLM teaching job and (unless ``start`` is false) start it."""
    fields = dict(body)
    start = fields.pop("start", True)
    if not isinstance(start, bool):
        raise InvalidRequestError("start must be true or false")
    record = await _service(request).teach(fields, start=start)
    return {"success": True, "run_id": record.run_id, "run": record.to_dict()}


@router.get("/runs", responses=errors(400))
async def list_runs(request: Request, status: str | None = None) -> dict[str, Any]:
    runs = await _service(request).runs(status)
    return {"success": True, "runs": runs, "total": len(runs), "modes": list(MODES)}


@router.get(f"/runs/{RUN}/events", responses=errors(400, 404))
async def run_events(
    request: Request,
    run_id: str,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    events = await _service(request).events(run_id, after=after, kind=kind, limit=limit)
    return {"success": True, "run_id": run_id, "events": events}


@router.get(f"/runs/{RUN}/report", response_model=None, responses=errors(400, 404))
async def run_report(
    request: Request, run_id: str, format: Literal["json", "html"] = "json"
) -> dict[str, Any] | HTMLResponse:
    report = await _service(request).report(run_id)
    if format == "html":
        return HTMLResponse(render_html(report))
    return {"success": True, "report": report.to_dict()}


@router.post(f"/runs/{RUN}/start", responses=errors(404, 409))
async def start_run(request: Request, run_id: str) -> dict[str, Any]:
    record = await _service(request).start(run_id)
    return {"success": True, "run": record.to_dict()}


@router.post(f"/runs/{RUN}/cancel", responses=errors(404, 409))
async def cancel_run(request: Request, run_id: str) -> dict[str, Any]:
    record = await _service(request).cancel(run_id)
    return {"success": True, "run": record.to_dict()}


@router.get(f"/runs/{RUN}", responses=errors(404))
async def run_state(request: Request, run_id: str) -> dict[str, Any]:
    return {"success": True, "run": await _service(request).status(run_id)}
