"""The parse tree: frozen dataclasses for pipelines, commands, actions and branches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class _Const:
    value: Any


@dataclass(frozen=True, slots=True)
class _Ref:
    """``.`` (var None, no names), ``.A.B`` (var None), ``$x.A`` (var "$x")."""

    var: str | None
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Ident:
    name: str


@dataclass(frozen=True, slots=True)
class _Paren:
    """A parenthesised pipeline, optionally followed by a field chain: ``(index .L 0).Name``."""

    pipe: _Pipe
    names: tuple[str, ...] = ()


_Arg = _Const | _Ref | _Ident | _Paren


@dataclass(frozen=True, slots=True)
class _Cmd:
    args: tuple[_Arg, ...]
    line: int
    src: str


@dataclass(frozen=True, slots=True)
class _Pipe:
    decl: tuple[str, ...]
    is_assign: bool
    cmds: tuple[_Cmd, ...]


@dataclass(frozen=True, slots=True)
class _Action:
    pipe: _Pipe


@dataclass(frozen=True, slots=True)
class _Branch:
    kind: str  # "if", "with" or "range"
    pipe: _Pipe
    body: tuple[_Node, ...]
    else_body: tuple[_Node, ...] | None


@dataclass(frozen=True, slots=True)
class _Jump:
    is_break: bool


_Node = str | _Action | _Branch | _Jump  # a str is literal text
