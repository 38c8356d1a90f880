"""The lexer: splits a template source into text, delimiter and action tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from ._format import _quote

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
