"""Translate OpenAI API requests into Ollama API requests, and Ollama answers back into OpenAI ones.

Clients written against OpenAI (the ``openai`` package, LangChain, editors) should be able to use
the network. Nodes speak only the Ollama API, so the gateway translates at the edge. It does so the
way Ollama's own middleware does (``openai/openai.go``, ``middleware/openai.go``), which means a
``/v1`` call through the gateway behaves like the same call made to a single Ollama. The module is
pure: it takes dicts and returns dicts and does no I/O. That keeps the route handlers thin and lets
every rule here be tested without a server.

It differs from Ollama on purpose in a few places:

* Content parts of one message become *one* Ollama message (the text parts are joined with newlines
  and the images listed together), where Ollama makes a message per part.
* ``developer`` is read as ``system``. An empty ``function.arguments`` string reads as ``{}``.
* A single-element list of prompts is accepted by ``/v1/completions`` (LangChain sends that).
* ``finish_reason`` is always a value the client accepts. ``done_reason`` ``load`` and a missing
  ``done_reason`` become ``stop``.
* Tool calls with no id get a ``call_...`` id, because OpenAI clients need one to answer the call.
* ``tool_choice`` is carried out (Ollama ignores it): ``"none"`` holds the tools back, and
  ``"required"`` or a named function makes the node decode one call under a grammar
  (:mod:`neurons.network.openai_tools`).
* Thinking goes out as ``reasoning_content`` (what OpenAI-compatible servers and their clients
  read) as well as Ollama's ``reasoning``; either is read back from an assistant message.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import numpy as np

from neurons.network.openai_errors import OpenAIRequestError, error_body, sse_error
from neurons.network.openai_errors import bad as _bad
from neurons.network.openai_tools import (
    forced_calls,
    forced_tools,
    parse_call,
    resolve_tool_choice,
    tool_calls_in,
    tool_calls_out,
    tool_name,
)

__all__ = [
    "SSE_DONE",
    "ChatStream",
    "CompletionStream",
    "OpenAIRequestError",
    "chat_request",
    "chat_response",
    "completion_request",
    "completion_response",
    "embedding_request",
    "embedding_response",
    "encoding_format",
    "error_body",
    "forced_tools",
    "include_usage",
    "model_response",
    "models_response",
    "new_id",
    "owned_by",
    "sse",
    "sse_error",
]

JSON = dict[str, Any]

SSE_DONE: Final = b"data: [DONE]\n\n"
SYSTEM_FINGERPRINT: Final = "fp_ollama"

_ROLES: Final = {"developer": "system"} | {r: r for r in ("system", "user", "assistant", "tool")}
_IMAGE_PREFIXES: Final = (
    *(f"data:image/{kind};base64," for kind in ("jpeg", "jpg", "png", "webp")),
    "data:;base64,",  # unadorned base64, as /api/chat takes it
)
# A forced call's arguments stream in pieces this long. OpenAI sends a few tokens per delta; in
# one piece, a client that wrongly expects the whole call in one delta would work here only.
_ARGUMENT_PIECE: Final = 32
_EFFORTS: Final = ("high", "medium", "low", "max", "none")
_ENCODINGS: Final = ("float", "base64")


# --- field readers ------------------------------------------------------------------------------


def _object(body: object) -> JSON:
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    return body


_KINDS: Final[dict[str, tuple[type, ...]]] = {
    "a number": (int, float),
    "an integer": (int,),
    "a boolean": (bool,),
    "a string": (str,),
    "an array": (list,),
    "an object": (dict,),
}


def _get(body: JSON, key: str, noun: str) -> Any:
    """``body[key]``, or None when absent or null; a 400 when it is not ``noun``."""
    value, kinds = body.get(key), _KINDS[noun]
    if value is not None and (
        not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
    ):
        raise _bad(f"'{key}' must be {noun}")
    return value


def _model(body: JSON) -> str:
    model = _get(body, "model", "a string")
    if not model:
        raise _bad("model is required")
    return str(model)


def _options(body: JSON) -> JSON:
    """The sampling options both ``/v1/chat/completions`` and ``/v1/completions`` take."""
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise _bad("'stop' must be a string or an array of strings")
    max_tokens = _get(body, "max_completion_tokens", "an integer")
    given = {
        "stop": stop,
        "num_predict": _get(body, "max_tokens", "an integer") if max_tokens is None else max_tokens,
        "seed": _get(body, "seed", "an integer"),
        "frequency_penalty": _get(body, "frequency_penalty", "a number"),
        "presence_penalty": _get(body, "presence_penalty", "a number"),
    }
    options = {key: value for key, value in given.items() if value is not None}
    # OpenAI's defaults, not Ollama's (0.8 / 0.9): the client expects OpenAI's.
    for key in ("temperature", "top_p"):
        value = _get(body, key, "a number")
        options[key] = 1.0 if value is None else value
    return options


def include_usage(body: object) -> bool:
    """Whether a streamed answer should end with a usage chunk (``stream_options``)."""
    if not isinstance(body, dict):
        return False
    options = _get(body, "stream_options", "an object") or {}
    return _get(options, "include_usage", "a boolean") is True


# --- requests ---------------------------------------------------------------------------------


def chat_request(body: object) -> JSON:
    """An OpenAI ``/v1/chat/completions`` body as an Ollama ``/api/chat`` body."""
    req = _object(body)
    model = _model(req)
    raw = req.get("messages")
    if raw is None or raw == []:
        raise _bad("[] is too short - 'messages'")
    if not isinstance(raw, list):
        raise _bad("'messages' must be an array")
    include_usage(req)  # validates stream_options
    out: JSON = {
        "model": model,
        "messages": [_message(msg, f"messages[{i}]", raw) for i, msg in enumerate(raw)],
        "stream": _get(req, "stream", "a boolean") is True,
        "options": _options(req),
    }
    fmt = _format(_get(req, "response_format", "an object"))
    _get(req, "parallel_tool_calls", "a boolean")  # a forced answer is one call either way
    choice = resolve_tool_choice(req.get("tool_choice"), _get(req, "tools", "an array") or [])
    fmt = choice.format or fmt  # a forced call has no text for response_format to shape
    if fmt is not None:
        out["format"] = fmt
    if choice.tools:
        out["tools"] = choice.tools
    think = _think(req)
    if think is None and choice.forced:
        # The call's grammar leaves no room for thinking, and a node that applies ``format``
        # from the first token (the embedded neuron; Ollama waits for the thinking to end)
        # would write the call as thinking. Asked for reasoning, the client gets what it asked.
        think = False
    if think is not None:
        out["think"] = think
    return out


def _message(msg: object, where: str, history: list[Any]) -> JSON:
    if not isinstance(msg, dict):
        raise _bad(f"{where} must be an object")
    role = msg.get("role")
    if not isinstance(role, str) or role.lower() not in _ROLES:
        raise _bad(f"{where}.role must be one of system, user, assistant, tool; got {role!r}")
    content, images = _content(msg.get("content"), where)
    tool_calls = tool_calls_in(msg.get("tool_calls"), where)
    if content is None and not tool_calls:
        raise _bad(f"invalid message content type: {where}.content is missing")
    out: JSON = {"role": _ROLES[role.lower()], "content": content or ""}
    if images:
        out["images"] = images
    if tool_calls:
        out["tool_calls"] = tool_calls
    thinking = msg.get("reasoning") or msg.get("reasoning_content")
    if isinstance(thinking, str) and thinking:
        out["thinking"] = thinking
    if out["role"] == "tool":
        call_id = msg.get("tool_call_id")
        name = msg.get("name") or (tool_name(history, call_id) if call_id else None)
        if isinstance(name, str) and name:
            out["tool_name"] = name
        if isinstance(call_id, str) and call_id:
            out["tool_call_id"] = call_id
    return out


def _content(value: object, where: str) -> tuple[str | None, list[str]]:
    if value is None or isinstance(value, str):
        return value, []
    if not isinstance(value, list):
        raise _bad(f"{where}.content must be a string or an array of content parts")
    texts: list[str] = []
    images: list[str] = []
    for k, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            images.append(_image(part.get("image_url"), f"{where}.content[{k}]"))
        else:
            raise _bad(
                f"invalid message format: {where}.content[{k}] is not a text or image_url part"
            )
    return "\n".join(texts), images


def _image(value: object, where: str) -> str:
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str):
        raise _bad(f"invalid message format: {where}.image_url has no url")
    for prefix in _IMAGE_PREFIXES:
        if url.startswith(prefix):
            data = url[len(prefix) :]
            break
    else:
        raise _bad(
            f"invalid image input: {where} must be a base64 data URL "
            "(data:image/png;base64,...) of a jpeg, png or webp image"
        )
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"invalid image input: {where} is not valid base64") from None
    return data


def _format(value: JSON | None) -> str | JSON | None:
    if value is None:
        return None
    kind = str(value.get("type", "")).strip().lower()
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _bad("'response_format.json_schema.schema' must be an object")
        return schema
    return None  # "text" and anything newer: no constraint, as Ollama does


def _think(req: JSON) -> bool | str | None:
    reasoning = req.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if effort is None:
        effort = req.get("reasoning_effort")
    if effort is None or effort == "":
        return None
    if effort not in _EFFORTS:
        raise _bad(
            f"invalid reasoning value: '{effort}' "
            '(must be "high", "medium", "low", "max", or "none")'
        )
    return False if effort == "none" else str(effort)


def completion_request(body: object) -> JSON:
    """An OpenAI ``/v1/completions`` body as an Ollama ``/api/generate`` body."""
    req = _object(body)
    model = _model(req)
    prompt = req.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _bad("'prompt' must be a string (token arrays and batches are not supported)")
    suffix = _get(req, "suffix", "a string")
    include_usage(req)  # validates stream_options
    out: JSON = {
        "model": model,
        "prompt": prompt,
        "stream": _get(req, "stream", "a boolean") is True,
        "options": _options(req),
    }
    if suffix:
        out["suffix"] = suffix
    return out


def encoding_format(body: object) -> str:
    """The embeddings' wire format the client asked for: ``float`` (default) or ``base64``."""
    value = body.get("encoding_format") if isinstance(body, dict) else None
    if value is None or value == "":
        return "float"
    if not isinstance(value, str) or value.lower() not in _ENCODINGS:
        raise _bad(
            f"Invalid value for 'encoding_format' = {value}. Supported values: ['float', 'base64']."
        )
    return value.lower()


def embedding_request(body: object) -> JSON:
    """An OpenAI ``/v1/embeddings`` body as an Ollama ``/api/embed`` body."""
    req = _object(body)
    model = _model(req)
    encoding_format(req)
    value = req.get("input")
    if value == "":
        value = [""]
    if value is None or value == []:
        raise _bad("invalid input")
    if not isinstance(value, str) and not (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    ):
        raise _bad("invalid input type: 'input' must be a string or an array of strings")
    out: JSON = {"model": model, "input": value}
    dimensions = _get(req, "dimensions", "an integer")
    if dimensions is not None:
        if dimensions < 1:
            raise _bad("'dimensions' must be a positive integer")
        out["dimensions"] = dimensions
    return out


# --- responses --------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    """``chatcmpl-<digits>`` / ``cmpl-<digits>``, Ollama's shape with more randomness."""
    return f"{prefix.rstrip('-')}-{secrets.randbelow(10**12)}"


def _finish_reason(done_reason: object, tool_calls: bool) -> str:
    if tool_calls:
        return "tool_calls"
    return "length" if done_reason == "length" else "stop"


def _usage(ollama: JSON) -> JSON:
    prompt = int(ollama.get("prompt_eval_count") or 0)
    completion = int(ollama.get("eval_count") or 0)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return {**usage, "total_tokens": prompt + completion}


def _envelope(object: str, id: str, created: int, model: str, choices: list[JSON]) -> JSON:
    return {
        "id": id,
        "object": object,
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": choices,
    }


def _reasoning(thinking: object) -> JSON:
    """Thinking as ``reasoning_content`` for OpenAI clients and as Ollama's ``reasoning``."""
    return {"reasoning": thinking, "reasoning_content": thinking} if thinking else {}


def chat_response(
    ollama: JSON,
    *,
    id: str,
    created: int,
    model: str | None = None,
    forced: Sequence[str] = (),
) -> JSON:
    """A non-streamed ``/api/chat`` answer as a ``chat.completion``.

    ``forced`` (:func:`forced_tools`) names the functions the answer must call; the node's content
    is then read as the call when the node did not parse it itself.
    """
    message = ollama.get("message") or {}
    calls, content = message.get("tool_calls"), message.get("content") or ""
    if forced:
        calls, content = forced_calls(message, forced)
    tool_calls = tool_calls_out(calls)
    reply: JSON = {"role": "assistant", "content": content}
    if tool_calls:
        reply["tool_calls"] = tool_calls
    reply.update(_reasoning(message.get("thinking")))
    reason = _finish_reason(ollama.get("done_reason"), bool(tool_calls))
    choice = {"index": 0, "message": reply, "finish_reason": reason, "logprobs": None}
    model = model or ollama.get("model", "")
    return {**_envelope("chat.completion", id, created, model, [choice]), "usage": _usage(ollama)}


def completion_response(ollama: JSON, *, id: str, created: int, model: str | None = None) -> JSON:
    """A non-streamed ``/api/generate`` answer as a ``text_completion``."""
    reason = _finish_reason(ollama.get("done_reason"), False)
    text = ollama.get("response") or ""
    choice = {"text": text, "index": 0, "finish_reason": reason, "logprobs": None}
    model = model or ollama.get("model", "")
    return {**_envelope("text_completion", id, created, model, [choice]), "usage": _usage(ollama)}


def embedding_response(ollama: JSON, *, model: str, encoding_format: str = "float") -> JSON:
    """An ``/api/embed`` answer as OpenAI's embedding list; base64 is little-endian float32."""
    data: list[JSON] = []
    for index, vector in enumerate(ollama.get("embeddings") or []):
        embedding: list[float] | str = vector
        if encoding_format.lower() == "base64":
            raw = np.asarray(vector, dtype="<f4").tobytes()
            embedding = base64.b64encode(raw).decode("ascii")
        data.append({"object": "embedding", "embedding": embedding, "index": index})
    tokens = int(ollama.get("prompt_eval_count") or 0)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def owned_by(name: str) -> str:
    """The namespace of ``[host/][namespace/]model[:tag]``; ``library`` when there is none."""
    path = name.split("@", 1)[0]
    if path.rfind(":") > path.rfind("/"):
        path = path[: path.rfind(":")]
    parts = path.split("/")
    return parts[-2] if len(parts) >= 2 and parts[-2] else "library"


def _unix(value: object) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value).timestamp())
        except ValueError:
            return 0
    return 0


def model_response(tag_model: JSON) -> JSON:
    """One ``/api/tags`` entry as an OpenAI ``model`` object."""
    name = str(tag_model.get("name") or tag_model.get("model") or "")
    return {
        "id": name,
        "object": "model",
        "created": _unix(tag_model.get("modified_at")),
        "owned_by": owned_by(name),
    }


def models_response(tags_models: list[JSON]) -> JSON:
    """``/api/tags``'s ``models`` as OpenAI's model list."""
    return {"object": "list", "data": [model_response(m) for m in tags_models]}


# --- streaming --------------------------------------------------------------------------------


def sse(obj: JSON) -> bytes:
    """One server-sent event carrying ``obj``."""
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


class _Stream:
    """Turns Ollama NDJSON chunks into OpenAI chunks; subclasses say what a choice looks like."""

    object: str = ""

    def __init__(self, id: str, created: int, model: str, include_usage: bool = False) -> None:
        self.id = id
        self.created = created
        self.model = model
        self.include_usage = include_usage
        self.done = False

    def _envelope(self, choices: list[JSON]) -> JSON:
        chunk = _envelope(self.object, self.id, self.created, self.model, choices)
        if self.include_usage:  # as OpenAI does: null everywhere but on the last chunk
            chunk["usage"] = None
        return chunk

    def _choice(self, ollama_chunk: JSON) -> JSON | None:
        raise NotImplementedError

    def _final_choices(self, ollama_chunk: JSON) -> list[JSON]:
        """The choices of the last chunks; the last one carries ``finish_reason``."""
        raise NotImplementedError

    def feed(self, ollama_chunk: JSON) -> list[JSON]:
        """The OpenAI chunks (or one error object) that one Ollama NDJSON line becomes."""
        if self.done:
            return []
        if "error" in ollama_chunk:
            self.done = True
            return [sse_error(str(ollama_chunk["error"]))]
        chunks: list[JSON] = []
        choice = self._choice(ollama_chunk)
        if choice is not None:
            chunks.append(self._envelope([choice]))
        if ollama_chunk.get("done"):
            self.done = True
            chunks.extend(self._envelope([c]) for c in self._final_choices(ollama_chunk))
            if self.include_usage:
                chunks.append({**self._envelope([]), "usage": _usage(ollama_chunk)})
        return chunks


class ChatStream(_Stream):
    """``/api/chat`` stream → ``chat.completion.chunk`` objects.

    The first chunk's delta carries ``role: "assistant"``; ``finish_reason`` comes alone, in a
    chunk with an empty delta; with ``include_usage`` a last chunk has no choices and the usage.

    With ``forced`` (:func:`forced_tools`) the content is the call's JSON, which is no use to a
    client until it is whole: it is held back, and at the end goes out the way OpenAI streams a
    call, a delta with the call's index, id and name (``arguments`` empty), then deltas with
    pieces of ``arguments``. Held content that is no call (cut off) goes out as content then.
    """

    object = "chat.completion.chunk"

    def __init__(
        self,
        id: str,
        created: int,
        model: str,
        include_usage: bool = False,
        forced: Sequence[str] = (),
    ) -> None:
        super().__init__(id, created, model, include_usage)
        self.forced = tuple(forced)
        self._held = ""
        self._role_sent = False
        self._tool_calls = 0

    def _choice(self, ollama_chunk: JSON) -> JSON | None:
        message = ollama_chunk.get("message") or {}
        delta: JSON = {}
        content = message.get("content") or ""
        if self.forced:
            self._held += content
        elif content:
            delta["content"] = content
        delta.update(_reasoning(message.get("thinking")))
        calls = tool_calls_out(message.get("tool_calls"), first_index=self._tool_calls)
        if calls:
            delta["tool_calls"] = calls
            self._tool_calls += len(calls)
        if not self._role_sent:
            self._role_sent = True
            delta = {"role": "assistant", "content": "", **delta}
        elif not delta:
            return None
        return _delta(delta)

    def _final_choices(self, ollama_chunk: JSON) -> list[JSON]:
        choices = [_delta(delta) for delta in self._release()]
        reason = _finish_reason(ollama_chunk.get("done_reason"), self._tool_calls > 0)
        return [*choices, _delta({}, reason)]

    def _release(self) -> list[JSON]:
        """The deltas that the content held back from a forced answer becomes."""
        held, self._held = self._held, ""
        call = parse_call(held, self.forced) if self._tool_calls == 0 else None
        if call is None:  # no call, or the node's own calls went out already
            return [{"content": held}] if held else []
        [entry] = tool_calls_out([call], first_index=0)
        self._tool_calls = 1
        function, arguments = entry["function"], entry["function"]["arguments"]
        head = {**entry, "function": {"name": function["name"], "arguments": ""}}
        pieces = [
            {"index": 0, "function": {"arguments": arguments[at : at + _ARGUMENT_PIECE]}}
            for at in range(0, len(arguments), _ARGUMENT_PIECE)
        ]
        return [{"tool_calls": [delta]} for delta in (head, *pieces)]


def _delta(delta: JSON, finish_reason: str | None = None) -> JSON:
    return {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}


class CompletionStream(_Stream):
    """``/api/generate`` stream → ``text_completion`` chunks, shaped like :class:`ChatStream`'s."""

    object = "text_completion"

    def _choice(self, ollama_chunk: JSON) -> JSON | None:
        text = ollama_chunk.get("response") or ""
        if not text:
            return None
        return {"text": text, "index": 0, "finish_reason": None, "logprobs": None}

    def _final_choices(self, ollama_chunk: JSON) -> list[JSON]:
        reason = _finish_reason(ollama_chunk.get("done_reason"), False)
        return [{"text": "", "index": 0, "finish_reason": reason, "logprobs": None}]
