"""The translation between Ollama's API and the OpenAI API's, for OpenAI-compatible nodes:
request bodies one way (400 for what cannot be said), answers and event streams the other.
Pure functions and one small stream state; :mod:`neurons.network.openai_nodes` says which
fields are mapped and which refused, and does the sending."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from neurons.errors import InvalidRequestError
from neurons.network.versions import embed_answer
from neurons.ollama.wire import now_rfc3339

__all__ = [
    "SseToNdjson",
    "chat_answer",
    "chat_body",
    "embed_body",
    "embedding_answer",
    "error_answer",
    "generate_answer",
    "generate_body",
    "mean_pooled",
]

# Ollama option → OpenAI field, for the options that mean the same thing on both sides.
_SAME_OPTIONS = ("temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty")
_MAPPED = sorted([*_SAME_OPTIONS, "num_predict"])
_MESSAGE_FIELDS = frozenset({"role", "content", "tool_calls", "tool_name"})
# Ollama's "done_reason" for each OpenAI "finish_reason" (a call ends a turn: Ollama says stop).
_DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop", "function_call": "stop"}


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
    if raw is None or raw == "" or raw == []:
        texts = [""]  # Ollama loads the model and answers no vectors: the same call, here
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
    if request.get("input", request.get("prompt")) in (None, "", []):
        vectors = []  # the one empty text sent only to load the model (embed_body)
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
