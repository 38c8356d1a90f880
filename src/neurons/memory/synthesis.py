"""How language memory asks an LLM to summarise what it found: the prompt that numbers the
hits ``[1]..[k]``, the citations read back out of the answer, and the :class:`Generator`
contract with its one real implementation, :class:`GatewayGenerator`, which sends the prompt
through the gateway's dispatch, so a synthesis is routed, retried and measured like any
``/api/generate`` a client sends.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neurons.client import error_message
from neurons.errors import InvalidRequestError, ModelNotFoundError, NodeError

if TYPE_CHECKING:
    from neurons.network.gateway import Gateway

__all__ = ["GatewayGenerator", "Generated", "Generator", "build_prompt", "citations"]

# What of each hit goes into the prompt: a small model's context is a few thousand tokens,
# and k hits of a long text each must still leave it room to answer.
PROMPT_CHARS_PER_HIT = 1200

_INSTRUCTIONS = (
    "Below are numbered notes from a memory, and a query. Using only these notes, write a "
    "short summary that answers the query. Cite each note you use by its number in square "
    "brackets, like [1] or [2][3]. If the notes do not answer the query, say so."
)
_CITATION = re.compile(r"\[(\d{1,3})\]")


@dataclass(frozen=True)
class Generated:
    """A model's answer to a prompt, with the node that gave it (None where unknown)."""

    text: str
    model: str
    node: str | None = None


class Generator(ABC):
    """Completes a prompt with a named model somewhere on the network."""

    @abstractmethod
    async def generate(self, model: str, prompt: str, options: Mapping[str, Any]) -> Generated:
        """The model's whole answer (not streamed); ``options`` are Ollama options."""


def build_prompt(query: str, texts: Sequence[str]) -> str:
    """The synthesis prompt: the instructions, the query, then the hits numbered from 1 in
    the order given (best first), each cut to :data:`PROMPT_CHARS_PER_HIT`.

    >>> lines = build_prompt("why?", ["because", "x" * 2000]).splitlines()
    >>> lines[-4:-2], len(lines[-2]), lines[-1]
    (['Notes:', '[1] because'], 1205, 'Summary:')
    """
    notes = []
    for number, text in enumerate(texts, start=1):
        flat = " ".join(text.split())
        if len(flat) > PROMPT_CHARS_PER_HIT:
            flat = flat[:PROMPT_CHARS_PER_HIT] + "…"
        notes.append(f"[{number}] {flat}")
    return "\n".join([_INSTRUCTIONS, "", f"Query: {query.strip()}", "", "Notes:", *notes,
                      "Summary:"])  # fmt: skip


def citations(summary: str, count: int) -> list[int]:
    """The note numbers (1..count) the summary cites, each once, in order of first mention.

    >>> citations("A [2], B [1][2], C [9] and [x].", 3)
    [2, 1]
    """
    seen: list[int] = []
    for match in _CITATION.finditer(summary):
        number = int(match.group(1))
        if 1 <= number <= count and number not in seen:
            seen.append(number)
    return seen


class GatewayGenerator(Generator):
    """``/api/generate`` through the gateway: the routing policy picks a healthy node that
    holds the model, failures move on to the next node, and the metrics count it."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def generate(self, model: str, prompt: str, options: Mapping[str, Any]) -> Generated:
        from neurons.network.gateway import Clock

        body = {"model": model, "prompt": prompt, "stream": False, "options": dict(options)}
        path = "/api/generate"
        upstream = await self.gateway.dispatch(
            path,
            json.dumps(body).encode(),
            model,
            Clock(),
            needed=self.gateway.needs(path, body),
        )
        try:
            if upstream.body is None:  # a stream after all: read it whole
                raw = b"".join([chunk async for chunk in upstream.chunks()])
            else:
                raw = upstream.body
        finally:
            await upstream.aclose()
        node = upstream.node.name
        if upstream.status == 404:
            raise ModelNotFoundError(error_message(raw, f"model {model!r} not found"))
        if upstream.status == 400:
            raise InvalidRequestError(error_message(raw, "the node refused the request"))
        if upstream.status >= 400:
            message = error_message(raw, f"HTTP {upstream.status}")
            raise NodeError(f"{node}: {message} (HTTP {upstream.status})")
        return Generated(_response_text(raw), model, node)


def _response_text(raw: bytes) -> str:
    """The answer of a non-streamed generate (one JSON object), or the ``response`` pieces
    of an NDJSON stream joined."""
    parts = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise NodeError(f"the node's answer is not JSON: {line[:200]!r}") from exc
        if isinstance(data, dict):
            if data.get("error"):
                raise NodeError(f"the node stopped: {data['error']}")
            parts.append(str(data.get("response") or ""))
    return "".join(parts)
