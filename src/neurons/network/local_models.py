"""The control plane's own embedding model (seed 001, :mod:`neurons.system.inference`) in the
Ollama API: what the gateway answers for it on ``/api/embed``, ``/api/embeddings`` and
``/api/show``, and its ``/api/tags`` entry, so an Ollama or OpenAI client reaches it like any
embedding model on a node. Nothing here goes to a node.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from neurons.errors import InvalidRequestError

if TYPE_CHECKING:
    from neurons.system.inference import LocalInference

__all__ = ["LOCAL_NODE", "LOCAL_PATHS", "local_answer", "local_tags_entry"]

# The name the plane's own model is listed under, where a node's name would be.
LOCAL_NODE = "control-plane"
LOCAL_PATHS = frozenset({"/api/embed", "/api/embeddings", "/api/show"})


async def local_answer(local: LocalInference, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Ollama's answer to ``body`` on ``path`` (one of :data:`LOCAL_PATHS`)."""
    if path == "/api/show":
        service = await local.ready()
        return {
            "modelfile": f"# {local.name}: served by the control plane (neurons.inference)\n",
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": _details(service.model_type, service.quantization),
            "model_info": {
                "general.architecture": "bert",
                "bert.embedding_length": service.dimensions,
                "bert.context_length": service.max_length,
            },
            "capabilities": ["embedding"],
        }
    started = time.perf_counter()
    if path == "/api/embeddings":  # the older route: one prompt, one vector
        prompt = body.get("prompt")
        if prompt is None or prompt == "":
            return {"embedding": []}  # what Ollama answers for an empty prompt
        if not isinstance(prompt, str):
            raise InvalidRequestError("prompt must be a string")
        embedded = await local.embed([prompt])
        return {"embedding": embedded.embeddings[0]}
    inputs = _inputs(body.get("input"))
    if not inputs:
        return {"model": body.get("model"), "embeddings": []}
    truncate = body.get("truncate", True)
    if not isinstance(truncate, bool):
        raise InvalidRequestError("truncate must be true or false")
    embedded = await local.embed(inputs, truncate=truncate)
    vectors = embedded.embeddings
    dimensions = body.get("dimensions")
    if dimensions is not None:
        vectors = [_cut(v, dimensions) for v in vectors]
    return {
        "model": body.get("model"),
        "embeddings": vectors,
        "total_duration": int((time.perf_counter() - started) * 1e9),
        "load_duration": 0,
        "prompt_eval_count": embedded.prompt_tokens,
    }


def local_tags_entry(local: LocalInference) -> dict[str, Any]:
    """The model's ``/api/tags`` entry. Its digest and size are known once it has loaded
    (the first request loads it); until then they are empty."""
    service = local.loaded
    digest = "" if service is None else service.digest.removeprefix("sha256:")
    config = local.config
    details = _details(config.model_type, config.quantization)
    return {
        "name": local.name,
        "model": local.name,
        "modified_at": "1970-01-01T00:00:00Z",
        "size": 0 if service is None else int(getattr(service, "size_bytes", 0)),
        "digest": digest,
        "details": details,
        "capabilities": ["embedding"],
        "nodes": [LOCAL_NODE],
    }


def _details(model_type: str, quantization: str) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": model_type,
        "family": "bert",
        "families": ["bert"],
        "parameter_size": "",
        "quantization_level": "Q8_0" if quantization == "int8" else "F32",
    }


def _inputs(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise InvalidRequestError("input must be a string or a list of strings")


def _cut(vector: list[float], dimensions: Any) -> list[float]:
    """The first ``dimensions`` values, normalized again (Ollama's ``dimensions``)."""
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        raise InvalidRequestError("dimensions must be a positive integer")
    if dimensions > len(vector):
        raise InvalidRequestError(f"dimensions {dimensions} is more than the model's {len(vector)}")
    cut = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in cut)) or 1.0
    return [x / norm for x in cut]
