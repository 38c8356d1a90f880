"""Seed 002's parameter-optimization API under ``/api/ai/ollama/optimization``: thin routes
over :class:`~neurons.optimize.service.OptimizationService`. Answers carry ``"success": true``;
errors use the seed's envelope (the app's error handlers).

A session is created from form data, as the seed's API takes it. The user's own evaluation set
comes as an uploaded JSONL file (``eval_file``): its text is read and validated, and its name
only labels the set. No path is ever taken from a request.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Form, Query, Request, UploadFile
from pydantic import BaseModel, Field

from neurons.api.responses import errors
from neurons.errors import InvalidRequestError
from neurons.optimize.service import OptimizationService

__all__ = ["router"]

router = APIRouter(prefix="/api/ai/ollama/optimization", tags=["optimization"])

MAX_EVAL_FILE_BYTES = 8 * 2**20
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

# ``:path`` so that any id, ``../etc`` included, reaches the store and answers 404
# session_not_found (ids are row numbers; the store refuses anything else).
SESSION = "{session_id:path}"


def _service(request: Request) -> OptimizationService:
    service: OptimizationService = request.app.state.optimization
    return service


def _ok(payload: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, **payload}


def _eval_name(filename: str | None) -> str:
    """A label for an uploaded set: the file name's stem, with only safe characters."""
    base = re.split(r"[/\\]", filename or "")[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    name = _UNSAFE.sub("_", stem).strip("._-")[:64]
    return name or "custom"


async def _read_eval_file(upload: UploadFile) -> str:
    data = await upload.read(MAX_EVAL_FILE_BYTES + 1)
    if len(data) > MAX_EVAL_FILE_BYTES:
        raise InvalidRequestError(
            f"evaluation set is larger than {MAX_EVAL_FILE_BYTES // 2**20} MiB"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"evaluation set is not UTF-8 text: {exc}") from exc


def _search_space(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"search_space is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError("search_space must be a JSON object with model_type and ranges")
    return data


class ApplyBody(BaseModel):
    name: str | None = Field(default=None, description="Default: <model>:<tag>-tuned.")
    nodes: list[str] | None = Field(
        default=None, description="Default: every healthy node holding the base model."
    )


@router.post("/create", responses=errors(400, 404, 409, 503))
async def create(
    request: Request,
    model_name: Annotated[str, Form()],
    objective: Annotated[str, Form()] = "balance_quality_speed",
    strategy: Annotated[str, Form()] = "bayesian_optimization",
    model_type: Annotated[str, Form()] = "general",
    max_iterations: Annotated[int | None, Form(le=1_000_000)] = None,
    timeout_minutes: Annotated[float | None, Form()] = None,
    node: Annotated[str | None, Form(description="Run every trial on this node.")] = None,
    eval_limit: Annotated[int | None, Form(le=1_000_000, description="Prompts per trial.")] = None,
    samples: Annotated[
        int,
        Form(le=1000, description="Generations per prompt, each with its own sampling seed."),
    ] = 1,
    seed: Annotated[int | None, Form(ge=0, le=2**32 - 1)] = None,
    parameters: Annotated[
        str | None, Form(description="Comma-separated options to tune, e.g. temperature,top_k.")
    ] = None,
    search_space: Annotated[
        str | None, Form(description="A search space as JSON ({model_type, ranges}).")
    ] = None,
    similarity: Annotated[bool, Form(description="Score similarity cases with MiniLM.")] = True,
    baseline: Annotated[bool, Form(description="Run Ollama's defaults first.")] = True,
    eval_file: Annotated[
        UploadFile | None, File(description="Your own evaluation set (JSONL).")
    ] = None,
) -> dict[str, Any]:
    """A new ``pending`` session; ``POST /start/{id}`` runs it."""
    eval_jsonl: str | None = None
    eval_name = "custom"
    if eval_file is not None:
        eval_jsonl = await _read_eval_file(eval_file)
        eval_name = _eval_name(eval_file.filename)
    names = [p.strip() for p in parameters.split(",") if p.strip()] if parameters else None
    record = await _service(request).create(
        model_name=model_name,
        objective=objective,
        strategy=strategy,
        model_type=model_type,
        max_iterations=max_iterations,
        timeout_minutes=timeout_minutes,
        parameters=names,
        search_space=_search_space(search_space) if search_space is not None else None,
        eval_jsonl=eval_jsonl,
        eval_name=eval_name,
        node=node or None,
        eval_limit=eval_limit,
        samples=samples,
        seed=seed,
        similarity=similarity,
        baseline=baseline,
    )
    return _ok(
        {
            "session_id": record.session_id,
            "model_name": record.model_name,
            "objective": record.objective,
            "strategy": record.strategy,
            "model_type": record.model_type,
            "status": record.status,
            "message": "Optimization session created successfully",
        }
    )


@router.post(f"/start/{SESSION}", responses=errors(404, 409))
async def start(request: Request, session_id: str) -> dict[str, Any]:
    """Run a pending, failed or cancelled session in the background (a failed or cancelled
    one continues where it stopped)."""
    record = await _service(request).start(session_id)
    return _ok({"session": record.to_dict(), "message": "Optimization session started"})


@router.get(f"/status/{SESSION}", responses=errors(404))
async def status(request: Request, session_id: str) -> dict[str, Any]:
    return _ok({"session": await _service(request).status(session_id)})


@router.get("/sessions", responses=errors(400))
async def sessions(
    request: Request,
    status: Annotated[str | None, Query(description="Only sessions in this status.")] = None,
) -> dict[str, Any]:
    """Sessions, newest first."""
    found = await _service(request).sessions(status or None)
    return _ok({"sessions": found, "count": len(found)})


@router.get(f"/best-parameters/{SESSION}", responses=errors(404, 409))
async def best_parameters(request: Request, session_id: str) -> dict[str, Any]:
    """The best parameters so far with their metrics and score."""
    return _ok(await _service(request).best_parameters(session_id))


@router.post(f"/cancel/{SESSION}", responses=errors(404, 409))
async def cancel(request: Request, session_id: str) -> dict[str, Any]:
    """Cancel a pending or running session; a running trial stops after its prompt."""
    record = await _service(request).cancel(session_id)
    return _ok({"session": record.to_dict(), "message": "Optimization session cancelled"})


@router.get(f"/trials/{SESSION}", responses=errors(404))
async def trials(request: Request, session_id: str) -> dict[str, Any]:
    """The session with every trial, its best result (with the Pareto front for
    balance_quality_speed) and its convergence history."""
    return _ok(await _service(request).details(session_id))


@router.post(f"/apply/{SESSION}", responses=errors(400, 404, 409, 502, 503))
async def apply(
    request: Request, session_id: str, body: Annotated[ApplyBody | None, Body()] = None
) -> dict[str, Any]:
    """Create ``<model>-tuned`` (or ``name``) with the best parameters on the nodes."""
    wanted = body or ApplyBody()
    return _ok(await _service(request).apply(session_id, name=wanted.name, nodes=wanted.nodes))
