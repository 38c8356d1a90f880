"""Ollama inference routes: /api/generate, /api/chat, /api/embed, /api/embeddings."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from neurons.errors import InvalidRequestError, ModelNotFoundError
from neurons.neuron.engine import GenerationResult, TokenEvent
from neurons.neuron.prompt import PromptInput
from neurons.neuron.service import Neuron, Prepared
from neurons.ollama.capabilities import THINKING, check_capabilities, required_capabilities
from neurons.ollama.messages import Message, parse_messages, parse_tools
from neurons.ollama.wire import (
    ndjson_response,
    now_rfc3339,
    prepend,
    read_json,
    required_model,
    wants_stream,
)

__all__ = ["router"]

router = APIRouter()


def _neuron(request: Request) -> Neuron:
    neuron: Neuron = request.app.state.neuron
    return neuron


def _check_logprobs(body: dict[str, Any]) -> int | None:
    top = body.get("top_logprobs")
    if top is not None and (not isinstance(top, int) or not 0 <= top <= 20):
        raise InvalidRequestError("top_logprobs must be between 0 and 20")
    if body.get("logprobs") or top:
        return int(top or 0)
    return None


def _metrics(result: GenerationResult, prepared: Prepared, load_ns: int) -> dict[str, Any]:
    return {
        "done_reason": result.done_reason,
        "total_duration": time.perf_counter_ns() - prepared.started_ns,
        "load_duration": load_ns,
        "prompt_eval_count": result.prompt_eval_count,
        "prompt_eval_duration": result.prompt_eval_duration,
        "eval_count": result.eval_count,
        "eval_duration": result.eval_duration,
    }


async def _load_response(
    neuron: Neuron, prepared: Prepared, body: dict[str, Any], chat: bool
) -> Response:
    load_ns = await neuron.load_only(prepared)
    reason = "unload" if prepared.keep_alive == 0 else "load"
    payload = _chunk(body["model"], chat, "", done=True)
    payload["done_reason"] = reason
    if reason == "load":
        payload["load_duration"] = load_ns
        payload["total_duration"] = time.perf_counter_ns() - prepared.started_ns
    return JSONResponse(payload)


def _chunk(
    name: str, chat: bool, text: str, done: bool, event: TokenEvent | None = None
) -> dict[str, Any]:
    """One Ollama response object: ``response`` for generate, ``message`` for chat; thinking
    and tool calls only when there are some."""
    chunk: dict[str, Any] = {"model": name, "created_at": now_rfc3339()}
    thinking = event.thinking if event is not None else ""
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        if event is not None and event.tool_calls:
            message["tool_calls"] = event.tool_calls
        chunk["message"] = message
    else:
        chunk["response"] = text
        if thinking:
            chunk["thinking"] = thinking
    chunk["done"] = done
    return chunk


def _think(body: dict[str, Any], prepared: Prepared, action: str) -> bool | str | None:
    """Checks the request against the model's capabilities (Ollama's 400s) and returns
    ``think``: on by default for a model that can think, as in Ollama."""
    think = body.get("think")
    if think is not None and not isinstance(think, bool | str):
        raise InvalidRequestError("think must be a boolean or a level")
    if isinstance(think, str) and think not in ("high", "medium", "low"):
        raise InvalidRequestError(
            f'invalid think value: "{think}" (must be "high", "medium", "low", true, or false)'
        )
    needed = required_capabilities(f"/api/{action}", body)
    check_capabilities(body["model"], prepared.capabilities, needed, action)
    if think is None and THINKING in prepared.capabilities:
        return True
    return think


async def _run(
    request: Request,
    events: AsyncGenerator[Any, None],
    name: str,
    prepared: Prepared,
    *,
    chat: bool,
    with_context: bool,
    stream: bool,
) -> Response:
    """Drive a generation: the first event (load duration) is awaited before any byte is
    sent, so queue-full, load and template errors get their proper HTTP status."""
    load_ns: int = await events.__anext__()

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        async for event in events:
            if isinstance(event, TokenEvent):
                chunk = _chunk(name, chat, event.text, done=False, event=event)
                if event.logprobs:
                    chunk["logprobs"] = event.logprobs
                yield chunk
            elif isinstance(event, GenerationResult):
                chunk = _chunk(name, chat, "", done=True)
                chunk.update(_metrics(event, prepared, load_ns))
                if with_context:
                    chunk["context"] = event.context
                yield chunk

    if stream:
        iterator = chunks()
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:  # pragma: no cover - a result always comes last
            first = {}
        return ndjson_response(prepend(first, iterator))

    collected: list[dict[str, Any]] = []
    consumer = asyncio.ensure_future(_collect(chunks(), collected))
    while not consumer.done():
        await asyncio.wait({consumer}, timeout=0.25)
        if not consumer.done() and await request.is_disconnected():
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            await events.aclose()
            return Response(status_code=499)
    consumer.result()
    return JSONResponse(_merge(collected))


async def _collect(chunks: AsyncIterator[dict[str, Any]], into: list[dict[str, Any]]) -> None:
    async for chunk in chunks:
        into.append(chunk)


def _merge(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold a stream into one response, as Ollama's non-streamed mode does."""
    final = dict(chunks[-1])
    if "response" in final:
        final["response"] = "".join(c.get("response", "") for c in chunks)
    if "message" in final:
        message = final["message"] = dict(final["message"])
        message["content"] = "".join(c["message"].get("content", "") for c in chunks)
        thinking = "".join(c["message"].get("thinking", "") for c in chunks)
        if thinking:
            message["thinking"] = thinking
        calls = [call for c in chunks for call in c["message"].get("tool_calls") or []]
        if calls:
            message["tool_calls"] = calls
    elif any(c.get("thinking") for c in chunks):
        final["thinking"] = "".join(c.get("thinking", "") for c in chunks)
    logprobs = [lp for c in chunks for lp in c.get("logprobs") or []]
    if logprobs:
        final["logprobs"] = logprobs
    return final


@router.post("/api/generate")
async def generate(request: Request) -> Response:
    body = await read_json(request)
    name = body.get("model") or ""
    if not isinstance(name, str) or not name:
        raise ModelNotFoundError("model '' not found")
    top_logprobs = _check_logprobs(body)
    raw = bool(body.get("raw"))
    if raw and (body.get("template") or body.get("system") or body.get("context")):
        raise InvalidRequestError("raw mode does not support template, system, or context")
    neuron = _neuron(request)
    prepared = neuron.prepare(body)
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str):
        raise InvalidRequestError("prompt must be a string")
    suffix = body.get("suffix") or ""
    if not isinstance(suffix, str):
        raise InvalidRequestError("suffix must be a string")
    think = _think(body, prepared, "generate")
    if not prompt:
        return await _load_response(neuron, prepared, body, chat=False)
    context = body.get("context")
    if context is not None and not (
        isinstance(context, list) and all(isinstance(t, int) for t in context)
    ):
        raise InvalidRequestError("context must be a list of token ids")
    system = body.get("system") if isinstance(body.get("system"), str) else prepared.model.system
    messages = [Message("system", system)] if system else []
    messages.append(Message("user", prompt))
    events = neuron.generate(
        prepared,
        prompt=None if raw else PromptInput(messages, think=think, suffix=suffix),
        raw_prompt=prompt if raw else None,
        context=context,
        fmt=body.get("format") or None,
        top_logprobs=top_logprobs,
        template=body["template"] if isinstance(body.get("template"), str) else None,
    )
    return await _run(
        request, events, name, prepared, chat=False, with_context=not raw, stream=wants_stream(body)
    )


def _chat_messages(messages: list[Message], prepared: Prepared) -> list[Message]:
    """The Modelfile's MESSAGEs and SYSTEM before the request's own."""
    model = prepared.model
    history = [Message(str(m["role"]), str(m.get("content", ""))) for m in model.messages]
    if model.system and not any(m.role == "system" for m in messages):
        history.insert(0, Message("system", model.system))
    return history + messages


@router.post("/api/chat")
async def chat(request: Request) -> Response:
    body = await read_json(request)
    name = required_model(body)
    top_logprobs = _check_logprobs(body)
    neuron = _neuron(request)
    prepared = neuron.prepare(body)
    messages = parse_messages(body.get("messages"))
    tools = parse_tools(body.get("tools"))
    think = _think(body, prepared, "chat")
    if not messages:
        return await _load_response(neuron, prepared, body, chat=True)
    events = neuron.generate(
        prepared,
        prompt=PromptInput(_chat_messages(messages, prepared), tools, think),
        raw_prompt=None,
        context=None,
        fmt=body.get("format") or None,
        top_logprobs=top_logprobs,
    )

    return await _run(
        request, events, name, prepared, chat=True, with_context=False, stream=wants_stream(body)
    )


def _normalize(vector: list[float], dimensions: int | None) -> list[float]:
    if dimensions:
        vector = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else vector


@router.post("/api/embed")
async def embed(request: Request) -> Response:
    body = await read_json(request)
    required_model(body)
    raw_input = body.get("input")
    if raw_input is None or raw_input == "":
        texts: list[str] = []
    elif isinstance(raw_input, str):
        texts = [raw_input]
    elif isinstance(raw_input, list) and all(isinstance(t, str) for t in raw_input):
        texts = list(raw_input)
    else:
        raise InvalidRequestError("invalid input type")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 0):
        raise InvalidRequestError("dimensions must be a positive integer")
    neuron = _neuron(request)
    prepared = neuron.prepare(body)
    if not texts:
        await neuron.load_only(prepared, embedding=True)
        return JSONResponse({"model": body["model"], "embeddings": []})
    truncate = body.get("truncate") is not False
    vectors, count, load_ns = await neuron.embed(prepared, texts, truncate)
    return JSONResponse(
        {
            "model": body["model"],
            "embeddings": [_normalize(v, dimensions) for v in vectors],
            "total_duration": time.perf_counter_ns() - prepared.started_ns,
            "load_duration": load_ns,
            "prompt_eval_count": count,
        }
    )


@router.post("/api/embeddings")
async def embeddings(request: Request) -> Response:
    body = await read_json(request)
    required_model(body)
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str):
        raise InvalidRequestError("prompt must be a string")
    neuron = _neuron(request)
    prepared = neuron.prepare(body)
    if not prompt:
        await neuron.load_only(prepared, embedding=True)
        return JSONResponse({"embedding": []})
    vectors, _, _ = await neuron.embed(prepared, [prompt], truncate=True)
    return JSONResponse({"embedding": vectors[0]})
