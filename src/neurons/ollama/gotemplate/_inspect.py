"""Reading a parsed template the way Ollama does: the fields it uses (``Template.Vars``), the
tool-call tag (``tools.parseTag``) and the thinking tags (``thinking.InferTags``).

These are heuristics over the parse tree, ported as Ollama writes them, because clients and
capabilities depend on getting the same answers: ``tools`` when the template names
``.Tools``, the text before the first action under ``{{ if .ToolCalls }}`` as the tag a
model writes before a call, and the text around ``{{ .Thinking }}`` inside the
``range .Messages`` as the thinking tags.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._nodes import _Action, _Arg, _Branch, _Node, _Paren, _Pipe, _Ref

_Body = tuple[_Node, ...]


def _pipe_fields(pipe: _Pipe) -> Iterator[tuple[str, ...]]:
    """Field chains (``.A.B``, not ``$x.A``) named in a pipeline, as Go's FieldNodes."""
    for cmd in pipe.cmds:
        for arg in cmd.args:
            yield from _arg_fields(arg)


def _arg_fields(arg: _Arg) -> Iterator[tuple[str, ...]]:
    if isinstance(arg, _Ref) and arg.var is None and arg.names:
        yield arg.names
    elif isinstance(arg, _Paren):
        yield from _pipe_fields(arg.pipe)


def field_names(nodes: _Body) -> set[str]:
    """Every field name used anywhere, lower-cased (Ollama's ``Template.Vars``)."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, _Action):
            pipes: list[_Pipe] = [node.pipe]
        elif isinstance(node, _Branch):
            pipes = [node.pipe]
            names |= field_names(node.body)
            names |= field_names(node.else_body or ())
        else:
            continue
        for pipe in pipes:
            for chain in _pipe_fields(pipe):
                names.update(name.lower() for name in chain)
    return names


def _mentions(pipe: _Pipe, field: str) -> bool:
    return any(field in chain for chain in _pipe_fields(pipe))


def _tool_calls_branch(nodes: _Body) -> _Branch | None:
    """The first ``if`` whose condition names ``.ToolCalls`` (depth first)."""
    for node in nodes:
        if not isinstance(node, _Branch):
            continue
        if node.kind == "if" and _mentions(node.pipe, "ToolCalls"):
            return node
        found = _tool_calls_branch(node.body) or _tool_calls_branch(node.else_body or ())
        if found is not None:
            return found
    return None


def _first_text(nodes: _Body) -> str | None:
    """The first non-blank text, stopping at the first action (``findTextNode``)."""
    for node in nodes:
        if isinstance(node, str):
            if node.strip():
                return node
        elif isinstance(node, _Branch):
            found = _first_text(node.body)
            if found is None and node.else_body is not None:
                found = _first_text(node.else_body)
            return found
        elif isinstance(node, _Action):
            return None
    return None


def tool_call_tag(nodes: _Body) -> str:
    """What a model writes before a tool call, e.g. ``<tool_call>``; ``{`` when the template
    shows none (then any JSON object that names a tool is read as a call)."""
    branch = _tool_calls_branch(nodes)
    text = _first_text(branch.body) if branch is not None else None
    if text is None:
        return "{"
    tag = text.replace("\r\n", "\n").split("{", 1)[0].strip()
    return tag or "{"


def thinking_tags(nodes: _Body) -> tuple[str, str]:
    """The text around ``{{ .Thinking }}`` in the ``range .Messages`` body, or ``("", "")``.

    As Ollama: at each ``.Thinking`` inside a range over ``.Messages``, the nearest enclosing
    list's first and last nodes, when they are text, give the opening and closing tags; the
    last such ``.Thinking`` wins.
    """
    tags = ("", "")

    def visit(body: _Body, in_messages: bool) -> None:
        nonlocal tags
        for node in body:
            pipe = node.pipe if isinstance(node, _Action | _Branch) else None
            if pipe is not None and in_messages and _names_thinking(pipe):
                tags = _ends(body)
            if isinstance(node, _Branch):
                inner = _mentions(node.pipe, "Messages") if node.kind == "range" else in_messages
                visit(node.body, inner)
                visit(node.else_body or (), inner)

    visit(nodes, False)
    return tags


def _names_thinking(pipe: _Pipe) -> bool:
    return any(chain[0] == "Thinking" for chain in _pipe_fields(pipe))


def _ends(body: _Body) -> tuple[str, str]:
    # Go's lexer emits no empty text; the trim markers can leave one here.
    nodes = [n for n in body if not (isinstance(n, str) and n == "")]
    first = nodes[0] if nodes else None
    last = nodes[-1] if nodes else None
    return (
        first.strip() if isinstance(first, str) else "",
        last.strip() if isinstance(last, str) else "",
    )
