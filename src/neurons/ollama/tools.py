"""Reading tool calls out of a model's streamed text, as Ollama's ``tools.Parser`` does.

The model writes a tag before its calls (``<tool_call>``; the template shows which: see
:meth:`~neurons.ollama.gotemplate.Template.tool_call_tag`), then JSON. Text before the tag
stays content. After the tag, a call is the first tool *name* from the request's tools that
appears, followed by the first JSON object that holds its arguments (``{"name": …,
"arguments": {…}}``, ``"parameters"`` too, or ``{"<name>": {…}}``). With the fallback tag
``{`` (a template that shows no tag), only output that *starts* with JSON may be a call, and
parsing stops at the end of the first balanced object.

>>> parser = ToolParser("<tool_call>", ["get_weather"])
>>> parser.add('Let me check. <tool_call>{"name": "get_weather", ')
([], 'Let me check. ')
>>> parser.add('"arguments": {"city": "Paris"}}</tool_call>')
([{'function': {'index': 0, 'name': 'get_weather', 'arguments': {'city': 'Paris'}}}], '')
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ToolParser", "tool_names"]


def tool_names(tools: list[dict[str, Any]]) -> list[str]:
    """The function names of a request's ``tools``."""
    names = []
    for tool in tools:
        function = tool.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


class ToolParser:
    """Feed it the model's text piece by piece; it returns the calls found and the content."""

    def __init__(self, tag: str, names: list[str]) -> None:
        self.tag = tag
        self.names = [n for n in names if n]
        self._buffer = ""
        self._state = "looking"  # looking → calling → done
        self.calls_found = 0

    def add(self, text: str) -> tuple[list[dict[str, Any]], str]:
        """The calls completed and the content to show, after adding ``text``."""
        if self._state == "done":
            return [], text
        self._buffer += text
        content = ""
        if self._state == "looking":
            index, found = self._find_tag()
            if index == -1:
                content, self._buffer = self._buffer, ""
            else:
                content, self._buffer = self._buffer[:index], self._buffer[index:]
            # With { or [ as the tag, only output that starts with JSON can be a call.
            if self.tag in ("{", "[") and content.strip():
                self._state = "done"
                rest, self._buffer = self._buffer, ""
                return [], content + rest
            if not found:
                return [], content
            self._state = "calling"
        calls = []
        while (call := self._next_call()) is not None:
            calls.append(call)
        if self._balanced_done():
            self._state = "done"
            content, self._buffer = self._buffer, ""
        return calls, content

    def leftover(self) -> str:
        """At the end: text held back that turned out not to be a call (Ollama's
        ``Content``): only with the ``{``/``[`` tag, and only when no call was found."""
        if self.calls_found or self.tag not in ("{", "["):
            return ""
        return self._buffer

    def _find_tag(self) -> tuple[int, bool]:
        index = self._buffer.find(self.tag)
        if index >= 0:
            return index, True
        # Hold back a tail that may be the start of the tag.
        for size in range(min(len(self._buffer), len(self.tag)), 0, -1):
            if self._buffer.endswith(self.tag[:size]):
                return len(self._buffer) - size, False
        return -1, False

    def _next_call(self) -> dict[str, Any] | None:
        found = self._find_name()
        if found is None:
            return None
        name, end = found
        arguments, object_end = _find_arguments(name, self._buffer)
        if arguments is None:
            return None
        call = {"function": {"index": self.calls_found, "name": name, "arguments": arguments}}
        self.calls_found += 1
        self._buffer = self._buffer[max(end, object_end) :]
        return call

    def _find_name(self) -> tuple[str, int] | None:
        buffer = self._buffer
        if not buffer or not self.names:
            return None
        longest = max(len(n) for n in self.names)
        # A tail that is the start of a longer name: wait ("get" may become "get_weather").
        for size in range(1, min(len(buffer), longest) + 1):
            tail = buffer[-size:]
            if any(len(tail) < len(n) and n.startswith(tail) for n in self.names):
                return None
        best: tuple[int, str] | None = None
        for name in self.names:
            position = buffer.find(name)
            if position == -1:
                continue
            if (
                best is None
                or position < best[0]
                or (position == best[0] and len(name) > len(best[1]))
            ):
                best = (position, name)
        if best is None:
            return None
        return best[1], best[0] + len(best[1])

    def _balanced_done(self) -> bool:
        """With a ``{``/``[`` tag, the first balanced object or array ends the calls."""
        if self.tag not in ("{", "["):
            return False
        opener, closer = ("{", "}") if self.tag == "{" else ("[", "]")
        depth = 0
        for char, in_string in _scan(self._buffer):
            if in_string:
                continue
            if char == opener:
                depth += 1
            elif char == closer:
                depth -= 1
                if depth == 0:
                    return True
        return False


def _scan(text: str) -> list[tuple[str, bool]]:
    """Each character with whether it lies inside a JSON string (quotes count as inside)."""
    out = []
    in_string = escaped = False
    for char in text:
        if escaped:
            escaped = False
            out.append((char, True))
            continue
        if char == "\\":
            escaped = True
            out.append((char, True))
            continue
        if char == '"':
            in_string = not in_string
            out.append((char, True))
            continue
        out.append((char, in_string))
    return out


def _find_arguments(name: str, buffer: str) -> tuple[dict[str, Any] | None, int]:
    """The first JSON object in ``buffer`` that holds arguments for ``name``, and where it
    ends (Ollama's ``findArguments``)."""
    start = -1
    depth = 0
    for index, (char, in_string) in enumerate(_scan(buffer)):
        if in_string:
            continue
        if char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0 and start != -1:
                try:
                    data = json.loads(buffer[start : index + 1])
                except json.JSONDecodeError:
                    start = -1
                    continue
                if not isinstance(data, dict):
                    start = -1
                    continue
                found, arguments = _arguments_in(name, data)
                return (arguments if found else data), index + 1
            depth = max(depth, 0)
    return None, 0


def _arguments_in(name: str, data: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    def as_map(value: Any) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                return None
            return parsed if isinstance(parsed, dict) else None
        return None

    if "name" in data:
        for key in ("arguments", "parameters"):
            if (arguments := as_map(data.get(key))) is not None:
                return True, arguments
        return True, {}
    if (arguments := as_map(data.get(name))) is not None:
        return True, arguments
    for value in data.values():
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, dict):
                found, arguments = _arguments_in(name, child)
                if found:
                    return True, arguments
    return False, None
