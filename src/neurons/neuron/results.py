"""What a generation yields: text pieces as they are decided, then one result with Ollama's
counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["GenerationResult", "TokenEvent"]


@dataclass
class TokenEvent:
    text: str
    logprobs: list[dict[str, Any]] | None = None


@dataclass
class GenerationResult:
    done_reason: str
    prompt_eval_count: int  # prompt tokens evaluated (a cached prefix is not counted)
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    context: list[int]
