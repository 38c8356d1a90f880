"""``POST /api/v1/model/inference``: seed 001's endpoint for its model module, the control
plane's embedding model (:mod:`neurons.system.inference`). Inference scope when keys are on,
and the key's limits apply (its tokens are the inputs' tokens).

It takes ``{"text": "..."}`` or ``{"texts": [...]}`` (and ``"truncate": false`` to refuse an
input longer than the model's ``max_length`` instead of cutting it) and answers the seed's
shape: ``input_text`` (or ``input_texts``), ``embeddings`` (one vector per input),
``model_type``, ``model_version`` (the weights' digest), ``dimensions``, ``prompt_tokens``,
``truncated`` and ``cached`` (a bool for one text, a list for several). Errors answer like
the seed's, ``{"error": "..."}``: 400 for bad input (``No input text provided`` for none),
404 when the module is off, 500 when the model cannot be loaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from neurons.api.surfaces import error_response
from neurons.auth.context import usage_of
from neurons.errors import InvalidRequestError, NeuronsError, NotFoundError
from neurons.inference.service import MAX_TEXTS, NO_INPUT
from neurons.ollama.wire import read_json
from neurons.system.inference import LocalInference

__all__ = ["InferenceRequest", "InferenceResponse", "router"]

router = APIRouter(tags=["inference"])


class InferenceRequest(BaseModel):
    """One of ``text`` and ``texts``."""

    model_config = ConfigDict(extra="allow")
    text: str | None = Field(default=None, description="One text to embed.")
    texts: list[str] | None = Field(
        default=None, max_length=MAX_TEXTS, description=f"Several texts (at most {MAX_TEXTS})."
    )
    truncate: bool = Field(
        default=True, description="Cut inputs longer than the model's max_length (false: 400)."
    )


class InferenceResponse(BaseModel):
    input_text: str | None = None
    input_texts: list[str] | None = None
    embeddings: list[list[float]]
    model_type: str
    model_version: str = Field(description="The digest of the model's weights.")
    dimensions: int
    prompt_tokens: int = Field(description="Tokens of the inputs, after truncation.")
    truncated: bool | list[bool]
    cached: bool | list[bool]


def _local(request: Request) -> LocalInference:
    local: LocalInference | None = getattr(request.app.state, "inference", None)
    if local is None:
        raise NotFoundError("the inference module is off (settings: inference)")
    return local


@router.post(
    "/api/v1/model/inference",
    response_model=InferenceResponse,
    response_model_exclude_none=True,
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": InferenceRequest.model_json_schema()}},
            "required": True,
        }
    },
    responses={
        400: {"description": "Bad input: none, not text, too many or (truncate false) too long."},
        404: {"description": "The inference module is off."},
        500: {"description": "The model could not be loaded (the message says why)."},
    },
)
async def model_inference(request: Request) -> Any:
    """Embed one text or several with the control plane's model (seed 001)."""
    try:
        answer = await _answer(request)
    except NeuronsError as exc:  # the seed's shape, {"error": ...}, as the Ollama API's
        return error_response(request.url.path, exc)
    # Written here, not by FastAPI: validating and encoding 384 floats a text through the
    # response model cost 0.19 ms a text on the event loop's core, orjson 0.007 ms
    # (float64, so the numbers read exactly as json.dumps writes them).
    body = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, media_type="application/json")


async def _answer(request: Request) -> dict[str, Any]:
    local = _local(request)
    body = await read_json(request)
    texts, single = _texts(body)
    truncate = body.get("truncate", True)
    if not isinstance(truncate, bool):
        raise InvalidRequestError("truncate must be true or false")
    embedded = await local.embed(texts, truncate=truncate)
    usage = usage_of(request.scope)
    if usage is not None:
        usage.add(embedded.prompt_tokens, 0)
    service = await local.ready()
    answer: dict[str, Any] = {
        "embeddings": np.asarray(embedded.vectors, dtype=np.float64).reshape(
            len(embedded.vectors), -1
        ),
        "model_type": service.model_type,
        "model_version": service.digest,
        "dimensions": service.dimensions,
        "prompt_tokens": embedded.prompt_tokens,
    }
    if single:
        answer.update(
            input_text=texts[0], truncated=embedded.truncated[0], cached=embedded.cached[0]
        )
    else:
        answer.update(input_texts=texts, truncated=embedded.truncated, cached=embedded.cached)
    return answer


def _texts(body: dict[str, Any]) -> tuple[list[str], bool]:
    """The inputs, and whether the request named one ``text``."""
    text, texts = body.get("text"), body.get("texts")
    if text is not None and texts is not None:
        raise InvalidRequestError("send text or texts, not both")
    if texts is None:
        if text is None or text == "":
            raise InvalidRequestError(NO_INPUT)
        if not isinstance(text, str):
            raise InvalidRequestError("text must be a string")
        return [text], True
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise InvalidRequestError("texts must be a list of strings")
    return list(texts), False  # the service refuses none, too many and blank ones
