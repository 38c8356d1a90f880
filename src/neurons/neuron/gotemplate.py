"""A renderer for the subset of Go's ``text/template`` that Ollama Modelfile TEMPLATEs use.

>>> render("{{ if .System }}[{{ .System }}] {{ end }}{{ .Prompt }}", {"System": "", "Prompt": "hi"})
'hi'

Supported: text and ``{{ actions }}`` with the trim markers ``{{- `` and `` -}}``; comments
``{{/* ... */}}``; ``.``, ``.Field.Chain``, ``$``, ``$var.Field``, ``$x := ...`` and ``$x = ...``;
``if``/``else if``/``else``, ``with``/``else with``/``else``, ``range`` (optionally
``$i, $e :=``) with ``else``, ``break`` and ``continue``; pipelines with ``|`` and parenthesised
sub-pipelines; string (with Go escapes), raw-string, character, integer, float, ``true``,
``false`` and ``nil`` literals. Functions: Go's ``and or not len index slice eq ne lt le gt ge
print printf println``, Ollama's ``json``, and the extras ``add sub contains hasPrefix
hasSuffix`` (argument order of Go's ``strings`` package: ``contains s substr``).

Not supported (a parse error): ``define``, ``template``, ``block``, ``call``, ``html``, ``js``,
``urlquery``, method calls, complex numbers, custom delimiters.

Deliberate differences from Go, chosen because Ollama executes templates on structs, where a
missing field is simply a zero value:

* a missing map key is ``None``; a field of ``None`` is ``None``; ``None`` prints as the empty
  string (Go prints ``<no value>`` or ``<nil>``);
* ``eq``/``ne``/``lt``/... treat ``None`` as the zero value of the other operand, and compare
  ints with floats numerically (Go refuses mixed kinds);
* a dict prints as compact JSON, as Ollama's ``Tool``/``ToolFunction``/arguments types do via
  their ``String()`` methods; lists print Go-style, ``[a b c]``;
* ``json`` escapes like Go's ``json.Marshal`` (``<`` becomes ``\\u003c`` ...), but keeps dict
  keys in insertion order (Ollama's structs have a fixed field order; Go sorts map keys).

As in Go: ``range`` over a dict visits keys in sorted order; ``len``, ``index`` and ``slice`` on
strings count UTF-8 bytes; ``and``/``or`` short-circuit; variables are scoped to the enclosing
control structure; errors read ``template: :LINE: ...``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NoReturn

from neurons.errors import InvalidRequestError

__all__ = ["Template", "TemplateError", "parse", "render"]


class TemplateError(InvalidRequestError):
    """A template failed to parse or to execute; ``line`` is 1-based where known."""

    error_code = "invalid_template"

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


# ---------------------------------------------------------------------------------- lexer

_SPACE = " \t\r\n"
_TERMINATORS = frozenset(_SPACE + ".,|:()")
_KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "break", "continue", "define", "template", "block"}
)
_NUMBER_RE = re.compile(r"[+-]?(?:0[xXbBoO][0-9a-fA-F_]*|[0-9_]*\.?[0-9_]*(?:[eE][+-]?[0-9_]+)?)")
_OPERAND_START = frozenset(
    {"bool", "charconst", "dot", "field", "ident", "number", "nil", "rawstring", "string", "var",
     "lparen"}
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    val: str
    pos: int
    end: int
    line: int
    spaced: bool = False  # whitespace precedes it inside the action

    def __str__(self) -> str:  # Go's item.String(), for "unexpected X in Y"
        if self.kind == "eof":
            return "EOF"
        if self.kind == "error":
            return self.val
        if self.kind == "keyword":
            return f"<{self.val}>"
        return _quote(self.val[:10]) + "..." if len(self.val) > 10 else _quote(self.val)


def _char(c: str) -> str:
    return f"U+{ord(c):04X} {c!r}"


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks: list[_Tok] = []

    def emit(self, kind: str, start: int, end: int, spaced: bool = False) -> None:
        line = self.src.count("\n", 0, start) + 1
        self.toks.append(_Tok(kind, self.src[start:end], start, end, line, spaced))

    def fail(self, msg: str, pos: int) -> None:
        line = self.src.count("\n", 0, pos) + 1
        self.toks.append(_Tok("error", msg, pos, pos, line))

    def right_delim(self, p: int) -> int | None:
        """Position after a right delimiter at ``p`` (and after trimmed space), else None."""
        src = self.src
        if p < len(src) and src[p] in _SPACE and src.startswith("-}}", p + 1):
            p += 4
            while p < len(src) and src[p] in _SPACE:
                p += 1
            return p
        return p + 2 if src.startswith("}}", p) else None

    def run(self) -> list[_Tok]:
        src, n, pos = self.src, len(self.src), 0
        while (i := src.find("{{", pos)) >= 0:
            trim = src.startswith("-", i + 2) and i + 3 < n and src[i + 3] in _SPACE
            j = i
            while trim and j > pos and src[j - 1] in _SPACE:
                j -= 1
            if j > pos:
                self.emit("text", pos, j)
            inner = i + (4 if trim else 2)
            if src.startswith("/*", inner):
                close = src.find("*/", inner + 2)
                if close < 0:
                    self.fail("unclosed comment", n)
                    return self.toks
                after = self.right_delim(close + 2)
                if after is None:
                    self.fail("comment ends before closing delimiter", close)
                    return self.toks
                pos = after
                continue
            self.emit("left", i, inner)
            after = self.action(inner)
            if after is None:
                return self.toks
            pos = after
        if pos < n:
            self.emit("text", pos, n)
        self.emit("eof", n, n)
        return self.toks

    def action(self, p: int) -> int | None:
        src, n, depth, spaced = self.src, len(self.src), 0, False
        while True:
            after = self.right_delim(p)
            if after is not None:
                if depth:
                    self.fail("unclosed left paren", p)
                    return None
                self.emit("right", p, p + 2)
                return after
            if p >= n:
                self.fail("unclosed action", p)
                return None
            c, start = src[p], p
            if c in _SPACE:
                p, spaced = p + 1, True
                continue
            kind, p = "char", p + 1
            if c == "=":
                kind = "assign"
            elif c == ":":
                if not src.startswith("=", p):
                    self.fail("expected :=", start)
                    return None
                kind, p = "declare", p + 1
            elif c == "|":
                kind = "pipe"
            elif c == "(":
                kind, depth = "lparen", depth + 1
            elif c == ")":
                kind, depth = "rparen", depth - 1
                if depth < 0:
                    self.fail("unexpected right paren", start)
                    return None
            elif c in "\"'":
                while p < n and src[p] not in (c, "\n"):
                    p += 2 if src[p] == "\\" else 1
                if p >= n or src[p] != c:
                    what = "quoted string" if c == '"' else "character constant"
                    self.fail(f"unterminated {what}", start)
                    return None
                kind, p = ("string" if c == '"' else "charconst"), p + 1
            elif c == "`":
                p = src.find("`", p) + 1
                if p == 0:
                    self.fail("unterminated raw quoted string", start)
                    return None
                kind = "rawstring"
            elif c in "+-" or c.isdigit() or (c == "." and src[p : p + 1].isdigit()):
                m = _NUMBER_RE.match(src, start)
                p = m.end() if m else p
                if not any(ch.isdigit() for ch in src[start:p]) or (
                    p < n and (src[p].isalnum() or src[p] == "_")
                ):
                    self.fail(f"bad number syntax: {_quote(src[start : p + 1])}", start)
                    return None
                kind = "number"
            elif c in "$." or c.isalpha() or c == "_":
                while p < n and (src[p].isalnum() or src[p] == "_"):
                    p += 1
                word = src[start:p]
                if c == "$":
                    kind = "var"
                elif c == ".":
                    kind = "field" if p > start + 1 else "dot"
                elif word in _KEYWORDS:
                    kind = "keyword"
                else:
                    kind = {"true": "bool", "false": "bool", "nil": "nil"}.get(word, "ident")
                if p < n and src[p] not in _TERMINATORS and not src.startswith("}}", p):
                    self.fail(f"bad character {_char(src[p])}", p)
                    return None
            elif not (c.isascii() and c.isprintable()):
                self.fail(f"unrecognized character in action: {_char(c)}", start)
                return None
            self.emit(kind, start, p, spaced)
            spaced = False


# ---------------------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class _Const:
    value: Any


@dataclass(frozen=True, slots=True)
class _Dot:
    pass


@dataclass(frozen=True, slots=True)
class _Nil:
    pass


@dataclass(frozen=True, slots=True)
class _Field:
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Var:
    name: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Ident:
    name: str


@dataclass(frozen=True, slots=True)
class _Paren:
    pipe: _Pipe


@dataclass(frozen=True, slots=True)
class _Chain:
    node: _Arg
    fields: tuple[str, ...]


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
class _Text:
    text: str


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


_Arg = _Const | _Dot | _Nil | _Field | _Var | _Ident | _Paren | _Chain
_Node = _Text | _Action | _Branch | _Jump


# --------------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = _Lexer(src).run()
        self.i = 0
        self.vars = ["$"]
        self.range_depth = 0
        self.action_line = 0

    def peek(self) -> _Tok:
        return self.toks[min(self.i, len(self.toks) - 1)]

    def next(self) -> _Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def error(self, msg: str, tok: _Tok | None = None) -> NoReturn:
        line = (tok or self.toks[min(self.i, len(self.toks)) - 1]).line
        raise TemplateError(f"template: :{line}: {msg}", line)

    def unexpected(self, tok: _Tok, context: str) -> NoReturn:
        if tok.kind == "error":
            extra = ""
            if self.action_line and self.action_line != tok.line:
                extra = f" in action started at :{self.action_line}"
            self.error(tok.val + extra, tok)
        self.error(f"unexpected {tok} in {context}", tok)

    def expect(self, kind: str, context: str) -> _Tok:
        tok = self.next()
        if tok.kind != kind:
            self.unexpected(tok, context)
        return tok

    def item_list(self, opener: _Tok | None) -> tuple[tuple[_Node, ...], str]:
        """Nodes up to ``{{end}}``/``{{else}}`` (consumed) or, at top level, EOF."""
        nodes: list[_Node] = []
        while True:
            tok = self.next()
            if tok.kind == "text":
                nodes.append(_Text(tok.val))
                continue
            if tok.kind == "eof":
                if opener is None:
                    return tuple(nodes), "eof"
                self.error(
                    f"unexpected EOF (missing {{{{end}}}} for {{{{{opener.val}}}}} "
                    f"on line {opener.line})",
                    tok,
                )
            if tok.kind != "left":
                self.unexpected(tok, "input")
            self.action_line = tok.line
            kw = self.peek()
            if kw.kind == "keyword" and kw.val in ("end", "else"):
                self.next()
                if opener is None:
                    self.error(f"unexpected {{{{{kw.val}}}}}", kw)
                if kw.val == "end":
                    self.expect("right", "end")
                return tuple(nodes), kw.val
            nodes.append(self.action())

    def action(self) -> _Node:
        tok = self.peek()
        if tok.kind != "keyword":
            return _Action(self.pipeline("command", "right"))
        self.next()
        if tok.val in ("if", "with", "range"):
            return self.control(tok)
        if tok.val in ("break", "continue"):
            self.expect("right", f"{{{{{tok.val}}}}}")
            if not self.range_depth:
                self.error(f"{{{{{tok.val}}}}} outside {{{{range}}}}", tok)
            return _Jump(tok.val == "break")
        self.error(f"{{{{{tok.val}}}}} is not supported", tok)

    def control(self, kw: _Tok) -> _Branch:
        mark, context = len(self.vars), kw.val
        pipe = self.pipeline(context, "right")
        self.range_depth += context == "range"
        body, term = self.item_list(kw)
        self.range_depth -= context == "range"
        else_body: tuple[_Node, ...] | None = None
        if term == "else":
            nxt = self.peek()
            if context in ("if", "with") and nxt.kind == "keyword" and nxt.val == context:
                self.next()
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
        is_assign = False
        while (var := self.peek()).kind == "var":
            after = self.toks[self.i + 1]
            if after.kind in ("declare", "assign"):
                self.i += 2
                is_assign = after.kind == "assign"
                if is_assign and var.val not in self.vars:
                    self.error(f"undefined variable {_quote(var.val)}", var)
                decl.append(var.val)
                break
            if not (after.kind == "char" and after.val == ","):
                break
            self.i += 2
            decl.append(var.val)
            if context != "range" or len(decl) > 1:
                self.error(f"too many declarations in {context}", after)
            if self.peek().kind != "var":
                self.error("range can only initialize variables", self.peek())
        if decl and not is_assign:
            self.vars.extend(decl)
        elif decl and len(decl) == 1 and self.toks[self.i - 1].kind not in ("declare", "assign"):
            self.error(f"missing := in {context}")
        cmds: list[_Cmd] = []
        while True:
            tok = self.next()
            if tok.kind == end:
                if not cmds:
                    self.error(f"missing value for {context}", tok)
                for stage, cmd in enumerate(cmds[1:], 2):
                    if isinstance(cmd.args[0], _Const | _Dot | _Nil):
                        self.error(f"non executable command in pipeline stage {stage}", tok)
                return _Pipe(tuple(decl), is_assign, tuple(cmds))
            if tok.kind not in _OPERAND_START:
                self.unexpected(tok, context)
            self.i -= 1
            cmds.append(self.command())

    def command(self) -> _Cmd:
        first, args = self.peek(), list[_Arg]()
        while True:
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            tok = self.peek()
            if tok.kind in ("right", "rparen", "pipe"):
                src = self.src[first.pos : self.toks[self.i - 1].end]
                self.i += tok.kind == "pipe"
                return _Cmd(tuple(args), first.line, src)
            if operand is None or not tok.spaced:
                self.next()
                self.unexpected(tok, "operand")

    def operand(self) -> _Arg | None:
        start = self.peek()
        node = self.term()
        fields: list[str] = []
        while node is not None and (tok := self.peek()).kind == "field" and not tok.spaced:
            self.next()
            fields.append(tok.val[1:])
        if node is None or not fields:
            return node
        if isinstance(node, _Field):
            return _Field(node.names + tuple(fields))
        if isinstance(node, _Var):
            return _Var(node.name, tuple(fields))
        if isinstance(node, _Const | _Dot | _Nil):
            self.error(f"unexpected . after term {_quote(start.val)}", start)
        return _Chain(node, tuple(fields))

    def term(self) -> _Arg | None:
        tok = self.next()
        kind = tok.kind
        if kind == "ident":
            if tok.val not in _FUNCS:
                self.error(f"function {_quote(tok.val)} not defined", tok)
            return _Ident(tok.val)
        if kind == "var":
            if tok.val not in self.vars:
                self.error(f"undefined variable {_quote(tok.val)}", tok)
            return _Var(tok.val)
        if kind == "lparen":
            return _Paren(self.pipeline("parenthesized pipeline", "rparen"))
        if kind == "dot":
            return _Dot()
        if kind == "nil":
            return _Nil()
        if kind == "field":
            return _Field((tok.val[1:],))
        if kind == "bool":
            return _Const(tok.val == "true")
        if kind == "rawstring":
            return _Const(tok.val[1:-1].replace("\r", ""))
        if kind in ("string", "charconst", "number"):
            try:
                if kind == "number":
                    return _Const(_number(tok.val))
                text = _unescape(tok.val[1:-1])
                if kind == "string":
                    return _Const(text)
                if len(text) != 1:
                    raise ValueError
                return _Const(ord(text))
            except ValueError:
                what = "number syntax" if kind == "number" else "syntax"
                self.error(f"illegal {what}: {tok.val}", tok)
        self.i -= 1
        return None


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPE_RE = re.compile(
    r"\\(?:([abfnrtv\\'\"])|x([0-9a-fA-F]{2})|([0-7]{3})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.?))",
    re.S,
)


def _unescape(body: str) -> str:
    def one(m: re.Match[str]) -> str:
        simple, x, octal, u, big, bad = m.groups()
        if bad is not None:
            raise ValueError(bad)
        if simple:
            return _ESCAPES.get(simple, simple)
        return chr(int(octal, 8) if octal else int(x or u or big, 16))

    return _ESCAPE_RE.sub(one, body)


def _number(text: str) -> int | float:
    t = text.replace("_", "")
    if re.fullmatch(r"[+-]?0[0-7]+", t):
        return int(t, 8)
    if re.fullmatch(r"[+-]?(?:0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|\d+)", t):
        return int(t, 0)
    return float(t)


# ---------------------------------------------------------------------------- formatting


def _quote(s: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x80 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out) + '"'


def _float_str(f: float, lo: int, hi: int, pad_negative_exp: bool) -> str:
    """Shortest round-trip digits; exponent form when the decimal exponent is < lo or >= hi."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign = "-" if f < 0 else ""
    _, digit_tuple, exp = Decimal(repr(abs(f))).as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple))
    x = exp + len(digits) - 1
    digits = digits.rstrip("0") or "0"
    if x < lo or x >= hi:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        width = 2 if x >= 0 or pad_negative_exp else 1
        return f"{sign}{mantissa}e{'+' if x >= 0 else '-'}{abs(x):0{width}d}"
    if x >= 0:
        whole, frac = digits[: x + 1].ljust(x + 1, "0"), digits[x + 1 :]
    else:
        whole, frac = "0", "0" * (-x - 1) + digits
    return sign + whole + ("." + frac if frac else "")


def _json(v: Any) -> str:
    """Go's json.Marshal; raises ValueError for NaN/Inf (Go's Marshal fails there)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("unsupported value")
        return _float_str(v, -6, 21, False)
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{_json_str(str(k))}:{_json(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(_json(x) for x in v) + "]"
    return _json_str(str(v))


def _json_str(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        out = out.replace(ch, esc)
    return out


def _fmt(v: Any) -> str:
    """How a value prints (``{{ . }}``, ``print``, ``%v``); see the module docstring."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _float_str(v, -4, 6, True)  # Go's %v: strconv 'g', shortest
    if isinstance(v, Mapping):
        try:
            return _json(v)
        except ValueError:
            return ""
    if isinstance(v, list | tuple):
        return "[" + " ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _gotype(v: Any) -> str:
    if v is None:
        return "<nil>"
    if isinstance(v, Mapping):
        return "map[string]interface {}"
    if isinstance(v, list | tuple):
        return "[]interface {}"
    names = {bool: "bool", int: "int", float: "float64", str: "string"}
    return names.get(type(v), type(v).__name__)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_VERB_RE = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?(.?)", re.S)


def _verb(v: Any, verb: str, flags: str, prec: int | None) -> str:
    plus = "+" if "+" in flags else ""
    if verb == "v" or (verb == "s" and not isinstance(v, bool | int | float)):
        s = _fmt(v)
        return s[:prec] if prec is not None and verb == "s" else s
    if verb == "q" and isinstance(v, str):
        return _quote(v if prec is None else v[:prec])
    if verb == "q" and _is_int(v):
        return "'" + _quote(chr(v))[1:-1].replace("'", "\\'").replace('\\"', '"') + "'"
    if verb == "t" and isinstance(v, bool):
        return _fmt(v)
    if _is_int(v) and verb in "dboxXcU":
        if verb == "c":
            return chr(v)
        if verb == "U":
            return f"U+{v:04X}"
        return format(v, plus + verb)
    if isinstance(v, str) and verb in "xX":
        return v.encode().hex().upper() if verb == "X" else v.encode().hex()
    if isinstance(v, int | float) and not isinstance(v, bool) and verb in "eEfFgG":
        if verb in "gG" and prec is None:
            s = plus * (v >= 0) + _float_str(float(v), -4, 6, True)
            return s.upper() if verb == "G" else s
        return format(float(v), f"{plus}.{6 if prec is None else prec}{verb}")
    return f"%!{verb}(<nil>)" if v is None else f"%!{verb}({_gotype(v)}={_fmt(v)})"


def _sprintf(fmt: Any, *args: Any) -> str:
    if not isinstance(fmt, str):
        raise _CallError(f"wrong type for value; expected string; got {_gotype(fmt)}")
    out, pos, k = [], 0, 0
    for m in _VERB_RE.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        if verb in ("%", ""):
            out.append("%" if verb else "%!(NOVERB)")
            continue
        if k >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        v, k = args[k], k + 1
        s = _verb(v, verb, flags, None if prec is None else int(prec or 0))
        w = int(width or 0)
        if "-" in flags:
            s = s.ljust(w)
        elif "0" in flags and isinstance(v, int | float) and s[:1] in "+-":
            s = s[0] + s[1:].rjust(w - 1, "0")
        else:
            s = s.rjust(w, "0" if "0" in flags and isinstance(v, int | float) else " ")
        out.append(s)
    out.append(fmt[pos:])
    if k < len(args):
        extra = ", ".join(f"{_gotype(a)}={_fmt(a)}" for a in args[k:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


# ------------------------------------------------------------------------------ functions


class _CallError(Exception):
    """A builtin function failed; reported as ``error calling NAME: ...``."""


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return "string" if isinstance(v, str) else "other"


def _zero_for(v: Any, other: Any) -> Any:
    """``None`` stands for the zero value of the other operand's type."""
    if v is not None:
        return v
    return {"bool": False, "number": 0, "string": ""}.get(_kind(other))


def _equal(a: Any, b: Any) -> bool:
    a, b = _zero_for(a, b), _zero_for(b, a)
    if a is None or b is None:
        return a is b
    ka, kb = _kind(a), _kind(b)
    if "other" in (ka, kb):
        raise _CallError(f"non-comparable type {_gotype(a if ka == 'other' else b)}")
    if ka != kb:
        raise _CallError("incompatible types for comparison")
    return bool(a == b)


def _less(a: Any, b: Any) -> bool:
    a, b = _zero_for(a, b), _zero_for(b, a)
    ka, kb = _kind(a), _kind(b)
    if ka not in ("number", "string") or kb not in ("number", "string"):
        raise _CallError("invalid type for comparison")
    if ka != kb:
        raise _CallError("incompatible types for comparison")
    return bool(a < b)


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise _CallError("missing argument for comparison")
    return any(_equal(a, b) for b in others)


def _len(v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, str):
        return len(v.encode())
    if isinstance(v, list | tuple | Mapping):
        return len(v)
    raise _CallError(f"len of type {_gotype(v)}")


def _index(v: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(v, Mapping):
            v = v.get(key)
        elif isinstance(v, list | tuple | str):
            seq = v.encode() if isinstance(v, str) else v
            if not _is_int(key):
                raise _CallError(f"cannot index slice/array with type {_gotype(key)}")
            if not 0 <= key < len(seq):
                raise _CallError(f"index out of range: {key}")
            v = seq[key]
        elif v is None:
            raise _CallError("index of untyped nil")
        else:
            raise _CallError(f"can't index item of type {_gotype(v)}")
    return v


def _slice(v: Any, *idx: Any) -> Any:
    if v is None:
        raise _CallError("slice of untyped nil")
    if not isinstance(v, list | tuple | str):
        raise _CallError(f"can't slice item of type {_gotype(v)}")
    if len(idx) > 3 or (isinstance(v, str) and len(idx) == 3):
        raise _CallError(f"too many slice indexes: {len(idx)}")
    seq = v.encode() if isinstance(v, str) else v
    for i in idx:
        if not _is_int(i):
            raise _CallError(f"cannot index slice/array with type {_gotype(i)}")
        if not 0 <= i <= len(seq):
            raise _CallError(f"index out of range: {i}")
    bounds = list(idx) + [len(seq)] * (2 - min(len(idx), 2))
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        if lo > hi:
            raise _CallError(f"invalid slice index: {lo} > {hi}")
    part = seq[bounds[0] : bounds[1]]
    return part.decode(errors="replace") if isinstance(part, bytes) else list(part)


def _print(*args: Any) -> str:
    out, prev_str = [], False
    for i, a in enumerate(args):
        is_str = isinstance(a, str)
        if i and not is_str and not prev_str:
            out.append(" ")
        out.append(_fmt(a))
        prev_str = is_str
    return "".join(out)


def _to_json(v: Any) -> str:
    try:
        return _json(v)
    except ValueError:
        return ""  # Ollama ignores json.Marshal's error and prints the nil bytes


def _arith(sign: int) -> Callable[[Any, Any], Any]:
    def op(a: Any, b: Any) -> Any:
        a, b = _zero_for(a, b), _zero_for(b, a)
        if _kind(a) != "number" or _kind(b) != "number":
            raise _CallError(f"expected numbers, got {_gotype(a)} and {_gotype(b)}")
        return a + sign * b

    return op


def _strings(test: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    def op(s: Any, part: Any) -> bool:
        s, part = _zero_for(s, ""), _zero_for(part, "")
        if not isinstance(s, str) or not isinstance(part, str):
            raise _CallError(f"expected strings, got {_gotype(s)} and {_gotype(part)}")
        return test(s, part)

    return op


# name -> (implementation, minimum args, maximum args or None for variadic).
# "and" and "or" are evaluated lazily by the executor; their entries only carry the arity.
_FUNCS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "and": (bool, 1, None),
    "or": (bool, 1, None),
    "not": (lambda v: not _truth(v), 1, 1),
    "eq": (_eq, 1, None),
    "ne": (lambda a, b: not _equal(a, b), 2, 2),
    "lt": (_less, 2, 2),
    "le": (lambda a, b: _less(a, b) or _equal(a, b), 2, 2),
    "gt": (lambda a, b: not (_less(a, b) or _equal(a, b)), 2, 2),
    "ge": (lambda a, b: not _less(a, b), 2, 2),
    "len": (_len, 1, 1),
    "index": (_index, 1, None),
    "slice": (_slice, 1, None),
    "print": (_print, 0, None),
    "println": (lambda *a: " ".join(_fmt(x) for x in a) + "\n", 0, None),
    "printf": (_sprintf, 1, None),
    "json": (_to_json, 1, 1),
    "add": (_arith(1), 2, 2),
    "sub": (_arith(-1), 2, 2),
    "contains": (_strings(lambda s, sub: sub in s), 2, 2),
    "hasPrefix": (_strings(str.startswith), 2, 2),
    "hasSuffix": (_strings(str.endswith), 2, 2),
}


def _truth(v: Any) -> bool:
    """Go's truth: false, 0, nil and empty strings, lists and maps are false."""
    if v is None:
        return False
    if isinstance(v, bool | int | float | str | list | tuple | Mapping):
        return bool(v)
    return True


# ------------------------------------------------------------------------------- executor

_NO_FINAL: Any = object()  # "no value piped in from a previous command"


class _LoopSignal(Exception):
    def __init__(self, is_break: bool) -> None:
        super().__init__()
        self.is_break = is_break


class _Exec:
    def __init__(self, data: Any) -> None:
        self.vars: list[list[Any]] = [["$", data]]  # [name, value], innermost last
        self.out: list[str] = []
        self.cmd: _Cmd | None = None

    def fail(self, msg: str) -> NoReturn:
        line = self.cmd.line if self.cmd else 0
        where = f" at <{self.cmd.src}>" if self.cmd else ""
        raise TemplateError(f'template: :{line}: executing ""{where}: {msg}', line or None)

    def walk(self, dot: Any, nodes: tuple[_Node, ...]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
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
        mark, pipe = len(self.vars), node.pipe
        value = self.pipe(dot, _Pipe((), False, pipe.cmds))
        items = self.items(value, len(pipe.decl))
        if not pipe.is_assign:
            self.vars.extend([name, value] for name in pipe.decl)
        for key, elem in items:
            names = pipe.decl if pipe.is_assign else ("",) * len(pipe.decl)
            for offset, (name, val) in enumerate(zip(names[::-1], (elem, key), strict=False)):
                if pipe.is_assign:
                    self.set_var(name, val)
                else:
                    self.vars[-1 - offset][1] = val
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
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return list(enumerate(value))
        if isinstance(value, Mapping):
            try:
                keys = sorted(value)
            except TypeError:
                keys = list(value)
            return [(k, value[k]) for k in keys]
        if _is_int(value):
            if nvars > 1:
                self.fail(f"can't use {value} to iterate over more than one variable")
            return [(i, i) for i in range(value)]
        self.fail(f"range can't iterate over {_fmt(value)}")

    def var(self, name: str) -> Any:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        self.fail(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        self.fail(f"undefined variable: {name}")

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
        outer, self.cmd = self.cmd, cmd
        first = cmd.args[0]
        if isinstance(first, _Ident):
            value = self.call(first.name, cmd.args[1:], dot, final)
        elif len(cmd.args) > 1 or final is not _NO_FINAL:
            self.fail("can't give argument to non-function")
        elif isinstance(first, _Nil):
            self.fail("nil is not a command")
        else:
            value = self.arg(dot, first)
        self.cmd = outer
        return value

    def arg(self, dot: Any, node: _Arg) -> Any:
        if isinstance(node, _Const):
            return node.value
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Nil):
            return None
        if isinstance(node, _Field):
            return self.fields(dot, node.names)
        if isinstance(node, _Var):
            return self.fields(self.var(node.name), node.fields)
        if isinstance(node, _Ident):
            return self.call(node.name, (), dot, _NO_FINAL)
        if isinstance(node, _Paren):
            return self.pipe(dot, node.pipe)
        return self.fields(self.arg(dot, node.node), node.fields)

    def fields(self, value: Any, names: tuple[str, ...]) -> Any:
        for name in names:
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
            value = final
            for node in nodes:
                value = self.arg(dot, node)
                if _truth(value) == (name == "or"):
                    return value
            return final if final is not _NO_FINAL else value
        args = [self.arg(dot, node) for node in nodes]
        if final is not _NO_FINAL:
            args.append(final)
        try:
            return fn(*args)
        except _CallError as exc:
            self.fail(f"error calling {name}: {exc}")


# ------------------------------------------------------------------------------------ API


class Template:
    """A parsed template; :meth:`render` may be called any number of times."""

    __slots__ = ("_nodes", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._nodes, _ = _Parser(source).item_list(None)

    def render(self, data: Mapping[str, Any]) -> str:
        executor = _Exec(data)
        executor.walk(data, self._nodes)
        return "".join(executor.out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def parse(template: str) -> Template:
    """Parse ``template``; raises :class:`TemplateError` for a syntax error."""
    return Template(template)


@functools.lru_cache(maxsize=64)
def _cached(template: str) -> Template:
    return Template(template)


def render(template: str, data: Mapping[str, Any]) -> str:
    """Parse (cached) and execute ``template`` with ``data`` as dot."""
    return _cached(template).render(data)
