"""Training data validation: read a fine-tuning data file, check every example, report.

Four data types, each normalised to :class:`~neurons.finetune.examples.Example`:

``jsonl``
    One JSON object a line, in any of these shapes (the first that matches wins)::

        {"messages": [{"role": "user", "content": "..."}, ...]}     (as ``conversation``)
        {"conversations": [{"from": "human", "value": "..."}, ...]}  (as ``conversation``)
        {"instruction": "...", "input": "...", "output": "...", "system": "..."}
        {"prompt": "...", "completion": "...", "system": "..."}
        {"text": "..."}

    ``input`` and ``system`` are optional (``null`` counts as absent); the user turn is
    ``instruction + "\\n\\n" + input`` when the input is not empty. Other keys are ignored.
``conversation``
    Only the ``messages`` / ``conversations`` shapes. Items with ``from``/``value`` are
    ShareGPT's and the others OpenAI's ``role``/``content``; roles map ``human``/``user`` to
    user, ``gpt``/``assistant``/``model`` to assistant, and ``system`` stays. An optional
    top-level ``system`` string (LLaMA-Factory's ShareGPT column) becomes the first message.
    The turns are: an optional system message first, then user and assistant alternating,
    starting with user and ending with assistant.
``csv``
    A header row, then one example a row. The columns are found by name (``instruction`` /
    ``input`` / ``output``, else ``prompt`` / ``completion``, else ``text``, plus an optional
    ``system``; case and surrounding spaces do not matter), or named by a column mapping
    ``{field: column}``. A mapping that names a column the header lacks, or that leaves a
    required field without a column, is an :class:`~neurons.errors.InvalidRequestError`: no
    row could be read.
``text``
    Plain text for causal language modelling: every paragraph (lines up to a blank line) is
    one example.

Both JSON types also take a whole-file JSON array of such objects (what ``.json`` datasets
usually are); an example's line is then its 1-based index in the array, since a pretty-printed
array has no line per example.

Line numbers are 1-based file lines: the JSON object's line, the paragraph's first line, or the
line a CSV row starts on (the header is line 1, so the first data row is line 2). Every problem
with an example is a :class:`Problem` in the :class:`ValidationReport`, never an exception:
invalid examples are skipped, as LLaMA-Factory's converters skip them, and counted. Repeated
examples are kept once and counted as duplicates. With ``max_tokens`` an example longer than
the context is invalid too, rather than silently truncated in training; its problem says
``~N tokens`` when :func:`estimate_tokens` counted, not a real tokenizer.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ParamSpec

from neurons.errors import InvalidRequestError
from neurons.finetune.examples import Example, Message, Role

__all__ = [
    "DATA_TYPES",
    "Problem",
    "ValidationReport",
    "estimate_tokens",
    "validate_file",
    "validate_text",
]

DATA_TYPES = ("jsonl", "csv", "text", "conversation")
CSV_FIELDS = ("instruction", "input", "output", "prompt", "completion", "text", "system")
ROLE_NAMES: dict[str, Role] = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
}
MAX_DUPLICATE_LINES = 20  # in to_dict(): enough to find the pattern, not a second listing
BYTES_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 4  # a chat template's role markers, e.g. ChatML's <|im_start|>user\n

# Required fields first; a shape is chosen when all its required fields have a column.
_CSV_SHAPES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("instruction", "output"), ("input", "system")),
    (("prompt", "completion"), ("system",)),
    (("text",), ()),
)
_SHAPE_OF = {  # a mapped field picks its shape; system belongs to two, so picks none
    name: index
    for index, (required, optional) in enumerate(_CSV_SHAPES)
    for name in (*required, *optional)
    if name != "system"
}
P = ParamSpec("P")


@dataclass(frozen=True)
class Problem:
    """One problem with one example. ``field``: the key, column or message it concerns, as
    the file names it (``output``, ``messages[2].role``), or None for the whole example."""

    line: int
    message: str
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}


@dataclass
class ValidationReport:
    """What a data file holds. ``total == valid + invalid + duplicates``; ``examples`` are the
    valid ones, each once, in file order (the first occurrence of a duplicate is kept).

    At most ``max_problems`` problems are kept in ``problems``; ``problems_omitted`` counts
    the rest. ``duplicate_lines`` holds the lines of the first duplicates found.
    """

    data_type: str
    total: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    problems: list[Problem] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    duplicate_lines: list[int] = field(default_factory=list)
    problems_omitted: int = 0

    @property
    def ok(self) -> bool:
        """A job can train on this data: invalid examples are skipped, so one valid suffices."""
        return self.valid > 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary with the problems (not the examples)."""
        return {
            "data_type": self.data_type,
            "ok": self.ok,
            "total": self.total,
            "valid": self.valid,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "problems": [problem.to_dict() for problem in self.problems],
            "problems_omitted": self.problems_omitted,
            "duplicate_lines": list(self.duplicate_lines),
        }

    def summary(self) -> str:
        def count(n: int, what: str) -> str:
            return f"{n} {what}" if n == 1 else f"{n} {what}s"

        return (
            f"{self.data_type}: {count(self.total, 'example')}: {self.valid} valid, "
            f"{self.invalid} invalid, {count(self.duplicates, 'duplicate')}"
        )


def estimate_tokens(example: Example) -> int:
    """A conservative token count without a tokenizer: UTF-8 bytes / 3, rounded up, plus
    :data:`TOKENS_PER_MESSAGE` per chat message.

    BPE tokenizers (Llama, Qwen, Mistral) average about 4 bytes a token on English prose and
    fewer on code or other scripts; counting 3 over-estimates the common case, so an example
    that fits by this estimate fits the real tokenizer, and one near the limit is flagged
    rather than truncated mid-answer by the trainer.
    """
    if example.text is not None:
        return math.ceil(len(example.text.encode("utf-8")) / BYTES_PER_TOKEN)
    size = sum(len(message.content.encode("utf-8")) for message in example.messages)
    return math.ceil(size / BYTES_PER_TOKEN) + TOKENS_PER_MESSAGE * len(example.messages)


def validate_file(
    path: Path,
    data_type: str,
    *,
    column_mapping: Mapping[str, str] | None = None,
    max_tokens: int | None = None,
    count_tokens: Callable[[Example], int] | None = None,
    max_problems: int = 1000,
) -> ValidationReport:
    """Validate a data file, read as UTF-8 one line at a time (a BOM is ignored).

    Raises :class:`~neurons.errors.InvalidRequestError` for what makes the whole file
    unusable: an unknown data type, a bad column mapping, a missing file, or bytes that are
    not UTF-8 (the message names the line). ``count_tokens`` is only called with
    ``max_tokens``; without it :func:`estimate_tokens` counts.
    """
    _check_arguments(data_type, column_mapping, max_tokens)
    if not path.is_file():
        raise InvalidRequestError(f"{path}: no such file")
    return _validate(
        _file_lines(path), data_type, column_mapping, max_tokens, count_tokens, max_problems
    )


def validate_text(
    content: str,
    data_type: str,
    *,
    column_mapping: Mapping[str, str] | None = None,
    max_tokens: int | None = None,
    count_tokens: Callable[[Example], int] | None = None,
    max_problems: int = 1000,
) -> ValidationReport:
    """:func:`validate_file` on data already in memory (an upload, a test)."""
    _check_arguments(data_type, column_mapping, max_tokens)
    # newline="\n": split where a file read by validate_file splits, not at \r or U+2028.
    lines = io.StringIO(content.removeprefix("\ufeff"), newline="\n")
    return _validate(lines, data_type, column_mapping, max_tokens, count_tokens, max_problems)


# -- arguments and input ------------------------------------------------------------------------


def _check_arguments(
    data_type: str, column_mapping: Mapping[str, str] | None, max_tokens: int | None
) -> None:
    if data_type not in DATA_TYPES:
        raise InvalidRequestError(
            f"unknown data type {data_type!r} (expected one of {', '.join(DATA_TYPES)})"
        )
    if column_mapping and data_type != "csv":
        raise InvalidRequestError(f"a column mapping applies to csv data, not {data_type}")
    for name in column_mapping or {}:
        if name not in CSV_FIELDS:
            raise InvalidRequestError(
                f"column mapping: unknown field {name!r} (expected {', '.join(CSV_FIELDS)})"
            )
    if max_tokens is not None and max_tokens < 1:
        raise InvalidRequestError(f"max_tokens must be at least 1, not {max_tokens}")


def _file_lines(path: Path) -> Iterator[str]:
    """The file's lines, each decoded on its own so that bad bytes are reported by line."""
    with path.open("rb") as file:
        for number, raw in enumerate(file, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidRequestError(
                    f"{path}: line {number} is not UTF-8 text ({exc.reason} at byte {exc.start})"
                ) from None
            yield line.removeprefix("\ufeff") if number == 1 else line


def _kind(value: Any) -> str:
    """A JSON value's type in JSON's words, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# -- collecting ---------------------------------------------------------------------------------


class _Rejected(Exception):
    """An invalid example: its problems as (message, field) pairs. Internal control flow."""

    def __init__(self, *problems: tuple[str, str | None]) -> None:
        super().__init__(problems)
        self.problems = problems


class _Collector:
    """Counts examples into a report: the length check, duplicates, the problem cap."""

    def __init__(
        self,
        data_type: str,
        max_tokens: int | None,
        count_tokens: Callable[[Example], int] | None,
        max_problems: int,
    ) -> None:
        self.report = ValidationReport(data_type)
        self.max_tokens = max_tokens
        self.count_tokens = count_tokens or estimate_tokens
        self.estimated = count_tokens is None
        self.max_problems = max_problems
        self.seen: set[tuple[Any, ...]] = set()

    def reject(self, line: int, *problems: tuple[str, str | None]) -> None:
        self.report.total += 1
        self.report.invalid += 1
        for message, where in problems:
            if len(self.report.problems) < self.max_problems:
                self.report.problems.append(Problem(line, message, where))
            else:
                self.report.problems_omitted += 1

    def add(
        self, line: int, parse: Callable[P, Example], *args: P.args, **kwargs: P.kwargs
    ) -> None:
        """Count the example ``parse(*args, **kwargs)`` builds, or the problems it raises."""
        try:
            example = replace(parse(*args, **kwargs), source=line)
        except _Rejected as exc:
            self.reject(line, *exc.problems)
            return
        if self.max_tokens is not None:
            tokens = self.count_tokens(example)
            if tokens > self.max_tokens:
                about = "~" if self.estimated else ""
                message = f"example is {about}{tokens} tokens, longer than the context"
                self.reject(line, (f"{message} ({self.max_tokens})", None))
                return
        self.report.total += 1
        key = example.key()
        if key in self.seen:
            self.report.duplicates += 1
            if len(self.report.duplicate_lines) < MAX_DUPLICATE_LINES:
                self.report.duplicate_lines.append(line)
            return
        self.seen.add(key)
        self.report.valid += 1
        self.report.examples.append(example)


def _validate(
    lines: Iterable[str],
    data_type: str,
    column_mapping: Mapping[str, str] | None,
    max_tokens: int | None,
    count_tokens: Callable[[Example], int] | None,
    max_problems: int,
) -> ValidationReport:
    collector = _Collector(data_type, max_tokens, count_tokens, max_problems)
    if data_type == "csv":
        _read_csv(lines, column_mapping or {}, collector)
    elif data_type == "text":
        _read_paragraphs(lines, collector)
    else:
        _read_json(lines, collector, chat_only=data_type == "conversation")
    return collector.report


# -- JSON Lines and arrays ----------------------------------------------------------------------


def _read_json(lines: Iterable[str], collector: _Collector, *, chat_only: bool) -> None:
    numbered = enumerate(lines, 1)
    first = next(((number, line) for number, line in numbered if line.strip()), None)
    if first is None:
        return
    number, line = first
    if line.lstrip().startswith("["):
        document = line + "".join(rest for _, rest in numbered)  # parsed whole anyway
        _read_array(document, number, collector, chat_only)
    else:
        _read_json_lines(itertools.chain([first], numbered), collector, chat_only)


def _read_json_lines(
    lines: Iterable[tuple[int, str]], collector: _Collector, chat_only: bool
) -> None:
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line.rstrip("\r\n"))  # not part of a string left open
        except json.JSONDecodeError as exc:
            collector.reject(number, (f"bad JSON: {exc.msg} (column {exc.colno})", None))
            continue
        collector.add(number, _from_record, record, chat_only)


def _read_array(document: str, first: int, collector: _Collector, chat_only: bool) -> None:
    """A whole-file JSON array (from line ``first`` on), its elements numbered from 1; or
    JSON Lines whose first line happens to be an array (it parses alone), read as such."""
    try:
        records = json.loads(document)
    except json.JSONDecodeError as exc:
        lines = io.StringIO(document, newline="\n")
        try:
            json.loads(lines.readline())
        except json.JSONDecodeError:
            # One broken document: one problem where the parser stopped, not one per line.
            line = first + exc.lineno - 1
            collector.reject(line, (f"bad JSON: {exc.msg} (column {exc.colno})", None))
            return
        lines.seek(0)
        _read_json_lines(enumerate(lines, first), collector, chat_only)
        return
    for index, record in enumerate(records, 1):
        collector.add(index, _from_record, record, chat_only)


# -- JSON records -------------------------------------------------------------------------------


def _from_record(record: Any, chat_only: bool) -> Example:
    if not isinstance(record, dict):
        raise _Rejected((f"expected a JSON object, not {_kind(record)}", None))
    for key in ("messages", "conversations"):
        if key in record:
            return _conversation(record, key)
    if chat_only:
        raise _Rejected(
            ("expected 'messages' (role/content) or 'conversations' (ShareGPT from/value)", None)
        )
    if "instruction" in record or "output" in record:
        instruction = _string(record, "instruction")
        prompt = _join(instruction, _string(record, "input", optional=True))
        output = _string(record, "output")
        return _single_turn(prompt, "instruction", output, "output", _system(record))
    if "prompt" in record or "completion" in record:
        prompt, completion = _string(record, "prompt"), _string(record, "completion")
        return _single_turn(prompt, "prompt", completion, "completion", _system(record))
    if "text" in record:
        return _text(_string(record, "text"), "text")
    keys = ", ".join(sorted(record)) or "none"
    raise _Rejected(
        (f"expected instruction/output, prompt/completion, text or messages (keys: {keys})", None)
    )


def _string(record: Mapping[str, Any], key: str, *, optional: bool = False) -> str:
    """``record[key]`` as a string; an optional key that is absent or null is ``""``."""
    value = record.get(key)
    if value is None and optional:
        return ""
    if key not in record:
        raise _Rejected((f"missing {key!r}", key))
    if not isinstance(value, str):
        raise _Rejected((f"{key!r} must be a string, not {_kind(value)}", key))
    return value


def _system(record: Mapping[str, Any]) -> str:
    return _string(record, "system", optional=True)


def _join(instruction: str, extra: str) -> str:
    return "\n\n".join(part for part in (instruction, extra) if part.strip())


def _text(text: str, where: str) -> Example:
    if not text.strip():
        raise _Rejected(("empty text", where))
    return Example(source=0, text=text)


def _single_turn(
    prompt: str, prompt_field: str, answer: str, answer_field: str, system: str
) -> Example:
    problems: list[tuple[str, str | None]] = []
    if not prompt.strip():
        problems.append(("empty prompt", prompt_field))
    if not answer.strip():
        problems.append(("empty answer", answer_field))
    if problems:
        raise _Rejected(*problems)
    messages = [Message("user", prompt), Message("assistant", answer)]
    if system.strip():
        messages.insert(0, Message("system", system))
    return Example(source=0, messages=tuple(messages))


def _conversation(record: Mapping[str, Any], key: str) -> Example:
    items = record[key]
    if not isinstance(items, list):
        raise _Rejected((f"{key!r} must be an array of messages, not {_kind(items)}", key))
    system = _system(record)
    problems: list[tuple[str, str | None]] = []
    turns: list[tuple[str, Message]] = []  # (where its role is, the message)
    for index, item in enumerate(items):
        where = f"{key}[{index}]"
        if not isinstance(item, dict):
            problems.append((f"expected a message object, not {_kind(item)}", where))
            continue
        sharegpt = "from" in item or "value" in item
        role_key, content_key = ("from", "value") if sharegpt else ("role", "content")
        raw_role, content = item.get(role_key), item.get(content_key)
        role = ROLE_NAMES.get(raw_role.lower()) if isinstance(raw_role, str) else None
        if role is None:
            what = f"missing {role_key!r}" if raw_role is None else f"unknown role {raw_role!r}"
            names = ", ".join(ROLE_NAMES)
            problems.append((f"{what} (expected one of {names})", f"{where}.{role_key}"))
        if not isinstance(content, str):
            what = f"missing {content_key!r}" if content is None else _kind(content)
            problems.append((f"{what}: content must be a string", f"{where}.{content_key}"))
        elif not content.strip():
            empty = "empty answer" if role == "assistant" else "empty content"
            problems.append((empty, f"{where}.{content_key}"))
        if role is not None and isinstance(content, str):
            turns.append((f"{where}.{role_key}", Message(role, content)))
    if not items:
        problems.append(("no messages", key))
    elif len(turns) == len(items):  # the order means something only once every role is known
        problems.extend(_order_problems(turns, key, bool(system.strip())))
    if problems:
        raise _Rejected(*problems)
    messages = tuple(message for _, message in turns)
    if system.strip():
        messages = (Message("system", system), *messages)
    return Example(source=0, messages=messages)


def _order_problems(
    turns: list[tuple[str, Message]], key: str, system_key: bool
) -> list[tuple[str, str | None]]:
    """The first turn out of order, if any: one misplaced turn puts every later one out."""
    start = 1 if turns[0][1].role == "system" else 0
    if start and system_key:
        return [("both a 'system' key and a system message", turns[0][0])]
    dialogue = turns[start:]
    for position, (where, message) in enumerate(dialogue):
        expected = "user" if position % 2 == 0 else "assistant"
        if message.role == "system":
            return [("a system message must come first", where)]
        if message.role != expected:
            order = "turns alternate user/assistant, starting with user"
            return [(f"expected {expected!r}, not {message.role!r} ({order})", where)]
    if not dialogue:
        return [("no user/assistant turns", key)]
    if dialogue[-1][1].role != "assistant":
        return [("the last turn must be the assistant's", dialogue[-1][0])]
    return []


# -- plain text ---------------------------------------------------------------------------------


def _read_paragraphs(lines: Iterable[str], collector: _Collector) -> None:
    paragraph: list[str] = []
    first = 0
    for number, line in enumerate(itertools.chain(lines, [""]), 1):  # "": end the last one
        if line.strip():
            first = first if paragraph else number
            paragraph.append(line.rstrip("\r\n"))
        elif paragraph:
            collector.add(first, _text, "\n".join(paragraph), "text")
            paragraph = []


# -- CSV ----------------------------------------------------------------------------------------


def _read_csv(lines: Iterable[str], mapping: Mapping[str, str], collector: _Collector) -> None:
    reader = csv.reader(lines)
    header: list[str] | None = None
    columns: dict[str, int] = {}
    start = 1  # the line the next row starts on; reader.line_num is where the last one ended
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            collector.reject(start, (f"bad CSV: {exc}", None))
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue  # a blank line, or a spreadsheet's empty row (",,")
        if header is None:
            header, columns = row, _csv_columns(row, mapping)
        elif len(row) > len(header):
            cells = f"{len(row)} cells, the header has {len(header)}"
            collector.reject(line, (f"{cells} (an unquoted comma?)", None))
        else:
            collector.add(line, _from_row, row, header, columns)


def _from_row(row: list[str], header: list[str], columns: Mapping[str, int]) -> Example:
    def cell(name: str) -> str:
        index = columns.get(name)
        return row[index] if index is not None and index < len(row) else ""  # short rows

    def column(name: str) -> str:
        return header[columns[name]]

    if "text" in columns:
        return _text(cell("text"), column("text"))
    if "instruction" in columns:
        prompt = _join(cell("instruction"), cell("input"))
        return _single_turn(
            prompt, column("instruction"), cell("output"), column("output"), cell("system")
        )
    return _single_turn(
        cell("prompt"), column("prompt"), cell("completion"), column("completion"), cell("system")
    )


def _csv_columns(header: list[str], mapping: Mapping[str, str]) -> dict[str, int]:
    """{field: column index} for one shape: the one the mapping names, else the first whose
    columns the header has. Fields the mapping leaves out default to same-named columns."""
    by_name = {name.strip().lower(): index for index, name in enumerate(header)}
    columns = {name: by_name[name] for name in CSV_FIELDS if name in by_name}
    for name, column in mapping.items():
        index = by_name.get(column.strip().lower())
        if column in header:
            index = header.index(column)  # an exact match wins over a case-insensitive one
        if index is None:
            raise InvalidRequestError(
                f"column mapping: no column {column!r} for {name!r} (columns: {', '.join(header)})"
            )
        columns[name] = index
    named = sorted({_SHAPE_OF[name] for name in mapping if name in _SHAPE_OF})
    if len(named) > 1:
        raise InvalidRequestError(
            f"column mapping: {', '.join(sorted(mapping))} mixes fields of different shapes "
            "(map instruction/input/output, prompt/completion or text)"
        )
    shapes = [_CSV_SHAPES[i] for i in named] or list(_CSV_SHAPES)
    for required, optional in shapes:
        missing = [name for name in required if name not in columns]
        if not missing:
            return {name: columns[name] for name in (*required, *optional) if name in columns}
        if named:
            raise InvalidRequestError(
                f"column mapping: no column for {missing[0]!r} (map it with {missing[0]}=COLUMN)"
            )
    raise InvalidRequestError(
        "csv: expected instruction/output, prompt/completion or text columns "
        f"(columns: {', '.join(header)}); name them with a column mapping"
    )
