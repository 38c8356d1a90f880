"""OpenAI-compatible nodes: any server with ``/v1/chat/completions`` (vLLM, llama.cpp's
llama-server, LM Studio, Ray Serve, llama-cpp-python's ``llama_cpp.server``) as a node.

Registered with ``kind="openai"`` (and an API key as its node token, sent as
``Authorization: Bearer``), such a node is probed with ``GET /v1/models`` (its model ids are
its inventory, all of them served, so all "loaded"; their capabilities stay unknown, so
routing excludes nothing and the node refuses what it cannot do). The gateway routes to it
like any node; what is sent differs:

* Ollama-API requests are translated here (:func:`send`), so routing, retries before the
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
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from neurons.errors import InvalidRequestError
from neurons.network.routing import NodeView
from neurons.network.versions import embed_answer
from neurons.ollama.names import canonical_name
from neurons.ollama.wire import NDJSON, line, now_rfc3339

__all__ = [
    "OPENAI",
    "ROUTES",
    "SseToNdjson",
    "chat_answer",
    "chat_body",
    "embed_body",
    "embedding_answer",
    "error_answer",
    "generate_answer",
    "generate_body",
    "mean_pooled",
    "send",
    "skip_reason",
    "tags_answer",
    "tags_of",
    "translatable",
]

OPENAI = "openai"
_JSON = "application/json"

# Ollama option → OpenAI field, for the options that mean the same thing on both sides.
_SAME_OPTIONS = ("temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty")
_MAPPED = sorted([*_SAME_OPTIONS, "num_predict"])
_MESSAGE_FIELDS = frozenset({"role", "content", "tool_calls", "tool_name"})
# Ollama's "done_reason" for each OpenAI "finish_reason" (a call ends a turn: Ollama says stop).
_DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop", "function_call": "stop"}


def skip_reason(path: str) -> str:
    """Why a model operation skips an OpenAI-compatible node (its per-node result)."""
    return f"skipped: an OpenAI-compatible node has no Ollama API for {path}"


# -- requests: Ollama → OpenAI --------------------------------------------------------------


def _given(value: Any) -> bool:
    """Whether a field carries something (clients send None, "" or [] for "not set")."""
    return value is not None and value != "" and value != [] and value != {}


def _refuse(what: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"{what} cannot be sent to an OpenAI-compatible node ({why})")


def _check_fields(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key, value in body.items():
        if key not in allowed and _given(value):
            raise _refuse(f"field '{key}'", "no OpenAI equivalent")
    if body.get("keep_alive") is not None:
        raise _refuse("keep_alive", "the server manages its own model memory")
    think = body.get("think")
    if think not in (None, False):
        raise _refuse("think", "the OpenAI API has no thinking switch")


def _options(body: Mapping[str, Any]) -> dict[str, Any]:
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise InvalidRequestError("options must be an object")
    mapped: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key in _SAME_OPTIONS:
            mapped[key] = value
        elif key == "num_predict":
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidRequestError("option 'num_predict' must be an integer")
            if value >= 0:  # negative: until the model stops, which is OpenAI's default
                mapped["max_tokens"] = value
        else:
            raise InvalidRequestError(
                f"option '{key}' cannot be sent to an OpenAI-compatible node"
                f" (mapped: {', '.join(_MAPPED)})"
            )
    return mapped


def _response_format(body: Mapping[str, Any]) -> dict[str, Any]:
    fmt = body.get("format")
    if not _given(fmt):
        return {}
    if fmt == "json":
        return {"response_format": {"type": "json_object"}}
    if isinstance(fmt, dict):
        schema = {"name": "response", "schema": fmt}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    raise InvalidRequestError(f'format must be "json" or a JSON schema, not {fmt!r}')


def _stream(body: Mapping[str, Any]) -> dict[str, Any]:
    if body.get("stream", True) is False:
        return {"stream": False}
    return {"stream": True, "stream_options": {"include_usage": True}}


def _message(message: Any, call_ids: dict[str, str]) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise InvalidRequestError("each message must be an object")
    if _given(message.get("images")):
        raise _refuse("images", "this gateway sends text only")
    for key, value in message.items():
        if key not in _MESSAGE_FIELDS and key != "images" and _given(value):
            raise _refuse(f"message field '{key}'", "no OpenAI equivalent")
    out: dict[str, Any] = {"role": message.get("role"), "content": message.get("content") or ""}
    calls = message.get("tool_calls")
    if _given(calls):
        out["tool_calls"] = []
        for call in calls if isinstance(calls, list) else []:
            function = (call or {}).get("function") or {}
            name = str(function.get("name") or "")
            call_ids[name] = call_id = f"call_{len(call_ids)}"
            arguments = function.get("arguments")
            out["tool_calls"].append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": arguments
                        if isinstance(arguments, str)
                        else json.dumps(arguments or {}),
                    },
                }
            )
    if out["role"] == "tool":  # OpenAI ties a result to its call; Ollama names the tool
        name = str(message.get("tool_name") or "")
        out["tool_call_id"] = call_ids.get(name, f"call_{max(len(call_ids) - 1, 0)}")
    return out


_CHAT_FIELDS = frozenset(
    {"model", "messages", "stream", "format", "options", "tools", "keep_alive", "think"}
)
_GENERATE_FIELDS = frozenset(
    {"model", "prompt", "suffix", "stream", "format", "options", "raw", "keep_alive", "think"}
)
_EMBED_FIELDS = frozenset({"model", "input", "prompt", "dimensions", "keep_alive", "truncate"})


def chat_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """``/api/chat``'s body as ``/v1/chat/completions``' (400 for what cannot be said)."""
    _check_fields(body, _CHAT_FIELDS)
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise InvalidRequestError("messages must be a list")
    call_ids: dict[str, str] = {}
    out: dict[str, Any] = {
        "model": body.get("model"),
        "messages": [_message(m, call_ids) for m in messages],
        **_stream(body),
        **_options(body),
        **_response_format(body),
    }
    if _given(body.get("tools")):
        out["tools"] = body["tools"]
    return out


def generate_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """``/api/generate``'s body as ``/v1/completions``' (the prompt as it is: raw)."""
    for key in ("system", "template", "context"):
        if _given(body.get(key)):
            raise _refuse(key, "/v1/completions applies no template")
    if _given(body.get("images")):
        raise _refuse("images", "this gateway sends text only")
    _check_fields(body, _GENERATE_FIELDS | {"system", "template", "context", "images"})
    out: dict[str, Any] = {
        "model": body.get("model"),
        "prompt": body.get("prompt") or "",
        **_stream(body),
        **_options(body),
        **_response_format(body),
    }
    if _given(body.get("suffix")):
        out["suffix"] = body["suffix"]
    return out


def embed_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """``/api/embed``'s (or ``/api/embeddings``') body as ``/v1/embeddings``'.
    ``dimensions`` is applied here, to the answer, as Ollama does: not every server has it."""
    if _given(body.get("options")):
        raise _refuse("options", "/v1/embeddings takes none")
    if body.get("truncate") is True:
        raise _refuse("truncate", "such a node fails an input past its context instead")
    _check_fields(body, _EMBED_FIELDS | {"options"})
    raw = body.get("input", body.get("prompt"))
    if raw is None or raw == "":
        texts: list[str] = []
    elif isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list) and all(isinstance(t, str) for t in raw):
        texts = list(raw)
    else:
        raise InvalidRequestError("invalid input type")
    return {"model": body.get("model"), "input": texts}


# -- answers: OpenAI → Ollama ---------------------------------------------------------------


def _usage(answer: Mapping[str, Any]) -> dict[str, int]:
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return {}
    counts: dict[str, int] = {}
    pairs = (("prompt_eval_count", "prompt_tokens"), ("eval_count", "completion_tokens"))
    for ours, theirs in pairs:
        value = usage.get(theirs)
        if isinstance(value, int) and not isinstance(value, bool):
            counts[ours] = value
    return counts


def _done_reason(finish: object) -> str:
    return _DONE_REASONS.get(str(finish), str(finish or "stop"))


def _tool_calls(calls: object) -> list[dict[str, Any]]:
    """OpenAI's calls (arguments as a JSON string) as Ollama's (arguments as an object)."""
    found = []
    for call in calls if isinstance(calls, list) else []:
        function = (call or {}).get("function") or {}
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                arguments = {"arguments": arguments}  # what the model wrote, not a guess
        found.append({"function": {"name": function.get("name"), "arguments": arguments}})
    return found


def _durations(total_ns: int, first_ns: int | None = None) -> dict[str, int]:
    prompt_ns = first_ns if first_ns is not None else 0
    return {
        "total_duration": total_ns,
        "load_duration": 0,
        "prompt_eval_duration": prompt_ns,
        "eval_duration": max(total_ns - prompt_ns, 0),
    }


def _first_choice(answer: Mapping[str, Any]) -> dict[str, Any]:
    choices = answer.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def chat_answer(answer: Mapping[str, Any], model: str, total_ns: int) -> dict[str, Any]:
    """``/v1/chat/completions``' answer as ``/api/chat``'s."""
    choice = _first_choice(answer)
    message = choice.get("message") or {}
    out_message: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
    if message.get("reasoning_content"):
        out_message["thinking"] = message["reasoning_content"]
    calls = _tool_calls(message.get("tool_calls"))
    if calls:
        out_message["tool_calls"] = calls
    return {
        "model": model,
        "created_at": now_rfc3339(),
        "message": out_message,
        "done": True,
        "done_reason": _done_reason(choice.get("finish_reason")),
        **_durations(total_ns),
        **_usage(answer),
    }


def generate_answer(answer: Mapping[str, Any], model: str, total_ns: int) -> dict[str, Any]:
    """``/v1/completions``' answer as ``/api/generate``'s."""
    choice = _first_choice(answer)
    return {
        "model": model,
        "created_at": now_rfc3339(),
        "response": choice.get("text") or "",
        "done": True,
        "done_reason": _done_reason(choice.get("finish_reason")),
        **_durations(total_ns),
        **_usage(answer),
    }


def mean_pooled(vector: list[Any]) -> list[float]:
    """One vector: as it is, or the mean of per-token vectors."""
    if vector and isinstance(vector[0], list):
        width = len(vector[0])
        return [sum(float(row[i]) for row in vector) / len(vector) for i in range(width)]
    return [float(v) for v in vector]


def embedding_answer(
    answer: Mapping[str, Any], request: Mapping[str, Any], path: str, total_ns: int
) -> dict[str, Any]:
    """``/v1/embeddings``' answer as ``/api/embed``'s (or ``/api/embeddings``')."""
    data = answer.get("data")
    items = sorted(
        (d for d in data if isinstance(d, dict)) if isinstance(data, list) else [],
        key=lambda d: int(d.get("index") or 0),
    )
    vectors = [mean_pooled(d.get("embedding") or []) for d in items]
    model = str(request.get("model"))
    if path == "/api/embeddings":
        return {"embedding": vectors[0] if vectors else []}
    dimensions = request.get("dimensions")
    out = embed_answer(
        model,
        vectors,
        dimensions=dimensions if isinstance(dimensions, int) and dimensions > 0 else None,
        total_ns=total_ns,
    )
    out["load_duration"] = 0
    usage = answer.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        out["prompt_eval_count"] = usage["prompt_tokens"]
    return out


def error_answer(body: bytes, status: int) -> bytes:
    """A node's error in Ollama's shape, ``{"error": "..."}``: OpenAI's ``error.message``,
    FastAPI's ``detail``, or the body as it is."""
    text = body.decode(errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message: object = None
    if isinstance(data, dict):
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        message = message or data.get("detail") or data.get("message")
    return json.dumps({"error": str(message or text or f"HTTP {status}")}).encode()


# -- streams --------------------------------------------------------------------------------


@dataclass
class SseToNdjson:
    """Server-sent ``chat.completion.chunk`` (or ``text_completion``) events in, Ollama's
    NDJSON lines out. :meth:`feed` takes one event's data; :meth:`done` is the last line."""

    model: str
    chat: bool
    started_ns: int = field(default_factory=time.perf_counter_ns)
    first_ns: int | None = None
    finish: object = None
    counts: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    _calls: dict[int, dict[str, str]] = field(default_factory=dict)

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        if event.get("error"):
            return [{"error": json.loads(error_answer(json.dumps(event).encode(), 500))["error"]}]
        self.counts.update(_usage(event))
        choice = _first_choice(event)
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]
        if self.chat:
            delta = choice.get("delta") or {}
            for call in delta.get("tool_calls") or []:  # arguments come in pieces
                slot = self._calls.setdefault(int(call.get("index") or 0), {"name": "", "args": ""})
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["args"] += function.get("arguments") or ""
            text, thinking = delta.get("content") or "", delta.get("reasoning_content") or ""
        else:
            text, thinking = choice.get("text") or "", ""
        if not text and not thinking:
            return []
        self.chunks += 1
        if self.first_ns is None:
            self.first_ns = time.perf_counter_ns() - self.started_ns
        return [self._line(text, thinking)]

    def done(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        if self._calls:
            calls = [
                {"function": {"name": c["name"], "arguments": c["args"]}}
                for _, c in sorted(self._calls.items())
            ]
            lines.append(self._line("", "", _tool_calls(calls)))
        final = self._line("", "")
        final.update(
            done=True,
            done_reason=_done_reason(self.finish),
            **_durations(time.perf_counter_ns() - self.started_ns, self.first_ns),
        )
        final["eval_count"] = self.chunks
        final.update(self.counts)
        return [*lines, final]

    def _line(self, text: str, thinking: str, calls: list[Any] | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"model": self.model, "created_at": now_rfc3339()}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            if calls:
                message["tool_calls"] = calls
            item["message"] = message
        else:
            item["response"] = text
        item["done"] = False
        return item


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


# -- the gateway's per-node attempt ---------------------------------------------------------

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


def tags_of(models: Mapping[str, Any]) -> dict[str, Any]:
    """``GET /v1/models``' answer as an ``/api/tags`` answer (names only: no digest, size or
    details, which such a server does not tell)."""
    data = models.get("data")
    ids = [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")] if data else []
    return {"models": [{"name": i, "model": i} for i in ids]}


def tags_answer(node: NodeView) -> list[dict[str, Any]]:
    """The node's models as ``/api/tags`` (and ``/api/ps``) entries, from its last probe."""
    return [
        {"name": served, "model": served, "details": {"format": OPENAI}}
        for served in sorted(node.served.values())
    ]
