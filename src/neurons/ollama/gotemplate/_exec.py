"""The executor: walks the parse tree over the data, with Go's variable scoping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from ._errors import TemplateError
from ._format import _fmt, _gotype, _is_int
from ._funcs import _FUNCS, _CallError, _truth
from ._nodes import _Action, _Arg, _Branch, _Cmd, _Const, _Ident, _Jump, _Node, _Paren, _Pipe

_NO_FINAL: Any = object()  # no value piped in from a previous command


class _LoopSignal(Exception):
    def __init__(self, is_break: bool) -> None:
        super().__init__()
        self.is_break = is_break


class _Exec:
    """Walks the nodes with Go's variable stack: ``[name, value]`` pairs, innermost last."""

    def __init__(self, data: Any) -> None:
        self.vars: list[list[Any]] = [["$", data]]
        self.out: list[str] = []
        self.cmd: _Cmd | None = None

    def fail(self, msg: str) -> NoReturn:
        line = self.cmd.line if self.cmd else None
        where = f" at <{self.cmd.src}>" if self.cmd else ""
        raise TemplateError(f'template: :{line or ""}: executing ""{where}: {msg}', line)

    def walk(self, dot: Any, nodes: tuple[_Node, ...]) -> None:
        for node in nodes:
            if isinstance(node, str):
                self.out.append(node)
            elif isinstance(node, _Action):
                value = self.pipe(dot, node.pipe)
                if not node.pipe.decl:
                    self.out.append(_fmt(value))
            elif isinstance(node, _Jump):
                raise _LoopSignal(node.is_break)
            elif node.kind == "range":
                self.range(dot, node)
            else:
                mark = len(self.vars)
                value = self.pipe(dot, node.pipe)
                if _truth(value):
                    self.walk(value if node.kind == "with" else dot, node.body)
                elif node.else_body is not None:
                    self.walk(dot, node.else_body)
                del self.vars[mark:]

    def range(self, dot: Any, node: _Branch) -> None:
        mark, decl, assign = len(self.vars), node.pipe.decl, node.pipe.is_assign
        value = self.pipe(dot, _Pipe((), False, node.pipe.cmds))
        items = self.items(value, len(decl))
        if not assign:
            self.vars.extend([name, value] for name in decl)
        for key, elem in items:
            # One variable gets the element; two get the key (or index) and the element.
            for name, val, slot in zip(decl[::-1], (elem, key), (-1, -2), strict=False):
                if assign:
                    self.set_var(name, val)
                else:
                    self.vars[slot][1] = val
            inner = len(self.vars)
            try:
                self.walk(elem, node.body)
            except _LoopSignal as signal:
                if signal.is_break:
                    break
            finally:
                del self.vars[inner:]
        if not items and node.else_body is not None:
            self.walk(dot, node.else_body)
        del self.vars[mark:]

    def items(self, value: Any, nvars: int) -> list[tuple[Any, Any]]:
        if value is None or isinstance(value, list | tuple):
            return list(enumerate(value or ()))
        if isinstance(value, Mapping):
            try:
                keys = sorted(value)
            except TypeError:
                keys = list(value)
            return [(k, value[k]) for k in keys]
        if _is_int(value) and nvars < 2:
            return [(i, i) for i in range(value)]
        if _is_int(value):
            self.fail(f"can't use {value} to iterate over more than one variable")
        self.fail(f"range can't iterate over {_fmt(value)}")

    def slot(self, name: str) -> list[Any]:
        for entry in self.vars[::-1]:
            if entry[0] == name:
                return entry
        self.fail(f"undefined variable: {name}")  # e.g. {{ $x := $x }}: declared, not yet set

    def set_var(self, name: str, value: Any) -> None:
        self.slot(name)[1] = value

    def pipe(self, dot: Any, pipe: _Pipe) -> Any:
        value = _NO_FINAL
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.vars.append([name, value])
        return value

    def command(self, dot: Any, cmd: _Cmd, final: Any) -> Any:
        self.cmd = cmd  # the context for errors, until the next command starts
        first = cmd.args[0]
        if isinstance(first, _Ident):
            value = self.call(first.name, cmd.args[1:], dot, final)
        elif len(cmd.args) > 1 or final is not _NO_FINAL:
            self.fail("can't give argument to non-function")
        elif first == _Const(None):  # only the literal nil parses to this
            self.fail("nil is not a command")
        else:
            value = self.arg(dot, first)
        return value

    def arg(self, dot: Any, node: _Arg) -> Any:
        if isinstance(node, _Const):
            return node.value
        if isinstance(node, _Ident):
            return self.call(node.name, (), dot, _NO_FINAL)
        if isinstance(node, _Paren):
            outer = self.cmd
            value = self.pipe(dot, node.pipe)
            self.cmd = outer
        elif node.var is None:
            value = dot
        else:
            value = self.slot(node.var)[1]
        for name in node.names:
            if isinstance(value, Mapping):
                value = value.get(name)
            elif value is not None:
                self.fail(f"can't evaluate field {name} in type {_gotype(value)}")
        return value

    def call(self, name: str, nodes: tuple[_Arg, ...], dot: Any, final: Any) -> Any:
        fn, least, most = _FUNCS[name]
        count = len(nodes) + (final is not _NO_FINAL)
        if count < least or (most is not None and count > most):
            want = f"at least {least}" if most is None else str(least)
            self.fail(f"wrong number of args for {name}: want {want} got {count}")
        if name in ("and", "or"):  # short-circuit: the first deciding value, else the last
            for node in nodes:
                value = self.arg(dot, node)
                if _truth(value) == (name == "or"):
                    return value
            return value if final is _NO_FINAL else final
        args = [self.arg(dot, node) for node in nodes]
        try:
            return fn(*args, *(() if final is _NO_FINAL else (final,)))
        except _CallError as exc:
            self.fail(f"error calling {name}: {exc}")
