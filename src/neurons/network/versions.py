"""The version bridge: which Ollama version brought which API, and how the control plane
serves a newer request on an older node.

The health monitor reads each node's ``GET /api/version`` on every probe (it is the probe's
first call) and keeps it on the node's view; the gateway asks :func:`supports` before it
forwards a request that an old node would not understand. Versions come from the Ollama
repository's history (``git tag --contains`` of the commit that added the route):

* ``ps`` — ``GET /api/ps``: v0.1.38 (commit 684598880, 2024-05-13, PR #4327). Older nodes are
  probed without it and show no loaded models.
* ``embed`` — ``POST /api/embed``: v0.2.6 (commit b9f5e16c8, 2024-07-15, PR #5127; v0.2.5 has
  only ``/api/embeddings``). Older nodes get :func:`embed_via_embeddings`: one
  ``/api/embeddings`` call per input, the answers L2-normalized (what ``/api/embed`` returns)
  and folded back into ``/api/embed``'s shape.

A version that cannot be read counts as current: so does a node that reports none, and an
Ollama built from source, which reports ``0.0.0``. A bridge is for a node known to be old,
never a guess.

>>> supports("0.1.30", "embed"), supports("0.2.6", "embed"), supports("v0.12.3", "embed")
(False, True, True)
>>> supports("0.2.5-rc1", "embed"), supports("0.2.6-rc1", "embed")
(False, True)
>>> supports(None, "embed"), supports("nightly", "embed"), supports("0.0.0", "embed")
(True, True, True)
>>> supports("0.1.37", "ps"), supports("0.1.38", "ps")
(False, True)
>>> legacy_embeddings_bodies({"model": "m", "input": ["a", "b"], "keep_alive": "5m"})
... # doctest: +NORMALIZE_WHITESPACE
[{'model': 'm', 'prompt': 'a', 'keep_alive': '5m'},
 {'model': 'm', 'prompt': 'b', 'keep_alive': '5m'}]
>>> embed_answer("m", [[3.0, 4.0]], dimensions=None, total_ns=1)
{'model': 'm', 'embeddings': [[0.6, 0.8]], 'total_duration': 1}
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from neurons.errors import InvalidRequestError

__all__ = [
    "EMBED",
    "FEATURES",
    "PS",
    "embed_answer",
    "embed_via_embeddings",
    "legacy_embeddings_bodies",
    "parse_version",
    "supports",
]

PS = "ps"
EMBED = "embed"
# The first Ollama release with each feature (see the module docstring for the evidence).
FEATURES: dict[str, tuple[int, int, int]] = {
    PS: (0, 1, 38),
    EMBED: (0, 2, 6),
}

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def parse_version(version: str | None) -> tuple[int, int, int] | None:
    """``major.minor.patch`` of a version string (a pre-release counts as its release);
    None when it cannot be read or is a source build's ``0.0.0``."""
    match = _VERSION.match((version or "").strip())
    if match is None:
        return None
    parsed = (int(match.group(1)), int(match.group(2)), int(match.group(3)))
    return None if parsed == (0, 0, 0) else parsed


def supports(version: str | None, feature: str) -> bool:
    """Whether a node reporting ``version`` has ``feature`` (unknown versions: yes)."""
    parsed = parse_version(version)
    return parsed is None or parsed >= FEATURES[feature]


# -- /api/embed on a node that has only /api/embeddings -------------------------------------


def legacy_embeddings_bodies(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One ``/api/embeddings`` body per input of an ``/api/embed`` body (Ollama's 400 for an
    input that is neither a string nor a list of strings). An empty input still makes one
    call, with an empty prompt: that loads the model, as ``/api/embed`` does."""
    raw = body.get("input")
    if raw is None or raw == "" or raw == []:
        texts = [""]
    elif isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list) and all(isinstance(t, str) for t in raw):
        texts = list(raw)
    else:
        raise InvalidRequestError("invalid input type")
    shared = {key: body[key] for key in ("keep_alive", "options") if body.get(key) is not None}
    return [{"model": body.get("model"), "prompt": text, **shared} for text in texts]


def embed_answer(
    model: str, vectors: list[list[float]], *, dimensions: int | None, total_ns: int
) -> dict[str, Any]:
    """``/api/embed``'s answer from ``/api/embeddings``' vectors: cut to ``dimensions`` and
    L2-normalized, as ``/api/embed`` gives them (``/api/embeddings`` does not normalize)."""
    embeddings = []
    for vector in vectors:
        if dimensions:
            vector = vector[:dimensions]
        norm = math.sqrt(sum(v * v for v in vector))
        embeddings.append([v / norm for v in vector] if norm > 0 else vector)
    return {"model": model, "embeddings": embeddings, "total_duration": total_ns}


async def embed_via_embeddings(
    session: aiohttp.ClientSession, url: str, payload: bytes, headers: Mapping[str, str]
) -> tuple[aiohttp.ClientResponse, bytes]:
    """Serve an ``/api/embed`` request on an old node. Returns the last node response (its
    status and headers are what the client gets) and the body to send: ``/api/embed``'s
    answer, or the first failing call's own answer, as the node gave it (so a 404 or a 5xx
    moves on to the next node exactly as a forwarded request would). The calls go one after
    another: an old node serves one request at a time anyway, and a long batch must not
    fill its queue."""
    started = time.perf_counter_ns()
    try:
        body = json.loads(payload)
    except ValueError as exc:  # the gateway parsed it already; this is belt and braces
        raise InvalidRequestError(f"invalid JSON: {exc}") from exc
    requests = legacy_embeddings_bodies(body)
    vectors: list[list[float]] = []
    response: aiohttp.ClientResponse | None = None
    for request in requests:
        response = await session.post(url + "/api/embeddings", json=request, headers=headers)
        try:
            answer = await response.read()
        finally:
            response.release()
        if response.status != 200:
            return response, answer
        vector = _embedding(answer)
        if vector is None:
            raise aiohttp.ClientResponseError(
                response.request_info,
                response.history,
                status=502,
                message="/api/embeddings answered without an embedding",
            )
        if request["prompt"]:
            vectors.append(vector)
    assert response is not None  # there is always at least one call
    dimensions = body.get("dimensions")
    result = embed_answer(
        str(body.get("model")),
        vectors,
        dimensions=dimensions if isinstance(dimensions, int) and dimensions > 0 else None,
        total_ns=time.perf_counter_ns() - started,
    )
    return response, json.dumps(result, separators=(",", ":")).encode()


def _embedding(answer: bytes) -> list[float] | None:
    try:
        data = json.loads(answer)
    except ValueError:
        return None
    vector = data.get("embedding") if isinstance(data, dict) else None
    if not isinstance(vector, list) or not all(isinstance(v, int | float) for v in vector):
        return None
    return [float(v) for v in vector]
