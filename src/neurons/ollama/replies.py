"""A model's streamed text, split as Ollama's chat handler splits it: thinking first, then
tool calls out of the rest, and what remains is content.

>>> reply = ReplyParser(thinking=("<think>", "</think>"), tool_tag="<tool_call>",
...                     tool_names=["add"])
>>> reply.add("<think>2+2</think>")
Piece(thinking='2+2', content='', tool_calls=[])
>>> reply.add('<tool_call>{"name": "add", "arguments": {"a": 2, "b": 2}}</tool_call>')
... # doctest: +ELLIPSIS
Piece(thinking='', content='', tool_calls=[{'id': 'call_...', 'function': {'index': 0, ...}}])
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from neurons.ollama.thinking import ThinkingParser
from neurons.ollama.tools import ToolParser

__all__ = ["Piece", "ReplyParser"]


@dataclass
class Piece:
    thinking: str = ""
    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.thinking or self.content or self.tool_calls)


class ReplyParser:
    def __init__(
        self,
        *,
        thinking: tuple[str, str] | None = None,
        prompt: str = "",
        tool_tag: str | None = None,
        tool_names: list[str] | None = None,
    ) -> None:
        self._thinking = None
        if thinking is not None and thinking[0] and thinking[1]:
            self._thinking = ThinkingParser(*thinking)
            # A template that opens the thinking block itself: the model starts inside it.
            if prompt.strip().endswith(thinking[0]):
                self._thinking.add(thinking[0])
        self._tools = ToolParser(tool_tag or "{", tool_names or []) if tool_names else None

    def add(self, text: str) -> Piece:
        """What the next piece of model text completes (possibly nothing yet)."""
        piece = Piece(content=text)
        if self._thinking is not None:
            piece.thinking, piece.content = self._thinking.add(text)
        if self._tools is not None and piece.content:
            calls, content = self._tools.add(piece.content)
            piece.content = content
            piece.tool_calls = [{"id": _call_id(), **call} for call in calls]
        return piece

    def finish(self) -> Piece:
        """At the end of generation: held-back text that was not a call."""
        if self._tools is None:
            return Piece()
        return Piece(content=self._tools.leftover())


def _call_id() -> str:
    # Ollama's toolCallId: "call_" and 8 random lowercase letters or digits.
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "call_" + "".join(secrets.choice(alphabet) for _ in range(8))
