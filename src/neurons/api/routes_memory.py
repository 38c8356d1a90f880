"""``/api/ai/memory``: language memory (seed 003, issue 22). Thin: each route resolves the
caller's namespace and calls one :class:`~neurons.memory.MemoryService` method.

- ``POST /api/ai/memory``: store a text with its metadata and embedding (201);
- ``GET /api/ai/memory/search?q=&k=``: the ``k`` nearest entries by cosine, with scores;
- ``DELETE /api/ai/memory/{id}``: remove an entry;
- ``POST /api/ai/memory/synthesize``: an LLM on the network summarises the hits for a query,
  citing them as ``[1]..[k]``.

A key works in its own namespace (its name); an admin key, the master key and everyone while
keys are off may name one (``namespace``; the last two default to ``default``). Writes need
the inference scope (:mod:`neurons.auth.scopes`), searches the read scope like every GET.
With the control plane's embedding model off (settings: ``inference``) every route answers
503 ``embeddings_unavailable``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from neurons.api.responses import errors
from neurons.auth.context import check_model, principal_of
from neurons.errors import EmbeddingsUnavailableError
from neurons.memory import GatewayGenerator, MemoryService, ModelEmbeddings, resolve_namespace
from neurons.memory.service import (
    DEFAULT_K,
    MAX_K,
    MAX_QUERY_CHARS,
    MAX_TEXT_CHARS,
)

__all__ = ["MemoryAddRequest", "SynthesizeRequest", "router"]

router = APIRouter(prefix="/api/ai/memory", tags=["memory"])

_NAMESPACE_DOC = (
    "The namespace (default: the key's own, or 'default' for the master key and with keys "
    "off); only an admin key may name another key's."
)
EntryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A memory entry's id.")]


class MemoryAddRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="What to remember.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="A JSON object kept with the text (at most 4 KiB)."
    )
    namespace: str | None = Field(default=None, max_length=64, description=_NAMESPACE_DOC)


class SynthesizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    model: str | None = Field(
        default=None, max_length=256, description="The LLM (default: the default model)."
    )
    k: int = Field(default=DEFAULT_K, ge=1, le=MAX_K, description="Hits to summarise.")
    max_tokens: int = Field(
        default=256, ge=1, le=4096, description="Most tokens of summary (num_predict)."
    )
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    namespace: str | None = Field(default=None, max_length=64, description=_NAMESPACE_DOC)


def _service(request: Request) -> MemoryService:
    state = request.app.state
    model = getattr(state, "inference", None)
    if model is None:
        raise EmbeddingsUnavailableError(
            "language memory needs the control plane's embedding model, which is off "
            "(settings: inference)"
        )
    return MemoryService(state.store, ModelEmbeddings(model), GatewayGenerator(state.gateway))


def _namespace(request: Request, asked: str | None) -> str:
    return resolve_namespace(principal_of(request.scope), asked)


@router.post("", status_code=201, responses=errors(400, 503))
async def add(request: Request, body: MemoryAddRequest) -> JSONResponse:
    """Store a text with its metadata and embedding; ``truncated``: only its first tokens
    were embedded (the model's limit), though all of it is kept."""
    service = _service(request)
    entry, truncated = await service.add(
        _namespace(request, body.namespace), body.text, body.metadata
    )
    return JSONResponse(
        {"success": True, "entry": entry.to_dict(), "truncated": truncated}, status_code=201
    )


@router.get("/search", responses=errors(400, 503))
async def search(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="The query.")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many hits.")] = DEFAULT_K,
    namespace: Annotated[str | None, Query(max_length=64, description=_NAMESPACE_DOC)] = None,
) -> dict[str, Any]:
    """The ``k`` entries nearest the query by cosine similarity, best first, with scores."""
    space = _namespace(request, namespace)
    hits = await _service(request).search(space, q, k)
    return {"success": True, "namespace": space, "hits": [h.to_dict() for h in hits]}


@router.delete("/{entry_id}", responses=errors(400, 503))
async def delete(
    request: Request,
    entry_id: EntryId,
    namespace: Annotated[str | None, Query(max_length=64, description=_NAMESPACE_DOC)] = None,
) -> dict[str, Any]:
    """Remove an entry (404 when the namespace holds no entry with that id)."""
    await _service(request).delete(_namespace(request, namespace), entry_id)
    return {"success": True, "deleted": entry_id}


@router.post("/synthesize", responses=errors(400, 404, 502, 503))
async def synthesize(request: Request, body: SynthesizeRequest) -> dict[str, Any]:
    """Search, then have an LLM on the network summarise the hits for the query, citing
    them by number; each hit carries its ``citation`` number and ``prompt`` what was sent."""
    model = body.model or request.app.state.network.settings.default_model
    check_model(request.scope, model)
    service = _service(request)
    options = {"num_predict": body.max_tokens, "temperature": body.temperature}
    result = await service.synthesize(
        _namespace(request, body.namespace), body.query, model, body.k, options
    )
    return {"success": True, **result.to_dict()}
