"""Chat messages and tools as the Ollama API sends them, checked, and as templates see them.

Go templates read Ollama's structs by their Go field names (``.Role``, ``.ToolCalls``,
``.Function.Arguments``) and print tool types as JSON; :func:`template_messages` and
:func:`template_tools` give that view (:class:`~neurons.ollama.gotemplate.Struct`). Jinja
templates get plain dicts shaped as transformers passes them (:meth:`Message.jinja`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from neurons.errors import InvalidRequestError
from neurons.ollama.gotemplate import Struct, StructList

__all__ = [
    "Message",
    "parse_messages",
    "parse_tools",
    "template_messages",
    "template_tools",
]


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    thinking: str = ""
    images: tuple[str, ...] = ()
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_name: str = ""
    tool_call_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def wire(self) -> dict[str, Any]:
        """The message as the API writes it (empty fields left out)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.thinking:
            out["thinking"] = self.thinking
        if self.images:
            out["images"] = list(self.images)
        if self.tool_calls:
            out["tool_calls"] = list(self.tool_calls)
        if self.tool_name:
            out["tool_name"] = self.tool_name
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out

    def jinja(self) -> dict[str, Any]:
        """As transformers' chat templates expect: tool calls with ``type: function``, and
        a tool message's ``name``."""
        out = self.wire()
        if self.tool_calls:
            out["tool_calls"] = [{"type": "function", **call} for call in self.tool_calls]
        if self.tool_name:
            out["name"] = self.tool_name
        if self.thinking:
            out["reasoning_content"] = self.thinking
        return out


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequestError(f"{what} must be a string")
    return value


def _tool_call(call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidRequestError("tool_calls must be objects with a function name")
    arguments = function.get("arguments")
    if isinstance(arguments, str):  # some clients send OpenAI's JSON text
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"invalid tool call arguments: {exc.msg}") from exc
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise InvalidRequestError("tool call arguments must be an object")
    out_function: dict[str, Any] = {"name": function["name"], "arguments": arguments}
    if isinstance(function.get("index"), int):
        out_function = {"index": function["index"], **out_function}
    out: dict[str, Any] = {"function": out_function}
    if isinstance(call.get("id"), str):
        out = {"id": call["id"], **out}
    return out


def parse_messages(raw: Any) -> list[Message]:
    """A request's ``messages``, checked: Ollama's 400 for a malformed one."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequestError("messages must be a list")
    messages = []
    for item in raw:
        if not isinstance(item, dict):
            raise InvalidRequestError("every message must be an object with role and content")
        images = item.get("images") or []
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise InvalidRequestError("images must be a list of base64 strings")
        calls = item.get("tool_calls") or []
        if not isinstance(calls, list):
            raise InvalidRequestError("tool_calls must be a list")
        messages.append(
            Message(
                role=str(item.get("role", "user")).lower(),
                content=_text(item.get("content"), "content"),
                thinking=_text(item.get("thinking"), "thinking"),
                images=tuple(images),
                tool_calls=tuple(_tool_call(c) for c in calls),
                tool_name=_text(item.get("tool_name") or item.get("name"), "tool_name"),
                tool_call_id=_text(item.get("tool_call_id"), "tool_call_id"),
            )
        )
    return messages


def parse_tools(raw: Any) -> list[dict[str, Any]]:
    """A request's ``tools``: a list of ``{"type": "function", "function": {"name": …}}``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequestError("tools must be a list")
    for tool in raw:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequestError("every tool must be an object with a function name")
    return list(raw)


# -- the Go template view ---------------------------------------------------------------------

_GO_NAMES = {"id": "ID", "tool_call_id": "ToolCallID", "$defs": "Defs", "anyOf": "AnyOf"}
# Go maps, not structs: their keys are the user's names (argument and property names).
_MAPS = frozenset({"arguments", "properties", "$defs"})


def _go_name(key: str) -> str:
    return _GO_NAMES.get(key) or "".join(part[:1].upper() + part[1:] for part in key.split("_"))


def _view(value: Any, *, as_map: bool = False) -> Any:
    if isinstance(value, dict):
        if as_map:
            return {k: _view(v) for k, v in value.items()}
        fields = {_go_name(k): _view(v, as_map=k in _MAPS) for k, v in value.items()}
        return Struct(fields, value)
    if isinstance(value, list):
        return [_view(v) for v in value]
    return value


def template_tools(tools: list[dict[str, Any]]) -> StructList:
    """``.Tools``: each tool as a struct (``.Function.Name``), the list printing as JSON."""
    return StructList([_view(t) for t in tools], tools)


def template_messages(messages: list[Message]) -> list[Struct]:
    """``.Messages`` as Ollama's template structs."""
    views = []
    for message in messages:
        fields = {
            "Role": message.role,
            "Content": message.content,
            "Thinking": message.thinking,
            "Images": list(message.images),
            "ToolCalls": [_view(call) for call in message.tool_calls],
            "ToolName": message.tool_name,
            "ToolCallID": message.tool_call_id,
        }
        views.append(Struct(fields, message.wire()))
    return views
