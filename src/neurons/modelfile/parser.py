"""The Modelfile data model and a parser that reads exactly what Ollama's parser reads.

The scanner is a port of the state machine in Ollama's ``parser/parser.go`` (``ParseFile`` and
``parseRuneForState``), rune for rune, so a file that ``ollama create`` accepts gives the same
instructions here, and one it refuses fails here with the same words:

* instruction names are case-insensitive; ``#`` starts a comment only where an instruction
  could start; a value runs to the end of the line and is trimmed;
* ``"..."`` and ``\"\"\"...\"\"\"`` quote a value, which may then span lines: a value ends at
  the first line end where the text so far, trimmed, is a complete quoted string;
* ``PARAMETER name value`` (names of ``[A-Za-z0-9_]``, case kept) and ``MESSAGE role text``
  (role ``system``, ``user`` or ``assistant``); anything else after the command word is the
  value;
* input is UTF-8, or UTF-16 with a byte-order mark; like Go's ``strconv.IsPrint`` filter, a
  non-printable character (control, format, non-ASCII space) is dropped from a value, except
  the spaces, tabs and line ends that make up its layout.

Every error names the line its instruction starts on, ``(line 3): ...``. Ollama's line
numbers differ in three corners, all deliberate here: it gives none with ``unexpected EOF``,
it counts CRLF as two lines, and it blames the next line for a command word that ends its
line (``FROM`` alone).

>>> mf = parse('FROM llama3\\nPARAMETER temperature 0.2\\nSYSTEM \"\"\"Be brief.\"\"\"\\n')
>>> mf.value("from"), mf.get_parameter("temperature"), mf.value("system")
('llama3', 0.2, 'Be brief.')
>>> parse("FROM x\\nFOO bar\\n")
Traceback (most recent call last):
    ...
neurons.errors.ModelfileError: (line 2): command must be one of "from", "license", \
"template", "system", "adapter", "draft", "renderer", "parser", "parameter", "message", \
or "requires"
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from neurons.errors import ModelfileError
from neurons.modelfile.schema import (
    DEPRECATED_PARAMETERS,
    PARAMETERS,
    coerce_parameter,
    format_parameter_value,
)

__all__ = [
    "COMMANDS",
    "MESSAGE_ROLES",
    "Instruction",
    "Modelfile",
    "check",
    "is_valid_requires",
    "parse",
    "parse_file",
    "validate",
]

log = logging.getLogger(__name__)

COMMANDS: tuple[str, ...] = (
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
)
MESSAGE_ROLES: tuple[str, ...] = ("system", "user", "assistant")

_INVALID_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
_INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"'
_UNEXPECTED_EOF = "unexpected EOF"
_NO_FROM = "no FROM line"
_BAD_REQUIRES = "requires must be a valid semver (e.g. 0.14.0)"

# golang.org/x/mod/semver.IsValid after Ollama prefixes a missing "v": "v1" and "v1.2" are
# valid shorthands; a pre-release or build suffix needs all three numbers.
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_IDENT = r"(?:[0-9A-Za-z-]*[A-Za-z-][0-9A-Za-z-]*|0|[1-9][0-9]*)"
_BUILD_IDENT = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(
    rf"v{_NUM}(?:\.{_NUM}(?:\.{_NUM}(?:-{_PRE_IDENT}(?:\.{_PRE_IDENT})*)?"
    rf"(?:\+{_BUILD_IDENT}(?:\.{_BUILD_IDENT})*)?)?)?",
    re.ASCII,
)

# Scanner states, named as in parser.go.
_NIL, _NAME, _VALUE, _PARAMETER, _MESSAGE, _COMMENT = range(6)
_BLANKS = " \t"  # parser.go isSpace
_LINE_ENDS = "\r\n"  # parser.go isNewline
_WHITESPACE = _BLANKS + _LINE_ENDS  # all the whitespace a value buffer can hold
_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PARAMETER_CHARS = _ASCII_LETTERS | frozenset("0123456789_")


@dataclass(frozen=True)
class Instruction:
    """One Modelfile instruction. ``line`` is informational and ignored by ``==``."""

    command: str  # lower-case: from, parameter, template, system, adapter, license, ...
    value: str  # the argument text, unquoted
    key: str | None = None  # PARAMETER name (case kept) or MESSAGE role
    line: int = field(default=0, compare=False)


@dataclass
class Modelfile:
    """A parsed Modelfile: its instructions in source order, plus typed accessors."""

    instructions: list[Instruction] = field(default_factory=list)

    def first(self, command: str) -> Instruction | None:
        command = command.lower()
        return next((i for i in self.instructions if i.command == command), None)

    def value(self, command: str) -> str | None:
        """The last value of ``command``: for FROM, TEMPLATE, SYSTEM... the one Ollama uses."""
        values = self.values(command)
        return values[-1] if values else None

    def values(self, command: str) -> list[str]:
        command = command.lower()
        return [i.value for i in self.instructions if i.command == command]

    def add_instruction(self, command: str, value: str, key: str | None = None) -> None:
        """Append an instruction as is (a second LICENSE, another MESSAGE, ...)."""
        self.instructions.append(Instruction(command.lower(), value, key))

    def set_instruction(self, command: str, value: str) -> None:
        """Set a single-valued instruction: replace the first one in place and drop the rest,
        or append it (FROM goes first, where Ollama's own output puts it)."""
        command = command.lower()
        if command not in COMMANDS:
            raise ModelfileError(_INVALID_COMMAND)
        if command in ("parameter", "message"):
            raise ModelfileError(f"{command.upper()} takes a key: use set_parameter or messages")
        if command == "requires" and not is_valid_requires(value):
            raise ModelfileError(_BAD_REQUIRES)
        self._replace(lambda i: i.command == command, [Instruction(command, value)])

    def remove(self, command: str, key: str | None = None) -> None:
        """Remove every ``command`` instruction (only those with ``key``, when given)."""
        command = command.lower()
        self.instructions = [
            i
            for i in self.instructions
            if not (i.command == command and (key is None or i.key == key))
        ]

    def parameters(self) -> dict[str, Any]:
        """Typed PARAMETER values: the last line wins, ``stop`` lines accumulate into a list,
        deprecated names are dropped. Raises ModelfileError listing every bad line."""
        values, problems = _typed_parameters(self.instructions)
        if problems:
            raise ModelfileError(problems)
        return values

    def get_parameter(self, name: str) -> Any:
        """The typed value of PARAMETER ``name`` (a list for ``stop``), or None if unset."""
        if name in DEPRECATED_PARAMETERS:
            return None
        if name not in PARAMETERS:
            raise ModelfileError(f"unknown parameter '{name}'")
        lines = [i for i in self.instructions if i.command == "parameter" and i.key == name]
        if not lines:
            return None
        if PARAMETERS[name].type == "string_list":
            return [_coerce_line(i)[0] for i in lines]
        return _coerce_line(lines[-1])

    def set_parameter(self, name: str, value: Any) -> None:
        """Set PARAMETER ``name`` from a typed value or Modelfile text, checked against the
        schema. ``stop`` takes a string or a list and replaces every stop line; None removes
        the parameter."""
        if value is None:
            self.remove_parameter(name)
            return
        new = [Instruction("parameter", text, name) for text in format_parameter_value(name, value)]
        self._replace(lambda i: i.command == "parameter" and i.key == name, new)

    def remove_parameter(self, name: str) -> None:
        self.remove("parameter", name)

    def messages(self) -> list[dict[str, str]]:
        return [
            {"role": i.key or "", "content": i.value}
            for i in self.instructions
            if i.command == "message"
        ]

    def _replace(self, match: Callable[[Instruction], bool], new: list[Instruction]) -> None:
        """Put ``new`` where the first match is and drop every match; with no match, append
        (FROM at the top instead)."""
        positions = [n for n, i in enumerate(self.instructions) if match(i)]
        if positions:
            kept = [i for i in self.instructions if not match(i)]
            self.instructions = kept[: positions[0]] + new + kept[positions[0] :]
        elif new and new[0].command == "from":
            self.instructions[:0] = new
        else:
            self.instructions.extend(new)


def is_valid_requires(value: str) -> bool:
    """Whether REQUIRES ``value`` is a version Ollama accepts (``0.14.0``, ``v1.2``...)."""
    return _SEMVER.fullmatch(value if value.startswith("v") else "v" + value) is not None


def _at(line: int, message: str) -> str:
    return f"(line {line}): {message}" if line > 0 else message


def _coerce_line(instruction: Instruction) -> Any:
    try:
        return coerce_parameter(instruction.key or "", instruction.value)
    except ModelfileError as exc:
        raise ModelfileError(_at(instruction.line, str(exc))) from None


def _typed_parameters(instructions: list[Instruction]) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    problems: list[str] = []
    for instruction in instructions:
        name = instruction.key or ""
        if instruction.command != "parameter" or name in DEPRECATED_PARAMETERS:
            continue
        try:
            value = _coerce_line(instruction)
        except ModelfileError as exc:
            problems.append(str(exc))
            continue
        if isinstance(value, list):
            values.setdefault(name, []).extend(value)
        else:
            values[name] = value
    return values, problems


def check(modelfile: Modelfile) -> tuple[list[str], list[str]]:
    """Every semantic problem of ``modelfile`` and its warnings, each ``(line N): ...``.

    Problems are what would make ``ollama create`` fail: no FROM, an unknown command or
    message role (possible in a Modelfile built in code), an unknown PARAMETER name, a value
    of the wrong type, an invalid REQUIRES. Warnings are deprecated parameters (Ollama drops
    them) and ADAPTER lines that a later ADAPTER overrides (Ollama keeps only the last).
    """
    problems: list[str] = []
    warnings: list[str] = []
    if not any(i.command == "from" for i in modelfile.instructions):
        problems.append(_NO_FROM)
    for instruction in modelfile.instructions:
        command, line = instruction.command, instruction.line
        if command not in COMMANDS:
            problems.append(_at(line, _INVALID_COMMAND))
        elif command == "message" and instruction.key not in MESSAGE_ROLES:
            problems.append(_at(line, _INVALID_ROLE))
        elif command == "requires" and not is_valid_requires(instruction.value):
            problems.append(_at(line, _BAD_REQUIRES))
        elif command == "parameter" and (instruction.key or "") in DEPRECATED_PARAMETERS:
            warnings.append(_at(line, f"parameter {instruction.key} is deprecated"))
        elif command == "parameter":
            try:
                _coerce_line(instruction)
            except ModelfileError as exc:
                problems.append(str(exc))
    adapters = [i for i in modelfile.instructions if i.command == "adapter"]
    warnings.extend(
        _at(i.line, "only the last ADAPTER is used: Ollama supports one adapter")
        for i in adapters[:-1]
    )
    return problems, warnings


def validate(source: str | bytes | Modelfile) -> Modelfile:
    """Parse (unless given a Modelfile) and check; raise ModelfileError listing every problem.

    Warnings (deprecated parameters, overridden ADAPTERs) are logged.
    """
    modelfile = source if isinstance(source, Modelfile) else parse(source, strict=False)
    problems, warnings = check(modelfile)
    for warning in warnings:
        log.warning("%s", warning)
    if problems:
        raise ModelfileError(problems)
    return modelfile


def parse(text: str | bytes, *, strict: bool = True) -> Modelfile:
    """Parse Modelfile text (bytes are decoded per their byte-order mark).

    Raises ModelfileError for what Ollama's parser refuses: the first syntax error (unknown
    command, bad message role, unterminated value), then no FROM line or a bad REQUIRES.
    ``strict=False`` stops after the syntax, leaving those two to :func:`check`, for a
    caller that loads a Modelfile first and reports every problem later. Parameter names
    and values are checked by :func:`check` / :func:`validate`.
    """
    modelfile = _scan(_decode(text))
    if not strict:
        return modelfile
    problems = [] if modelfile.first("from") else [_NO_FROM]
    problems += [
        _at(i.line, _BAD_REQUIRES)
        for i in modelfile.instructions
        if i.command == "requires" and not is_valid_requires(i.value)
    ]
    if problems:
        raise ModelfileError(problems)
    return modelfile


def parse_file(path: str | PathLike[str], *, strict: bool = True) -> Modelfile:
    """Parse the Modelfile at ``path`` (see :func:`parse`); OSError if it cannot be read."""
    return parse(Path(path).read_bytes(), strict=strict)


def _decode(data: str | bytes) -> str:
    """Text as Go's ``unicode.BOMOverride(unicode.UTF8.NewDecoder())`` yields it."""
    if isinstance(data, str):
        # A str that still carries a BOM is read as its UTF-8 encoding would be.
        return data.removeprefix("\ufeff")
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", "replace")
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", "replace")
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", "replace")
    return data.decode("utf-8", "replace")


def _unquote(value: str) -> str | None:
    """parser.go ``unquote``: the value inside its quotes, or None while a quote is open."""
    if value.startswith('"""'):
        return value[3:-3] if len(value) >= 6 and value.endswith('"""') else None
    if value.startswith('"'):
        return value[1:-1] if len(value) >= 2 and value.endswith('"') else None
    return value


def _closed(buffer: list[str], lead: int, trail: int) -> bool:
    """Whether ``_unquote`` accepts the trimmed buffer, without joining it: a value may run
    over many lines, and joining at every line end would be quadratic."""
    if lead < 0:
        return True
    end = len(buffer) - trail
    head = "".join(buffer[lead : lead + 3])
    if head == '"""':
        return end - lead >= 6 and "".join(buffer[end - 3 : end]) == '"""'
    if head.startswith('"'):
        return end - lead >= 2 and buffer[end - 1] == '"'
    return True


def _scan(text: str) -> Modelfile:
    """Ollama's ``ParseFile`` state machine, minus the FROM check."""
    instructions: list[Instruction] = []
    state = _NIL
    buffer: list[str] = []
    lead, trail = -1, 0  # in a value: index of its first non-blank, count of trailing blanks
    command = ""
    key: str | None = None
    line = start = 1
    after_cr = False
    for char in text:
        if char == "\n":
            line += 0 if after_cr else 1  # CRLF is one line end
        elif char == "\r":
            line += 1
        after_cr = char == "\r"

        if state == _VALUE:
            if char in _LINE_ENDS and _closed(buffer, lead, trail):
                value = _unquote("".join(buffer).strip(_WHITESPACE))
                instructions.append(Instruction(command, value or "", key, start))
                state = _NIL
            elif char in _WHITESPACE:
                buffer.append(char)  # a line end here is inside a quote: part of the value
                trail += 1
            elif char.isprintable():
                if lead < 0:
                    lead = len(buffer)
                buffer.append(char)
                trail = 0
        elif state == _NIL:
            if char == "#":
                state = _COMMENT
            elif char not in _WHITESPACE:
                state, start = _NAME, line
                buffer = [char] if char.isprintable() else []
        elif state == _COMMENT:
            if char in _LINE_ENDS:
                state = _NIL
        elif state == _NAME:
            if char in _ASCII_LETTERS:
                buffer.append(char)
                continue
            command = "".join(buffer).lower()
            if char not in _BLANKS or command not in COMMANDS:
                raise ModelfileError(_at(start, _INVALID_COMMAND))
            state = {"parameter": _PARAMETER, "message": _MESSAGE}.get(command, _VALUE)
            key, buffer, lead, trail = None, [], -1, 0
        elif state == _PARAMETER:
            if char in _PARAMETER_CHARS:
                buffer.append(char)
            elif char in _BLANKS:
                state, key, buffer, lead, trail = _VALUE, "".join(buffer), [], -1, 0
            else:
                raise ModelfileError(_at(start, _UNEXPECTED_EOF))
        elif char in _ASCII_LETTERS:  # _MESSAGE
            buffer.append(char)
        elif char in _BLANKS:
            key = "".join(buffer)
            if key not in MESSAGE_ROLES:
                raise ModelfileError(_at(start, _INVALID_ROLE))
            state, buffer, lead, trail = _VALUE, [], -1, 0
        else:
            raise ModelfileError(_at(start, _UNEXPECTED_EOF))

    if state == _VALUE:
        if not _closed(buffer, lead, trail):
            raise ModelfileError(_at(start, _UNEXPECTED_EOF))
        value = _unquote("".join(buffer).strip(_WHITESPACE))
        instructions.append(Instruction(command, value or "", key, start))
    elif state not in (_NIL, _COMMENT):
        raise ModelfileError(_at(start, _UNEXPECTED_EOF))
    return Modelfile(instructions)
