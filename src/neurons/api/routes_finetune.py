"""Seed 002's fine-tuning API under ``/api/ai/ollama/fine-tuning``: thin routes over
:class:`~neurons.finetune.service.FineTuningService`. Answers carry ``"success": true``; errors
use the seed's envelope (the app's error handlers).

``training_data_path`` is relative to the fine-tuning data directory
(``FINE_TUNING_PATH/data``); anything resolving outside it (``..``, an absolute path, a symlink
out of it) is refused with 400. Data can also be uploaded: ``POST /upload`` (multipart
``file``) stores it there and answers the path to create a job with; ``/create`` also takes
the file directly as ``training_file``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from neurons.api.responses import errors
from neurons.errors import InvalidRequestError
from neurons.finetune.service import UPLOAD_LIMIT, FineTuningService

__all__ = ["router"]

router = APIRouter(prefix="/api/ai/ollama/fine-tuning", tags=["fine-tuning"])

# ``:path`` so that any id, ``../etc`` included, reaches the store and answers 404.
JOB = "{job_id:path}"


def _service(request: Request) -> FineTuningService:
    service: FineTuningService = request.app.state.fine_tuning
    return service


def _ok(payload: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, **payload}


def _json_field(name: str, text: str | None, kind: type) -> Any:
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(value, kind):
        raise InvalidRequestError(f"{name} must be a JSON {kind.__name__}")
    return value


async def _store_upload(service: FineTuningService, upload: UploadFile) -> str:
    data = await upload.read(UPLOAD_LIMIT + 1)
    return await service.upload(upload.filename or "data", data)


@router.post("/upload", responses=errors(400))
async def upload(request: Request, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
    """Store training data in the fine-tuning data directory; the path to create a job with."""
    path = await _store_upload(_service(request), file)
    return _ok({"training_data_path": path, "message": "Training data uploaded"})


@router.post("/create", responses=errors(400, 404, 409, 502, 503))
async def create(
    request: Request,
    base_model: Annotated[str, Form()],
    target_model_name: Annotated[str, Form()],
    training_data_path: Annotated[
        str | None, Form(description="Relative to FINE_TUNING_PATH/data.")
    ] = None,
    data_type: Annotated[str, Form(description="jsonl, csv, text or conversation.")] = "jsonl",
    hyperparameters: Annotated[
        str | None, Form(description="A preset (efficient, balanced, high_quality) or JSON.")
    ] = None,
    target_capabilities: Annotated[str | None, Form(description="A JSON array.")] = None,
    nodes: Annotated[
        str | None, Form(description="Comma-separated nodes to deploy to (default: all).")
    ] = None,
    column_mapping: Annotated[
        str | None, Form(description='csv: JSON {"prompt": "question", ...}.')
    ] = None,
    training_file: Annotated[UploadFile | None, File(description="The data itself.")] = None,
) -> dict[str, Any]:
    """A new ``pending`` job; ``POST /start/{job_id}`` runs it."""
    service = _service(request)
    capabilities = _json_field("target_capabilities", target_capabilities, list)
    mapping = _json_field("column_mapping", column_mapping, dict)
    if training_file is not None:
        training_data_path = await _store_upload(service, training_file)
    if not training_data_path:
        raise InvalidRequestError("training_data_path or training_file is required")
    record = await service.create(
        base_model=base_model,
        target_model_name=target_model_name,
        training_data_path=training_data_path,
        data_type=data_type,
        hyperparameters=hyperparameters,
        target_capabilities=capabilities,
        nodes=[n.strip() for n in nodes.split(",") if n.strip()] if nodes else None,
        column_mapping=mapping,
    )
    return _ok(
        {
            "job_id": record.job_id,
            "status": record.status,
            "training_data_path": record.config["training_data"],
            "message": "Fine-tuning job created successfully",
        }
    )


@router.post(f"/start/{JOB}", responses=errors(404, 409))
async def start(request: Request, job_id: str) -> dict[str, Any]:
    """Run a pending job in the background; a failed or cancelled one resumes from its last
    checkpoint."""
    record = await _service(request).start(job_id)
    return _ok({"job": record.to_dict(), "message": "Fine-tuning job started"})


@router.get(f"/status/{JOB}", responses=errors(404))
async def status(request: Request, job_id: str) -> dict[str, Any]:
    return _ok({"job": await _service(request).status(job_id)})


@router.get("/jobs", responses=errors(400))
async def jobs(
    request: Request,
    status: Annotated[
        str | None, Query(description="A status (pending, running, ...) or a running phase.")
    ] = None,
) -> dict[str, Any]:
    """Jobs, newest first."""
    found = await _service(request).jobs(status or None)
    return _ok({"jobs": found, "count": len(found)})


@router.post(f"/cancel/{JOB}", responses=errors(404, 409))
async def cancel(request: Request, job_id: str) -> dict[str, Any]:
    """Cancel a pending or running job (training stops at a checkpoint)."""
    record = await _service(request).cancel(job_id)
    return _ok({"job": record.to_dict(), "message": "Fine-tuning job cancelled"})
