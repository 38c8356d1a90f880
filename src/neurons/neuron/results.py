"""What a generation yields: text pieces as they are decided, then one result with Ollama's
counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["GenerationResult", "TokenEvent"]


@dataclass
class TokenEvent:
    """A piece of the reply: ``text`` is content; with thinking or tools asked for, the
    thinking and the completed tool calls it held are split out of it."""

    text: str
    logprobs: list[dict[str, Any]] | None = None
    thinking: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.text or self.thinking or self.tool_calls or self.logprobs)


@dataclass
class GenerationResult:
    done_reason: str
    prompt_eval_count: int  # prompt tokens evaluated (a cached prefix is not counted)
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    context: list[int]
