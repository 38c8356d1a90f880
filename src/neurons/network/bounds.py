"""Request bounds the gateway checks once, where it parses a request's body: list lengths
(``messages``, ``tools``, embed inputs, ``images``, ``stop``) and the sizes a request asks
of a node (``num_predict``, ``num_ctx``; OpenAI's ``max_tokens``). Past a bound the answer is
a 400 naming the field and the limit: Ollama's ``{"error": ...}`` on ``/api/*``
(:func:`check_ollama` raises :class:`~neurons.errors.InvalidRequestError`), OpenAI's error
object with ``param`` on ``/v1/*`` (:func:`check_openai` raises
:class:`~neurons.network.openai_errors.OpenAIRequestError`).

Only sizes are checked here. A field of the wrong type passes: the node (or the OpenAI
translation) answers it in its own words. ``num_predict`` -1 (no limit) and -2 (fill the
context) stay valid, as Ollama allows.

>>> bounds = Bounds(max_list_items=2, max_num_predict=100, max_num_ctx=4096)
>>> check_ollama({"model": "m", "options": {"num_predict": -1, "num_ctx": 2048}}, bounds)
>>> check_ollama({"model": "m", "messages": [{}, {}, {}]}, bounds)
Traceback (most recent call last):
...
neurons.errors.InvalidRequestError: too many items in messages: 3, the limit is 2
>>> check_openai({"model": "m", "max_tokens": 101}, bounds)
Traceback (most recent call last):
...
neurons.network.openai_errors.OpenAIRequestError: max_tokens too large: 101, the limit is 100
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neurons.config import Settings
from neurons.errors import InvalidRequestError
from neurons.network.openai_errors import OpenAIRequestError

__all__ = ["Bounds", "check_ollama", "check_openai"]


@dataclass(frozen=True, slots=True)
class Bounds:
    max_list_items: int
    max_num_predict: int
    max_num_ctx: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Bounds:
        return cls(settings.max_list_items, settings.max_num_predict, settings.max_num_ctx)


class _Excess(Exception):
    """A bound passed: ``field`` names it as the client wrote it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def check_ollama(body: dict[str, Any], bounds: Bounds) -> None:
    """An Ollama-API request body (``/api/generate``, ``/api/chat``, ``/api/embed``, ...)
    within ``bounds``, or :class:`InvalidRequestError`."""
    try:
        _ollama(body, bounds)
    except _Excess as excess:
        raise InvalidRequestError(excess.message) from None


def check_openai(body: object, bounds: Bounds) -> None:
    """An OpenAI-API request body (chat, completions, embeddings) within ``bounds``, or a 400
    :class:`OpenAIRequestError` whose ``param`` is the field at fault."""
    if not isinstance(body, dict):
        return  # the translation refuses it in OpenAI's words
    try:
        _openai(body, bounds)
    except _Excess as excess:
        raise OpenAIRequestError(excess.message, 400, excess.field) from None


def _ollama(body: dict[str, Any], bounds: Bounds) -> None:
    limit = bounds.max_list_items
    messages = body.get("messages")
    _items(messages, "messages", limit)
    if isinstance(messages, list):
        for index, message in enumerate(messages):
            if isinstance(message, dict):
                _items(message.get("images"), f"messages[{index}].images", limit)
    _items(body.get("tools"), "tools", limit)
    _items(body.get("input"), "input", limit)
    _items(body.get("images"), "images", limit)
    options = body.get("options")
    if isinstance(options, dict):
        _items(options.get("stop"), "options.stop", limit)
        _number(options.get("num_predict"), "options.num_predict", bounds.max_num_predict)
        _number(options.get("num_ctx"), "options.num_ctx", bounds.max_num_ctx)


def _openai(body: dict[str, Any], bounds: Bounds) -> None:
    limit = bounds.max_list_items
    messages = body.get("messages")
    _items(messages, "messages", limit)
    if isinstance(messages, list):
        for index, message in enumerate(messages):
            if isinstance(message, dict):  # text and image parts
                _items(message.get("content"), f"messages[{index}].content", limit)
    _items(body.get("tools"), "tools", limit)
    _items(body.get("input"), "input", limit)
    _items(body.get("stop"), "stop", limit)
    for field in ("max_tokens", "max_completion_tokens"):
        _number(body.get(field), field, bounds.max_num_predict)


def _items(value: object, field: str, limit: int) -> None:
    if isinstance(value, list) and len(value) > limit:
        raise _Excess(field, f"too many items in {field}: {len(value)}, the limit is {limit}")


def _number(value: object, field: str, limit: int) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > limit:
        raise _Excess(field, f"{field} too large: {value}, the limit is {limit}")
