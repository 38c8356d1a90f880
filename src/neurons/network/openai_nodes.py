"""OpenAI-compatible nodes: any server with ``/v1/chat/completions`` (vLLM, llama.cpp's
llama-server, LM Studio, Ray Serve, llama-cpp-python's ``llama_cpp.server``) as a node.

Registered with ``kind="openai"`` (and an API key as its node token, sent as
``Authorization: Bearer``), such a node is probed with ``GET /v1/models`` (its model ids are
its inventory, all of them served, so all "loaded"; their capabilities stay unknown, so
routing excludes nothing and the node refuses what it cannot do). The gateway routes to it
like any node; what is sent differs:

* Ollama-API requests are translated (:mod:`neurons.network.openai_translate`) and sent
  (:func:`send`) here, so routing, retries before the
  first byte, breakers and metrics keep working as for any node:

  ==================  =========================  ===========================================
  Ollama              OpenAI                     answer
  ==================  =========================  ===========================================
  ``/api/chat``       ``/v1/chat/completions``   message, tool calls (arguments as objects)
  ``/api/generate``   ``/v1/completions``        response
  ``/api/embed``      ``/v1/embeddings``         L2-normalized vectors, cut to ``dimensions``
  ``/api/embeddings`` ``/v1/embeddings``         the vector as the node gave it
  ==================  =========================  ===========================================

  A stream (Ollama streams by default) is asked for as server-sent events and relayed as
  NDJSON lines; the last one has ``done_reason`` (``finish_reason``: ``stop``, ``length``),
  ``prompt_eval_count`` and ``eval_count`` from the node's ``usage`` (asked for with
  ``stream_options.include_usage``; a node that sends none gets ``eval_count`` counted in
  chunks and no ``prompt_eval_count``) and durations measured here (``prompt_eval_duration``
  is the wait for the first token; a non-streamed answer puts all of its time in
  ``eval_duration``). A server that returns one embedding per token (llama-cpp-python
  without pooling) has them mean-pooled.

  Options mapped: ``temperature``, ``top_p``, ``seed``, ``stop``, ``presence_penalty``,
  ``frequency_penalty``, ``num_predict`` → ``max_tokens`` (a negative one, "no limit", sends
  none); ``format`` → ``response_format`` (``"json"`` → ``json_object``, a schema →
  ``json_schema``); ``tools`` as they are (Ollama's are OpenAI's shape); ``suffix`` (generate)
  as it is.

  Refused with a 400 naming the field (the OpenAI API has no way to say them, and dropping
  them would change the answer): every other option (``num_ctx``, ``top_k``, ``min_p``,
  ``repeat_penalty``, ``mirostat``, ``num_gpu``, ...); ``images``; a truthy ``think``;
  a ``keep_alive`` (the server manages its own memory); generate's ``system``,
  ``template`` and ``context`` (``/v1/completions`` takes the prompt as it is, with no chat
  template: Ollama's ``raw`` mode, whatever ``raw`` says); embed's ``options`` and
  ``truncate: true`` (such a server fails an input past its context instead); message
  fields other than ``role``, ``content``, ``tool_calls`` and ``tool_name``; any field this
  module does not know. Other Ollama routes (``/api/show``, ...) are refused too. Where a
  node with Ollama's API holds the model as well, such a request goes to it instead
  (:func:`translatable`).

* OpenAI-API requests for a model that only OpenAI-compatible nodes hold pass straight
  through, body and answer as they are (:mod:`neurons.network.gateway_openai`); where an
  Ollama-API node holds it too, they take the translated path like any request, and reach
  such a node translated back.
* Model operations that need Ollama's API (pull, create, copy, delete, push, blobs, sync)
  skip such nodes and say so (:func:`skip_reason`).

A node's model ids are its own (``meta-llama/Llama-3.1-8B-Instruct``); routing keys on
canonical names, and :func:`send` puts the node's own id back into the request.

>>> chat_body({"model": "m", "messages": [{"role": "user", "content": "hi"}],
...            "options": {"temperature": 0, "num_predict": 5}, "format": "json"})
... # doctest: +NORMALIZE_WHITESPACE
{'model': 'm', 'messages': [{'role': 'user', 'content': 'hi'}], 'stream': True,
 'stream_options': {'include_usage': True}, 'temperature': 0, 'max_tokens': 5,
 'response_format': {'type': 'json_object'}}
>>> chat_body({"model": "m", "messages": [], "options": {"num_ctx": 8192}})
Traceback (most recent call last):
...
neurons.errors.InvalidRequestError: option 'num_ctx' cannot be sent to an OpenAI-compatible \
node (mapped: frequency_penalty, num_predict, presence_penalty, seed, stop, temperature, top_p)
>>> mean_pooled([[1.0, 2.0], [3.0, 4.0]]), mean_pooled([1.0, 2.0])
([2.0, 3.0], [1.0, 2.0])
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from neurons.errors import InvalidRequestError
from neurons.network.openai_inventory import OPENAI
from neurons.network.openai_translate import (
    SseToNdjson,
    chat_answer,
    chat_body,
    embed_body,
    embedding_answer,
    error_answer,
    generate_answer,
    generate_body,
)
from neurons.network.routing import NodeView
from neurons.ollama.names import canonical_name
from neurons.ollama.wire import NDJSON, line

__all__ = [
    "ROUTES",
    "send",
    "tags_answer",
    "translatable",
]

_JSON = "application/json"


# -- the gateway's per-node attempt ---------------------------------------------------------


async def _relay(response: aiohttp.ClientResponse, stream: SseToNdjson) -> AsyncIterator[bytes]:
    """The node's events as NDJSON; a stream that ends before ``[DONE]`` or a finish reason
    was cut, and raises as a cut connection does (the gateway ends it with an error line)."""
    ended = False
    async for raw in response.content:
        text = raw.strip()
        if not text.startswith(b"data:"):
            continue  # blank separators, comments, "event:" lines
        data = text[5:].strip()
        if data == b"[DONE]":
            ended = True
            break
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if isinstance(event, dict):
            for item in stream.feed(event):
                yield line(item)
                if "error" in item:
                    return
    if not ended and stream.finish is None:
        raise aiohttp.ClientPayloadError("the node's event stream ended before [DONE]")
    for item in stream.done():
        yield line(item)


Build = Callable[[Mapping[str, Any]], dict[str, Any]]
# Ollama route → (the node's route, the request's translation).
ROUTES: dict[str, tuple[str, Build]] = {
    "/api/chat": ("/v1/chat/completions", chat_body),
    "/api/generate": ("/v1/completions", generate_body),
    "/api/embed": ("/v1/embeddings", embed_body),
    "/api/embeddings": ("/v1/embeddings", embed_body),
}


def translatable(nodes: list[NodeView], path: str, payload: bytes) -> list[NodeView]:
    """The candidates for a request, less the OpenAI-compatible ones that would refuse it
    while a node with Ollama's API could take it (``num_ctx`` goes to the Ollama node).
    When only such nodes remain they stay, and refuse it with the 400 that says why."""
    kinds = {n.kind == OPENAI for n in nodes}
    if kinds != {True, False} or path.startswith("/v1/"):
        return nodes  # nothing to choose between: no parsing on the common path
    others = [n for n in nodes if n.kind != OPENAI]
    if path not in ROUTES:
        return others
    try:
        body = json.loads(payload)
        ROUTES[path][1](body)
    except (InvalidRequestError, ValueError, AttributeError):
        return others
    return nodes


@dataclass
class Translated:
    """A node's answer in Ollama's shape: a whole ``body``, or a ``stream`` of NDJSON."""

    media_type: str
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None


async def send(
    session: aiohttp.ClientSession,
    node: NodeView,
    path: str,
    payload: bytes,
    headers: Mapping[str, str],
) -> tuple[aiohttp.ClientResponse, Translated]:
    """Serve an Ollama-API request on an OpenAI-compatible node: the node's response (its
    status is what the client gets) and the answer translated. Raises
    :class:`InvalidRequestError` before sending anything for what cannot be translated."""
    if path.startswith("/v1/"):
        return await _passthrough(session, node, path, payload, headers)
    if path not in ROUTES:
        raise InvalidRequestError(
            f"{node.name} is an OpenAI-compatible node: it has no Ollama API for {path}"
        )
    target, build = ROUTES[path]
    try:
        body = json.loads(payload)
    except ValueError as exc:  # the gateway parsed it already
        raise InvalidRequestError(f"invalid JSON: {exc}") from exc
    request = build(body)
    model = str(body.get("model") or "")
    request["model"] = node.served.get(canonical_name(model), model) if model else model
    started = time.perf_counter_ns()
    response = await session.post(node.url + target, json=request, headers=headers)
    if response.status >= 400:
        try:
            answer = await response.read()
        finally:
            response.release()
        return response, Translated(_JSON, body=error_answer(answer, response.status))
    if request.get("stream") and "text/event-stream" in response.headers.get("Content-Type", ""):
        stream = SseToNdjson(model, chat=path == "/api/chat", started_ns=started)
        return response, Translated(NDJSON, stream=_relay(response, stream))
    try:
        raw = await response.read()
    finally:
        response.release()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise aiohttp.ClientPayloadError(f"the node answered {path} with no JSON") from exc
    total_ns = time.perf_counter_ns() - started
    if target == "/v1/embeddings":
        result = embedding_answer(data, body, path, total_ns)
    elif path == "/api/chat":
        result = chat_answer(data, model, total_ns)
    else:
        result = generate_answer(data, model, total_ns)
    if request.get("stream"):  # a node that answered a stream request whole: one line
        return response, Translated(NDJSON, body=line(result))
    return response, Translated(_JSON, body=json.dumps(result).encode())


async def _passthrough(
    session: aiohttp.ClientSession,
    node: NodeView,
    path: str,
    payload: bytes,
    headers: Mapping[str, str],
) -> tuple[aiohttp.ClientResponse, Translated]:
    """An OpenAI-API request as it came (the model named as the node names it); the answer
    as the node gave it: a whole body, or its event stream's bytes."""
    body = json.loads(payload)
    model = str(body.get("model") or "")
    if model:
        body["model"] = node.served.get(canonical_name(model), model)
    response = await session.post(node.url + path, json=body, headers=headers)
    media_type = response.headers.get("Content-Type") or _JSON
    if response.status < 400 and "text/event-stream" in media_type:
        return response, Translated(media_type, stream=response.content.iter_any())
    try:
        answer = await response.read()
    finally:
        response.release()
    return response, Translated(media_type, body=answer)


# -- inventory ------------------------------------------------------------------------------


def tags_answer(node: NodeView) -> list[dict[str, Any]]:
    """The node's models as ``/api/tags`` (and ``/api/ps``) entries, from its last probe."""
    return [
        {"name": served, "model": served, "details": {"format": OPENAI}}
        for served in sorted(node.served.values())
    ]
