"""The parser: tokens to a tree of nodes, with Go's parse-time checks and messages."""

from __future__ import annotations

import re
from typing import NoReturn

from ._errors import TemplateError
from ._format import _quote
from ._funcs import _FUNCS
from ._lexer import _OPERAND_START, _Lexer, _Tok
from ._nodes import _Action, _Arg, _Branch, _Cmd, _Const, _Ident, _Jump, _Node, _Paren, _Pipe, _Ref


class _Parser:
    """Recursive descent over the tokens, following Go's text/template/parse."""

    def __init__(self, src: str) -> None:
        self.src, self.toks, self.i = src, _Lexer(src).run(), 0
        self.vars, self.range_depth, self.action_line = ["$"], 0, 0

    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def next(self) -> _Tok:
        self.i += 1
        return self.peek(-1)

    def error(self, msg: str, tok: _Tok | None = None) -> NoReturn:
        line = (tok or self.peek(-1)).line
        raise TemplateError(f"template: :{line}: {msg}", line)

    def unexpected(self, tok: _Tok, context: str) -> NoReturn:
        if tok.kind != "error":
            self.error(f"unexpected {tok} in {context}", tok)
        extra = ""
        if self.action_line and self.action_line != tok.line:
            extra = f" in action started at :{self.action_line}"
            extra = extra.removeprefix(" in action" if tok.val.endswith(" action") else "")
        self.error(tok.val + extra, tok)

    def expect(self, kind: str, context: str) -> None:
        if (tok := self.next()).kind != kind:
            self.unexpected(tok, context)

    def item_list(self, opener: _Tok | None) -> tuple[tuple[_Node, ...], str]:
        """Nodes up to ``{{end}}``/``{{else}}`` (consumed) or, at top level, EOF."""
        nodes: list[_Node] = []
        while (tok := self.next()).kind != "eof":
            if tok.kind == "text":
                nodes.append(tok.val)
                continue
            if tok.kind != "left":
                self.unexpected(tok, "input")
            self.action_line, kw = tok.line, self.peek()
            if kw.kind == "keyword" and kw.val in ("end", "else"):
                self.next()
                if opener is None:
                    self.error(f"unexpected {{{{{kw.val}}}}}", kw)
                if kw.val == "end":
                    self.expect("right", "end")
                return tuple(nodes), kw.val
            nodes.append(self.action())
        if opener is not None:
            where = f"{{{{end}}}} for {{{{{opener.val}}}}} on line {opener.line}"
            self.error(f"unexpected EOF (missing {where})", tok)
        return tuple(nodes), "eof"

    def action(self) -> _Node:
        tok = self.peek()
        if tok.kind != "keyword":
            return _Action(self.pipeline("command", "right"))
        self.next()
        if tok.val in ("if", "with", "range"):
            return self.control(tok)
        if tok.val not in ("break", "continue"):
            self.error(f"{{{{{tok.val}}}}} is not supported", tok)
        self.expect("right", f"{{{{{tok.val}}}}}")
        if not self.range_depth:
            self.error(f"{{{{{tok.val}}}}} outside {{{{range}}}}", tok)
        return _Jump(tok.val == "break")

    def control(self, kw: _Tok) -> _Branch:
        mark, context = len(self.vars), kw.val
        pipe = self.pipeline(context, "right")
        self.range_depth += context == "range"
        body, term = self.item_list(kw)
        self.range_depth -= context == "range"
        else_body: tuple[_Node, ...] | None = None
        if term == "else":
            nxt = self.peek()
            if context != "range" and nxt.kind == "keyword" and nxt.val == context:
                self.next()  # {{else if ...}} is {{else}}{{if ...}}...{{end}}{{end}}
                else_body = (self.control(nxt),)
            else:
                self.expect("right", "else")
                else_body, term = self.item_list(kw)
                if term != "end":
                    self.error("expected end; found {{else}}")
        del self.vars[mark:]
        return _Branch(context, pipe, body, else_body)

    def pipeline(self, context: str, end: str) -> _Pipe:
        decl: list[str] = []
        while self.peek().kind == "var" and self.peek(1).kind in ("declare", "assign", "char"):
            var, sep = self.peek(), self.peek(1)
            if sep.kind == "char" and sep.val != ",":
                break
            self.i += 2
            decl.append(var.val)
            if sep.kind != "char":
                break
            if context != "range" or len(decl) > 1:
                self.error(f"too many declarations in {context}", sep)
            if self.peek().kind != "var" or self.peek(1).kind not in ("declare", "assign"):
                self.error("range can only initialize variables", self.peek())
        is_assign = self.peek(-1).kind == "assign" and bool(decl)
        for name in decl if is_assign else ():
            if name not in self.vars:
                self.error(f"undefined variable {_quote(name)}")
        self.vars.extend(() if is_assign else decl)
        cmds: list[_Cmd] = []
        while (tok := self.next()).kind != end:
            if tok.kind not in _OPERAND_START:
                self.unexpected(tok, context)
            self.i -= 1
            cmds.append(self.command())
        if not cmds:
            self.error(f"missing value for {context}", tok)
        for stage, cmd in enumerate(cmds[1:], 2):
            if isinstance(cmd.args[0], _Const) or cmd.args[0] == _Ref(None):
                self.error(f"non executable command in pipeline stage {stage}", tok)
        return _Pipe(tuple(decl), is_assign, tuple(cmds))

    def command(self) -> _Cmd:
        first, args = self.peek(), list[_Arg]()
        while True:
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            tok = self.peek()
            if tok.kind in ("right", "rparen", "pipe"):
                src = self.src[first.pos : self.peek(-1).end]
                self.i += tok.kind == "pipe"
                return _Cmd(tuple(args), first.line, src)
            if operand is None or not tok.spaced:
                self.unexpected(self.next(), "operand")

    def operand(self) -> _Arg | None:
        start, node = self.peek(), self.term()
        names: list[str] = []
        while node is not None and (tok := self.peek()).kind == "field" and not tok.spaced:
            names.append(self.next().val[1:])
        if node is None or not names:
            return node
        if isinstance(node, _Const) or node == _Ref(None):
            self.error(f"unexpected . after term {_quote(start.val)}", start)
        if isinstance(node, _Ref):
            return _Ref(node.var, node.names + tuple(names))
        if isinstance(node, _Paren):
            return _Paren(node.pipe, tuple(names))
        # A function name followed by fields: call it without arguments, then walk the fields.
        return _Paren(_Pipe((), False, (_Cmd((node,), start.line, start.val),)), tuple(names))

    def term(self) -> _Arg | None:
        tok = self.next()
        kind, val = tok.kind, tok.val
        if kind == "ident":
            if val not in _FUNCS:
                self.error(f"function {_quote(val)} not defined", tok)
            return _Ident(val)
        if kind == "var":
            if val not in self.vars:
                self.error(f"undefined variable {_quote(val)}", tok)
            return _Ref(val)
        if kind in ("field", "dot"):
            return _Ref(None, (val[1:],) if kind == "field" else ())
        if kind == "lparen":
            return _Paren(self.pipeline("parenthesized pipeline", "rparen"))
        if kind in ("bool", "nil", "raw"):
            raw = val[1:-1].replace("\r", "")
            return _Const(val == "true" if kind == "bool" else None if kind == "nil" else raw)
        try:
            if kind == "number":
                return _Const(_number(val))
            if kind == "string":
                return _Const(_unescape(val[1:-1]))
            if kind == "char_const" and len(char := _unescape(val[1:-1])) == 1:
                return _Const(ord(char))
            if kind == "char_const":
                raise ValueError(val)
        except ValueError:
            self.error(f"illegal {'number ' if kind == 'number' else ''}syntax: {val}", tok)
        self.i -= 1
        return None


_ESCAPE_RE = re.compile(r"\\(?:([abfnrtv\\'\"])|x(..)|([0-7]{3})|u(.{4})|U(.{8})|(.?))", re.S)


def _unescape(body: str) -> str:
    def one(m: re.Match[str]) -> str:
        simple, hex2, octal, hex4, hex8, bad = m.groups()
        if simple:
            return dict(zip("abfnrtv", "\a\b\f\n\r\t\v", strict=True)).get(simple, simple)
        if bad is not None:
            raise ValueError(bad)
        return chr(int(octal, 8) if octal else int(hex2 or hex4 or hex8, 16))

    return _ESCAPE_RE.sub(one, body)


def _number(text: str) -> int | float:
    t = text.replace("_", "")
    if re.fullmatch(r"[+-]?0[0-7]+", t):
        return int(t, 8)
    if re.fullmatch(r"[+-]?(?:0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|\d+)", t):
        return int(t, 0)
    return float(t)
