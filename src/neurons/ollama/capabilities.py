"""What a model can do, computed as Ollama computes it, and what a request needs.

A model's capabilities come from its GGUF (``embedding`` when it declares a pooling type,
else ``completion``; ``vision`` with a vision tower) and from its template: a Go TEMPLATE
that uses ``.Tools`` gives ``tools``, ``.Suffix`` gives ``insert``, and thinking tags around
``.Thinking`` give ``thinking``. A model with no TEMPLATE layer is rendered with the GGUF's
Jinja chat template, read as Ollama reads one: ``tools`` when it mentions ``tools`` or
``tool_call``, ``thinking`` when it has ``<think>`` and ``</think>``.

>>> model_capabilities(go_template="{{ .Prompt }}{{ if .Suffix }}<fim>{{ .Suffix }}{{ end }}")
['completion', 'insert']
>>> required_capabilities("/api/chat", {"tools": [{}], "think": True})
['completion', 'tools', 'thinking']
"""

from __future__ import annotations

import functools
from typing import Any

from neurons.errors import InvalidRequestError
from neurons.ollama import gotemplate
from neurons.ollama.ggufmeta import GGUFInfo

__all__ = [
    "COMPLETION",
    "EMBEDDING",
    "INSERT",
    "THINKING",
    "TOOLS",
    "VISION",
    "CapabilityError",
    "check_capabilities",
    "gguf_capabilities",
    "model_capabilities",
    "required_capabilities",
]

COMPLETION = "completion"
TOOLS = "tools"
INSERT = "insert"
VISION = "vision"
EMBEDDING = "embedding"
THINKING = "thinking"

# Embedding architectures whose GGUFs from older converters lack ``pooling_type``.
_EMBEDDING_ARCHITECTURES = frozenset({"bert", "nomic-bert", "jina-bert-v2"})


class CapabilityError(InvalidRequestError):
    """A request needs something the model cannot do (Ollama's 400)."""


def gguf_capabilities(info: GGUFInfo | None) -> list[str]:
    if info is None:
        return [COMPLETION]
    embedding = (
        info.arch_value("pooling_type") is not None or info.architecture in _EMBEDDING_ARCHITECTURES
    )
    found = [EMBEDDING if embedding else COMPLETION]
    if info.arch_value("vision.block_count") is not None:
        found.append(VISION)
    return found


def model_capabilities(
    *,
    go_template: str | None = None,
    chat_template: str | None = None,
    info: GGUFInfo | None = None,
) -> list[str]:
    """The capabilities, in Ollama's order (GGUF first, then template)."""
    found = gguf_capabilities(info)
    extra = _template_capabilities(go_template, chat_template)
    return found + [c for c in extra if c not in found]


@functools.lru_cache(maxsize=256)
def _template_capabilities(go_template: str | None, chat_template: str | None) -> tuple[str, ...]:
    # Cached: every request and every /api/tags entry asks, and parsing a template is not free.
    if go_template is not None:
        try:
            template = gotemplate.parse(go_template)
        except gotemplate.TemplateError:
            return ()  # Ollama warns and reports what the GGUF says
        names = template.vars()
        extra = [TOOLS] if "tools" in names else []
        extra += [INSERT] if "suffix" in names else []
        opening, closing = template.thinking_tags()
        return (*extra, *([THINKING] if opening and closing else []))
    if chat_template:
        extra = [TOOLS] if "tools" in chat_template or "tool_call" in chat_template else []
        if "<think>" in chat_template and "</think>" in chat_template:
            extra.append(THINKING)
        return tuple(extra)
    return ()


def required_capabilities(path: str, body: dict[str, Any]) -> list[str]:
    """What an Ollama API request needs of the model it names (``think: true`` asks for
    thinking; ``think: false`` works with any model, as in Ollama)."""
    if path in ("/api/embed", "/api/embeddings"):
        return [EMBEDDING]
    needed = [COMPLETION]
    if path == "/api/chat" and body.get("tools"):
        needed.append(TOOLS)
    if path == "/api/generate" and body.get("suffix"):
        needed.append(INSERT)
    if _wants_thinking(body.get("think")):
        needed.append(THINKING)
    images = body.get("images") if path == "/api/generate" else None
    messages = body.get("messages") if path == "/api/chat" else None
    if images or (
        isinstance(messages, list)
        and any(isinstance(m, dict) and m.get("images") for m in messages)
    ):
        needed.append(VISION)
    return needed


def _wants_thinking(think: Any) -> bool:
    # Ollama's ThinkValue: a bool, or a level ("high", "medium", "low") that means on.
    return think is True or (isinstance(think, str) and think not in ("", "false", "none"))


def check_capabilities(
    model: str, available: list[str], needed: list[str], action: str = "generate"
) -> None:
    """Ollama's 400 when the model lacks what the request needs (``action`` names the
    route in the message for a model that cannot complete: generate or chat)."""
    missing = [c for c in needed if c not in available]
    if not missing:
        return
    if THINKING in missing:
        raise CapabilityError(f'"{model}" does not support thinking')
    if COMPLETION in missing:
        raise CapabilityError(f'"{model}" does not support {action}')
    raise CapabilityError(f"{model} does not support {' '.join(missing)}")
