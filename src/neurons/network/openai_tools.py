"""Tools on the OpenAI API: tool calls in both wire shapes, and ``tool_choice``.

Ollama's ``/api/chat`` has ``tools`` but no ``tool_choice``, so the gateway carries it out:

* absent or ``"auto"``: ``tools`` go to the node, which decides and parses its calls itself.
* ``"none"``: ``tools`` stay behind, so the model can only answer in text. Earlier calls and
  results in the history still go, as the model needs them to read the conversation.
* ``"required"`` or a named function: the answer must be a call. Asking a small model in the
  prompt is not enough, so the node decodes under a grammar: Ollama's ``format`` carries a JSON
  schema of the call object, ``{"name": <const>, "arguments": <the tool's parameters>}`` (an
  ``anyOf`` of one such object per tool for ``"required"``). ``tools`` still go, so the template
  shows the model what each one does. The node answers with that object as its content, or as
  ``message.tool_calls`` when its own parser recognised it; :func:`forced_calls` takes either.
* ``allowed_tools``: the same, over the tools it lists, with ``mode`` ``auto`` or ``required``.

A forced answer holds one call (``parallel_tool_calls`` is accepted and has no effect). One
that ``num_predict`` cut off is no call: its text comes back as content, ``finish_reason``
``length``, as a cut-off text answer would. A forced call goes with ``think: false`` unless
the client asked for reasoning (``chat_request`` says why).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from neurons.network.openai_errors import bad

__all__ = [
    "ToolChoice",
    "forced_calls",
    "forced_tools",
    "parse_call",
    "resolve_tool_choice",
    "tool_calls_in",
    "tool_calls_out",
    "tool_name",
]

JSON = dict[str, Any]

_ANY_OBJECT: JSON = {"type": "object"}


# --- tool calls between the two wire shapes ----------------------------------------------------


def tool_calls_in(value: object, where: str) -> list[JSON]:
    """OpenAI tool calls of a request message (arguments as JSON text) in Ollama's shape."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(f"{where}.tool_calls must be an array")
    calls: list[JSON] = []
    for j, call in enumerate(value):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad(f"{where}.tool_calls[{j}] must have a function with a name")
        arguments = function.get("arguments", "")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError:
                raise bad(f"invalid tool call arguments in {where}.tool_calls[{j}]") from None
        if not isinstance(arguments, dict):
            raise bad(f"invalid tool call arguments in {where}.tool_calls[{j}]")
        out: JSON = {"function": {"name": function["name"], "arguments": arguments}}
        if isinstance(call, dict) and isinstance(call.get("id"), str):
            out["id"] = call["id"]
        calls.append(out)
    return calls


def tool_name(history: list[Any], call_id: object) -> str | None:
    """The function a tool result answers, found by id; the last match wins, as in Ollama."""
    for msg in reversed(history):
        calls = msg.get("tool_calls") if isinstance(msg, dict) else None
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict) and call.get("id") == call_id:
                function = call.get("function")
                name = function.get("name") if isinstance(function, dict) else None
                return name if isinstance(name, str) else None
    return None


def tool_calls_out(calls: object, *, first_index: int | None = None) -> list[JSON]:
    """Ollama tool calls (arguments as objects) in OpenAI's shape (arguments as JSON text)."""
    out: list[JSON] = []
    calls = [call for call in calls if isinstance(call, dict)] if isinstance(calls, list) else []
    for k, call in enumerate(calls):
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = function.get("arguments") or {}
        entry: JSON = {
            "id": call.get("id") or f"call_{secrets.token_hex(8)}",
            "type": "function",
            "function": {
                "name": function.get("name", ""),
                "arguments": json.dumps(arguments, separators=(",", ":"), ensure_ascii=False),
            },
        }
        if first_index is not None:  # stream deltas are matched up by index
            entry = {"index": first_index + k, **entry}
        out.append(entry)
    return out


# --- tool_choice --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolChoice:
    """What ``tool_choice`` makes of a request's ``tools``.

    ``tools`` is what goes to the node; ``forced`` maps each function the answer may call to
    its parameters' schema, and is empty unless the answer must be a call.
    """

    tools: list[Any]
    forced: dict[str, JSON] = field(default_factory=dict)

    @property
    def format(self) -> JSON | None:
        """The Ollama ``format`` that makes the node's answer one call object, or None."""
        if not self.forced:
            return None
        schemas = [_call_schema(name, params) for name, params in self.forced.items()]
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def _call_schema(name: str, parameters: JSON) -> JSON:
    # "const" is what llama.cpp's JSON-schema grammar converter (the node's) turns into a literal.
    return {
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _functions(tools: list[Any]) -> dict[str, JSON]:
    """Each function tool's name and parameters' schema, in the order given."""
    found: dict[str, JSON] = {}
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(function, dict) and isinstance(name, str) and name:
            params = function.get("parameters")
            found.setdefault(name, params if isinstance(params, dict) and params else _ANY_OBJECT)
    return found


def _kind(value: object) -> str:
    kinds = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (list, "an array"))
    return next((noun for cls, noun in kinds if isinstance(value, cls)), "a value")


def resolve_tool_choice(choice: object, tools: list[Any]) -> ToolChoice:
    """Read ``tool_choice`` against the request's ``tools``; a 400 for what OpenAI refuses.

    ``"auto"`` and ``"none"`` are taken without ``tools`` (Ollama's middleware ignores them);
    a choice that needs a tool is not.
    """
    if choice is None or choice == "auto":
        return ToolChoice(tools)
    if choice == "none":
        return ToolChoice([])
    if choice == "required":
        return _forced(tools, list(_functions(tools)))
    if isinstance(choice, str):
        raise bad(
            f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.",
            "tool_choice",
        )
    if not isinstance(choice, dict):
        raise bad(
            "Invalid type for 'tool_choice': expected one of a string or an object, "
            f"but got {_kind(choice)} instead.",
            "tool_choice",
        )
    kind = choice.get("type")
    if kind == "function":
        return _forced(tools, [_named(choice, "tool_choice")])
    if kind == "allowed_tools":
        return _allowed(choice.get("allowed_tools"), tools)
    raise bad(
        f"Invalid value: '{kind}'. Supported values are: 'function' and 'allowed_tools'.",
        "tool_choice.type",
    )


def forced_tools(body: object) -> tuple[str, ...]:
    """The functions the answer must call, or () when it may answer in text.

    Read from the OpenAI request body after ``chat_request`` accepted it.
    """
    if not isinstance(body, dict) or not isinstance(body.get("tools"), list):
        return ()
    return tuple(resolve_tool_choice(body.get("tool_choice"), body["tools"]).forced)


def _named(choice: JSON, where: str) -> str:
    # {"type": "function", "function": {"name": ...}}; the Responses API's flat
    # {"type": "function", "name": ...} is taken too, as clients mix the two up.
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else choice.get("name")
    if not isinstance(name, str) or not name:
        raise bad(f"Missing required parameter: '{where}.function.name'.", f"{where}.function.name")
    return name


def _allowed(spec: object, tools: list[Any]) -> ToolChoice:
    where = "tool_choice.allowed_tools"
    if not isinstance(spec, dict) or not isinstance(spec.get("tools"), list):
        raise bad(f"Missing required parameter: '{where}.tools'.", f"{where}.tools")
    names = [
        _named(tool if isinstance(tool, dict) else {}, f"{where}.tools[{k}]")
        for k, tool in enumerate(spec["tools"])
    ]
    mode = spec.get("mode", "auto")
    if mode not in ("auto", "required"):
        raise bad(
            f"Invalid value: '{mode}'. Supported values are: 'auto' and 'required'.",
            f"{where}.mode",
        )
    chosen = _forced(tools, names)
    if mode == "required":
        return chosen
    kept = [tool for tool in tools if _functions([tool]).keys() & chosen.forced.keys()]
    return ToolChoice(kept)


def _forced(tools: list[Any], names: list[str]) -> ToolChoice:
    if not tools or not names:
        raise bad(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
            "are specified.",
            "tool_choice",
        )
    functions = _functions(tools)
    for name in names:
        if name not in functions:
            raise bad(
                f"Invalid value for 'tool_choice': no function named '{name}' in 'tools'.",
                "tool_choice",
            )
    return ToolChoice(tools, {name: functions[name] for name in names})


# --- the answer to a forced call -----------------------------------------------------------------


def parse_call(content: object, names: Sequence[str]) -> JSON | None:
    """The content of a forced answer as an Ollama tool call; None when it is not one.

    It is not one when ``num_predict`` cut it off, or when the node ignored ``format``.
    """
    if not isinstance(content, str):
        return None
    try:
        # strict=False: the grammar's strings admit raw control characters, which JSON does not.
        value = json.loads(content, strict=False)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    name, arguments = value.get("name"), value.get("arguments")
    if not isinstance(name, str) or name not in names or not isinstance(arguments, dict):
        return None
    return {"function": {"name": name, "arguments": arguments}}


def forced_calls(message: JSON, names: Sequence[str]) -> tuple[list[JSON], str]:
    """The calls and the remaining content of a forced answer's ``message``.

    The node's own ``tool_calls`` win; otherwise the content is read as the call object, and
    is used up by it.
    """
    content = message.get("content") or ""
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        return calls, content
    call = parse_call(content, names)
    return ([call], "") if call is not None else ([], content)
