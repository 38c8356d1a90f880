"""One training example, whatever file it came from.

Every data type normalises to :class:`Example`: chat-shaped examples (instruction/input/output,
prompt/completion, conversations) carry ``messages`` and train on the assistant turns only;
plain text carries ``text`` and trains on every token (causal language modelling).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ROLES", "Example", "Message"]

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Example:
    """``source``: the 1-based line (jsonl, text) or data row (csv) it was read from."""

    source: int
    messages: tuple[Message, ...] = ()
    text: str | None = None

    @property
    def is_chat(self) -> bool:
        return self.text is None

    def key(self) -> tuple[Any, ...]:
        """What makes two examples duplicates (the source line does not)."""
        return (self.text, tuple((m.role, m.content) for m in self.messages))

    def to_dict(self) -> dict[str, Any]:
        if self.text is not None:
            return {"source": self.source, "text": self.text}
        return {
            "source": self.source,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Example:
        if "text" in data:
            return cls(source=int(data["source"]), text=str(data["text"]))
        messages = tuple(Message(m["role"], m["content"]) for m in data["messages"])
        return cls(source=int(data["source"]), messages=messages)
