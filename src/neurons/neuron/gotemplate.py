"""A renderer for the subset of Go's ``text/template`` that Ollama Modelfile TEMPLATEs use.

>>> render("{{ if .System }}[{{ .System }}] {{ end }}{{ .Prompt }}", {"Prompt": "hi"})
'hi'

Supported: text, ``{{ actions }}`` with the trim markers ``{{- `` and `` -}}``, comments
``{{/* ... */}}``; ``.``, ``.Field.Chain``, ``$``, ``$var.Field``, ``$x := ...``, ``$x = ...``;
``if``/``else if``/``else``, ``with``/``else with``/``else``, ``range`` (optionally ``$i, $e :=``)
with ``else``, ``break`` and ``continue``; pipelines with ``|`` and parenthesised pipelines;
string (Go escapes), raw-string, character, integer, float, ``true``/``false``/``nil`` literals.
Functions: Go's ``and or not len index slice eq ne lt le gt ge print printf println``, Ollama's
``json``, and the extras ``add sub contains hasPrefix hasSuffix`` (argument order of Go's
``strings`` package: ``contains s substr``). ``define``/``template``/``block``, ``call``,
``html``/``js``/``urlquery``, methods and complex numbers are not supported (parse errors).

Deliberate differences from Go, because Ollama executes templates on structs, where a missing
field is just a zero value:

* a missing map key, and any field of ``None``, is ``None``, which prints as the empty string
  (Go prints ``<no value>`` or ``<nil>``) and compares equal to ``""``, ``0`` and ``false``
  (the zero value of the other operand); ints and floats compare numerically;
* a dict prints as compact JSON, as Ollama's tool types do through their ``String()`` methods;
  lists print Go-style, ``[a b c]``;
* ``json`` escapes like ``json.Marshal`` (``<`` becomes ``\\u003c``), but keeps dict keys in
  insertion order (Ollama's structs have a fixed field order; Go would sort map keys).

As in Go: ``range`` over a dict visits its keys sorted; ``len``/``index``/``slice`` on strings
count UTF-8 bytes; ``and``/``or`` short-circuit; variables are scoped to the enclosing control
structure; error messages read ``template: :LINE: ...``.
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
_KEYWORDS = frozenset("if else end range with break continue define template block".split())
_WORDS = {"true": "bool", "false": "bool", "nil": "nil"}
_NUMBER_RE = re.compile(r"[+-]?(?:0[xXbBoO][0-9a-fA-F_]*|[0-9_]*\.?[0-9_]*(?:[eE][+-]?[0-9_]+)?)")
_PUNCT = {"=": "assign", "|": "pipe", "(": "lparen", ")": "rparen"}
_OPERAND_START = frozenset(
    "bool char_const dot field ident number nil raw string var lparen".split()
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
        if self.kind in ("eof", "error", "keyword"):
            return {"eof": "EOF", "error": self.val}.get(self.kind, f"<{self.val}>")
        return _quote(self.val[:10]) + "..." if len(self.val) > 10 else _quote(self.val)


class _LexStop(Exception):
    pass


class _Lexer:
    """Splits the source into text, delimiter and action tokens; stops at an ``error`` token."""

    def __init__(self, src: str) -> None:
        self.src, self.toks = src, list[_Tok]()
        self.line, self.line_pos = 1, 0  # tokens come in source order: count lines as we go

    def emit(self, kind: str, start: int, end: int, spaced: bool = False, val: str = "") -> None:
        self.line += self.src.count("\n", self.line_pos, start)
        self.line_pos = max(self.line_pos, start)
        self.toks.append(_Tok(kind, val or self.src[start:end], start, end, self.line, spaced))

    def fail(self, msg: str, pos: int) -> NoReturn:
        self.emit("error", pos, pos, val=msg)
        raise _LexStop

    def right_delim(self, p: int) -> int | None:
        """The position after a right delimiter at ``p`` (and the space it trims), or None."""
        src = self.src
        if p < len(src) and src[p] in _SPACE and src.startswith("-}}", p + 1):
            p += 4
            while p < len(src) and src[p] in _SPACE:
                p += 1
            return p
        return p + 2 if src.startswith("}}", p) else None

    def run(self) -> list[_Tok]:
        src, pos = self.src, 0
        try:
            while (i := src.find("{{", pos)) >= 0:
                trim = src[i + 2 : i + 3] == "-" and src[i + 3 : i + 4] in tuple(_SPACE)
                j = i
                while trim and j > pos and src[j - 1] in _SPACE:
                    j -= 1
                if j > pos:
                    self.emit("text", pos, j)
                inner = i + (4 if trim else 2)
                if src.startswith("/*", inner):
                    close = src.find("*/", inner + 2)
                    if close < 0:
                        self.fail("unclosed comment", len(src))
                    after = self.right_delim(close + 2)
                    if after is None:
                        self.fail("comment ends before closing delimiter", close)
                    pos = after
                else:
                    self.emit("left", i, inner)
                    pos = self.action(inner)
            if pos < len(src):
                self.emit("text", pos, len(src))
            self.emit("eof", len(src), len(src))
        except _LexStop:
            pass
        return self.toks

    def action(self, p: int) -> int:
        src, n, depth, spaced = self.src, len(self.src), 0, False
        while (after := self.right_delim(p)) is None:
            if p >= n:
                self.fail("unclosed action", p)
            c, start, p = src[p], p, p + 1
            if c in _SPACE:
                spaced = True
                continue
            kind = _PUNCT.get(c, "char")
            if c == ":":
                if src[p : p + 1] != "=":
                    self.fail("expected :=", start)
                kind, p = "declare", p + 1
            elif c in "()":
                depth += 1 if c == "(" else -1
                if depth < 0:
                    self.fail("unexpected right paren", start)
            elif c in "\"'":
                while p < n and src[p] not in (c, "\n"):
                    p += 2 if src[p] == "\\" else 1
                if p >= n or src[p] != c:
                    what = "quoted string" if c == '"' else "character constant"
                    self.fail(f"unterminated {what}", start)
                kind, p = ("string" if c == '"' else "char_const"), p + 1
            elif c == "`":
                p = src.find("`", p) + 1
                if not p:
                    self.fail("unterminated raw quoted string", start)
                kind = "raw"
            elif c in "+-" or c.isdigit() or (c == "." and src[p : p + 1].isdigit()):
                match = _NUMBER_RE.match(src, start)
                p = match.end() if match else p
                if not any(ch.isdigit() for ch in src[start:p]) or src[p : p + 1].isalnum():
                    self.fail(f"bad number syntax: {_quote(src[start : p + 1])}", start)
                kind = "number"
            elif c in "$." or c.isalpha() or c == "_":
                while p < n and (src[p].isalnum() or src[p] == "_"):
                    p += 1
                word = src[start:p]
                if c in "$.":
                    kind = "var" if c == "$" else "field" if p > start + 1 else "dot"
                else:
                    kind = "keyword" if word in _KEYWORDS else _WORDS.get(word, "ident")
                if p < n and src[p] not in _TERMINATORS and not src.startswith("}}", p):
                    self.fail(f"bad character U+{ord(src[p]):04X} {src[p]!r}", p)
            elif not (c.isascii() and c.isprintable()):
                self.fail(f"unrecognized character in action: U+{ord(c):04X} {c!r}", start)
            self.emit(kind, start, p, spaced)
            spaced = False
        if depth:
            self.fail("unclosed left paren", p)
        self.emit("right", p, p + 2)
        return after


# ---------------------------------------------------------------------------------- nodes


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


# --------------------------------------------------------------------------------- parser


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


# ---------------------------------------------------------------------------- formatting


def _quote(s: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out) + '"'


def _float_str(f: float, lo: int, hi: int, pad_negative_exp: bool = True) -> str:
    """Shortest round-trip digits, in exponent form when the decimal exponent is < lo or >= hi."""
    if not math.isfinite(f):
        return "NaN" if math.isnan(f) else "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    _, digit_tuple, exp = Decimal(repr(abs(f))).as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple))
    x, digits, sign = exp + len(digits) - 1, digits.rstrip("0"), "-" if f < 0 else ""
    if x < lo or x >= hi:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        width = 2 if x >= 0 or pad_negative_exp else 1
        return f"{sign}{mantissa}e{'+' if x >= 0 else '-'}{abs(x):0{width}d}"
    if x < 0:
        return f"{sign}0.{'0' * (-x - 1)}{digits}"
    whole, frac = digits[: x + 1].ljust(x + 1, "0"), digits[x + 1 :]
    return sign + whole + ("." + frac if frac else "")


def _json(v: Any) -> str:
    """Go's json.Marshal; raises ValueError for NaN and infinities, as Go's does."""
    if v is None or isinstance(v, bool):
        return "null" if v is None else "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("unsupported value")
        return _float_str(v, -6, 21, pad_negative_exp=False)
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{_json(str(k))}:{_json(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(_json(x) for x in v) + "]"
    out = json.dumps(str(v), ensure_ascii=False)
    for ch in "<>&\u2028\u2029":  # json.Marshal's HTML-safe escaping
        out = out.replace(ch, f"\\u{ord(ch):04x}")
    return out


def _fmt(v: Any) -> str:
    """How a value prints (``{{ . }}``, ``print``, ``%v``); see the module docstring."""
    if v is None or isinstance(v, str):
        return v or ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _float_str(v, -4, 6)  # fmt's %v: strconv's shortest 'g'
    if isinstance(v, Mapping):
        return _to_json(v)
    if isinstance(v, list | tuple):
        return "[" + " ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _gotype(v: Any) -> str:
    if isinstance(v, Mapping):
        return "map[string]interface {}"
    if isinstance(v, list | tuple):
        return "[]interface {}"
    names = {bool: "bool", int: "int", float: "float64", str: "string", type(None): "<nil>"}
    return names.get(type(v), type(v).__name__)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_VERB_RE = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?(.?)", re.S)


def _verb(v: Any, verb: str, flags: str, prec: int | None) -> str:
    """One printf verb: %v %s %q %d %t %x %X %o %b %c %e %f %g (and upper-case forms)."""
    plus = "+" if "+" in flags else ""
    if verb == "v" or (verb == "s" and not isinstance(v, int | float)):
        s = _fmt(v)
        return s[:prec] if prec is not None and verb == "s" else s
    if verb == "q" and isinstance(v, str):
        return _quote(v if prec is None else v[:prec])
    if verb == "q" and _is_int(v):
        return "'" + _quote(chr(v))[1:-1].replace('\\"', '"').replace("'", "\\'") + "'"
    if verb == "t" and isinstance(v, bool):
        return _fmt(v)
    if _is_int(v) and verb in "dboxXc":
        return chr(v) if verb == "c" else format(v, plus + verb)
    if isinstance(v, str) and verb in "xX":
        return v.encode().hex().upper() if verb == "X" else v.encode().hex()
    if isinstance(v, int | float) and not isinstance(v, bool) and verb in "eEfFgG":
        if verb in "gG" and prec is None:
            s = plus * (v >= 0) + _float_str(float(v), -4, 6)
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
        if verb in ("%", "") or k >= len(args):
            out.append("%" if verb == "%" else f"%!{verb}(MISSING)" if verb else "%!(NOVERB)")
            continue
        v, k = args[k], k + 1
        s, w = _verb(v, verb, flags, None if prec is None else int(prec or 0)), int(width or 0)
        zero = "0" in flags and "-" not in flags and isinstance(v, int | float)
        if zero and s[:1] in ("+", "-"):
            s = s[0] + s[1:].rjust(w - 1, "0")
        out.append(s.ljust(w) if "-" in flags else s.rjust(w, "0" if zero else " "))
    out.append(fmt[pos:])
    if k < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{_gotype(a)}={_fmt(a)}" for a in args[k:]) + ")")
    return "".join(out)


# ------------------------------------------------------------------------------ functions


class _CallError(Exception):
    """A builtin failed; reported as ``error calling NAME: ...``."""


def _truth(v: Any) -> bool:
    """Go's truth: false, 0, nil and empty strings, lists and maps are false."""
    return (
        bool(v)
        if isinstance(v, bool | int | float | str | list | tuple | Mapping)
        else v is not None
    )


def _kind(v: Any) -> str:
    if isinstance(v, bool | str):
        return "bool" if isinstance(v, bool) else "string"
    return "number" if isinstance(v, int | float) else "other"


def _zeroed(a: Any, b: Any) -> tuple[Any, Any]:
    """``None`` stands for the zero value of the other operand's type."""
    zeros = {"bool": False, "number": 0, "string": ""}
    return (zeros.get(_kind(b)) if a is None else a), (zeros.get(_kind(a)) if b is None else b)


def _equal(a: Any, b: Any) -> bool:
    a, b = _zeroed(a, b)
    if a is None or b is None:
        return a is b
    if "other" in (_kind(a), _kind(b)):
        raise _CallError(f"non-comparable type {_gotype(a if _kind(a) == 'other' else b)}")
    if _kind(a) != _kind(b):
        raise _CallError("incompatible types for comparison")
    return bool(a == b)


def _less(a: Any, b: Any) -> bool:
    a, b = _zeroed(a, b)
    if not {_kind(a), _kind(b)} <= {"number", "string"}:
        raise _CallError("invalid type for comparison")
    if _kind(a) != _kind(b):
        raise _CallError("incompatible types for comparison")
    return bool(a < b)


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise _CallError("missing argument for comparison")
    return any(_equal(a, b) for b in others)


def _len(v: Any) -> int:
    if v is None or isinstance(v, str | list | tuple | Mapping):
        return len(v.encode()) if isinstance(v, str) else len(v or ())
    raise _CallError(f"len of type {_gotype(v)}")


def _check_index(key: Any, size: int, inclusive: bool = False) -> int:
    if not _is_int(key):
        raise _CallError(f"cannot index slice/array with type {_gotype(key)}")
    if not 0 <= key < size + inclusive:
        raise _CallError(f"index out of range: {key}")
    return int(key)


def _index(v: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(v, Mapping):
            v = v.get(key)
        elif isinstance(v, list | tuple | str):
            seq = v.encode() if isinstance(v, str) else v
            v = seq[_check_index(key, len(seq))]
        else:
            raise _CallError(
                "index of untyped nil" if v is None else f"can't index item of type {_gotype(v)}"
            )
    return v


def _slice(v: Any, *idx: Any) -> Any:
    if not isinstance(v, list | tuple | str):
        raise _CallError(
            "slice of untyped nil" if v is None else f"can't slice item of type {_gotype(v)}"
        )
    if len(idx) > 3 or (isinstance(v, str) and len(idx) == 3):
        raise _CallError(f"too many slice indexes: {len(idx)}")
    seq = v.encode() if isinstance(v, str) else v
    bounds = [_check_index(i, len(seq), inclusive=True) for i in idx]
    lo, hi = (bounds + [0, len(seq)][len(bounds) :])[:2]
    for a, b in zip([lo, *bounds[1:]], bounds[1:], strict=False):
        if a > b:
            raise _CallError(f"invalid slice index: {a} > {b}")
    part = seq[lo:hi]
    return part.decode(errors="replace") if isinstance(part, bytes) else list(part)


def _print(*args: Any) -> str:
    """Go's fmt.Sprint: a space between operands when neither is a string."""
    out = [_fmt(a) for a in args]
    for i in range(len(args) - 1, 0, -1):
        if not isinstance(args[i], str) and not isinstance(args[i - 1], str):
            out.insert(i, " ")
    return "".join(out)


def _to_json(v: Any) -> str:
    try:
        return _json(v)
    except ValueError:
        return ""  # Ollama's json ignores Marshal's error and prints the empty result


def _binary(op: Callable[[Any, Any], Any], kind: str) -> Callable[[Any, Any], Any]:
    def call(a: Any, b: Any) -> Any:
        a, b = _zeroed(a, b)
        if _kind(a) != kind or _kind(b) != kind:
            raise _CallError(f"expected {kind}s, got {_gotype(a)} and {_gotype(b)}")
        return op(a, b)

    return call


# name -> (implementation, minimum arguments, maximum or None when variadic). The executor
# evaluates "and" and "or" itself, lazily; their entries only carry the arity.
_FUNCS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "and": (_truth, 1, None),
    "or": (_truth, 1, None),
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
    "add": (_binary(lambda a, b: a + b, "number"), 2, 2),
    "sub": (_binary(lambda a, b: a - b, "number"), 2, 2),
    "contains": (_binary(lambda s, part: part in s, "string"), 2, 2),
    "hasPrefix": (_binary(str.startswith, "string"), 2, 2),
    "hasSuffix": (_binary(str.endswith, "string"), 2, 2),
}


# ------------------------------------------------------------------------------- executor

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


# ------------------------------------------------------------------------------------ API


class Template:
    """A parsed template; :meth:`render` may be called any number of times."""

    __slots__ = ("_nodes", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._nodes = _Parser(source).item_list(None)[0]

    def render(self, data: Mapping[str, Any]) -> str:
        """Execute with ``data`` as dot (and ``$``)."""
        executor = _Exec(data)
        executor.walk(data, self._nodes)
        return "".join(executor.out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def parse(template: str) -> Template:
    """Parse ``template``; raises :class:`TemplateError` on a syntax error."""
    return Template(template)


@functools.lru_cache(maxsize=64)
def _cached(template: str) -> Template:
    return Template(template)


def render(template: str, data: Mapping[str, Any]) -> str:
    """Parse (cached) and execute ``template`` with ``data`` as dot."""
    return _cached(template).render(data)
