"""Training data validation: every data type, every kind of problem, by line.

Most cases are rows of one table: (data type, content, valid, invalid, duplicates, problems),
a problem being (line, field, a substring of its message). Argument errors, the examples each
shape becomes, the length check and file reading have tables or tests of their own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from neurons.errors import InvalidRequestError
from neurons.finetune.data import (
    DATA_TYPES,
    Problem,
    ValidationReport,
    estimate_tokens,
    validate_file,
    validate_text,
)
from neurons.finetune.examples import Example, Message

Expected = list[tuple[int, str | None, str]]


def lines(*records: Any) -> str:
    """JSON Lines from objects; strings are taken as raw lines (bad JSON, blank lines)."""
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def turn(role: str, content: Any) -> dict[str, Any]:
    return {"role": role, "content": content}


def share(who: str, value: Any) -> dict[str, Any]:
    return {"from": who, "value": value}


QA = {"instruction": "q", "output": "a"}
CHAT = {"messages": [turn("user", "hi"), turn("assistant", "hello")]}
ORDER = "turns alternate user/assistant"

CASES = [
    # -- jsonl: shapes ---------------------------------------------------------------------------
    ("jsonl", lines(QA, {"prompt": "p", "completion": "c"}, {"text": "t"}, CHAT), 4, 0, 0, []),
    ("jsonl", lines({"instruction": "q", "input": None, "output": "a", "system": None}),
     1, 0, 0, []),
    ("jsonl", lines({"conversations": [share("human", "h"), share("gpt", "g")]}), 1, 0, 0, []),
    ("jsonl", lines(QA, "", "   ", {"text": "t"}), 2, 0, 0, []),
    ("jsonl", "", 0, 0, 0, []),
    # -- jsonl: problems -------------------------------------------------------------------------
    ("jsonl", lines(QA, '{"instruction": "q",'), 1, 1, 0, [(2, None, "bad JSON")]),
    ("jsonl", lines('"a string"', "3", "null"), 0, 3, 0,
     [(1, None, "not a string"), (2, None, "not a number"), (3, None, "not null")]),
    ("jsonl", lines("[1, 2]", {"text": "t"}), 1, 1, 0, [(1, None, "not an array")]),
    ("jsonl", lines({"question": "q", "answer": "a"}), 0, 1, 0,
     [(1, None, "expected instruction/output, prompt/completion, text or messages "
                "(keys: answer, question)")]),
    ("jsonl", lines({}), 0, 1, 0, [(1, None, "(keys: none)")]),
    ("jsonl", lines({"instruction": "q"}), 0, 1, 0, [(1, "output", "missing 'output'")]),
    ("jsonl", lines({"output": "a"}), 0, 1, 0, [(1, "instruction", "missing 'instruction'")]),
    ("jsonl", lines({"prompt": "p"}), 0, 1, 0, [(1, "completion", "missing 'completion'")]),
    ("jsonl", lines({"instruction": "q", "output": 5}), 0, 1, 0,
     [(1, "output", "'output' must be a string, not a number")]),
    ("jsonl", lines({"instruction": "q", "output": None}), 0, 1, 0,
     [(1, "output", "not null")]),
    ("jsonl", lines({"instruction": ["q"], "output": "a"}), 0, 1, 0,
     [(1, "instruction", "not an array")]),
    ("jsonl", lines({"instruction": "q", "input": 1, "output": "a"}), 0, 1, 0,
     [(1, "input", "'input' must be a string")]),
    ("jsonl", lines({"prompt": "p", "completion": "c", "system": {}}), 0, 1, 0,
     [(1, "system", "not an object")]),
    ("jsonl", lines({"text": True}), 0, 1, 0, [(1, "text", "not a boolean")]),
    ("jsonl", lines({"instruction": "q", "output": " \n"}), 0, 1, 0,
     [(1, "output", "empty answer")]),
    ("jsonl", lines({"prompt": "p", "completion": ""}), 0, 1, 0,
     [(1, "completion", "empty answer")]),
    ("jsonl", lines({"prompt": "", "completion": ""}), 0, 1, 0,
     [(1, "prompt", "empty prompt"), (1, "completion", "empty answer")]),
    ("jsonl", lines({"instruction": "", "input": " ", "output": "a"}), 0, 1, 0,
     [(1, "instruction", "empty prompt")]),
    ("jsonl", lines({"text": ""}), 0, 1, 0, [(1, "text", "empty text")]),
    ("jsonl", lines({"messages": [turn("assistant", "a")]}), 0, 1, 0,
     [(1, "messages[0].role", "expected 'user', not 'assistant'")]),
    # -- jsonl: duplicates -----------------------------------------------------------------------
    ("jsonl", lines(QA, {"text": "t"}, QA, {"output": "a", "instruction": "q", "id": 7}, QA),
     2, 0, 3, []),
    ("jsonl", lines(QA, {"instruction": "q", "output": "a", "system": "s"}), 2, 0, 0, []),
    ("jsonl", lines({"instruction": "q", "output": ""}, {"instruction": "q", "output": ""}),
     0, 2, 0, [(1, "output", "empty answer"), (2, "output", "empty answer")]),
    # -- conversation: shapes --------------------------------------------------------------------
    ("conversation", lines(CHAT, {"messages": [turn("system", "s"), *CHAT["messages"]]}),
     2, 0, 0, []),
    ("conversation", lines({"messages": [
        turn("user", "1"), turn("assistant", "2"), turn("user", "3"), turn("assistant", "4")]}),
     1, 0, 0, []),
    ("conversation", lines({"conversations": [
        share("system", "s"), share("human", "h"), share("gpt", "g"),
        share("user", "u"), share("model", "m")]}),
     1, 0, 0, []),
    ("conversation", lines({"conversations": [share("Human", "h"), share("GPT", "g")]}),
     1, 0, 0, []),
    ("conversation", lines({"system": "s", "conversations": [share("human", "h"),
                                                             share("gpt", "g")]}),
     1, 0, 0, []),
    ("conversation", json.dumps([CHAT, CHAT, {"messages": []}], indent=2), 1, 1, 1,
     [(3, "messages", "no messages")]),
    ("conversation", "\n  [\n]\n", 0, 0, 0, []),
    # -- conversation: problems ------------------------------------------------------------------
    ("conversation", lines(QA), 0, 1, 0,
     [(1, None, "expected 'messages' (role/content) or 'conversations' (ShareGPT from/value)")]),
    ("conversation", lines(CHAT, "{oops"), 1, 1, 0, [(2, None, "bad JSON")]),
    ("conversation", lines({"messages": "hi"}), 0, 1, 0,
     [(1, "messages", "'messages' must be an array of messages, not a string")]),
    ("conversation", lines({"messages": []}), 0, 1, 0, [(1, "messages", "no messages")]),
    ("conversation", lines({"messages": ["hi", turn("assistant", "a")]}), 0, 1, 0,
     [(1, "messages[0]", "expected a message object, not a string")]),
    ("conversation", lines({"messages": [turn("tool", "x"), turn("assistant", "a")]}), 0, 1, 0,
     [(1, "messages[0].role", "unknown role 'tool' (expected one of system, user, human")]),
    ("conversation", lines({"conversations": [share("bot", "x"), share("gpt", "a")]}), 0, 1, 0,
     [(1, "conversations[0].from", "unknown role 'bot'")]),
    ("conversation", lines({"messages": [{"content": "x"}, turn("assistant", "a")]}), 0, 1, 0,
     [(1, "messages[0].role", "missing 'role'")]),
    ("conversation", lines({"messages": [turn("user", 5), {"role": "assistant"}]}), 0, 1, 0,
     [(1, "messages[0].content", "a number: content must be a string"),
      (1, "messages[1].content", "missing 'content'")]),
    ("conversation", lines({"conversations": [share("human", ""), share("gpt", " ")]}), 0, 1, 0,
     [(1, "conversations[0].value", "empty content"),
      (1, "conversations[1].value", "empty answer")]),
    ("conversation", lines({"messages": [turn("user", "u"), turn("user", "u2"),
                                         turn("assistant", "a")]}), 0, 1, 0,
     [(1, "messages[1].role", f"expected 'assistant', not 'user' ({ORDER}")]),
    ("conversation", lines({"conversations": [share("gpt", "g"), share("human", "h")]}), 0, 1, 0,
     [(1, "conversations[0].from", "expected 'user', not 'assistant'")]),
    ("conversation", lines({"messages": [turn("user", "u"), turn("assistant", "a"),
                                         turn("user", "u2")]}), 0, 1, 0,
     [(1, "messages[2].role", "the last turn must be the assistant's")]),
    ("conversation", lines({"messages": [turn("user", "u"), turn("system", "s"),
                                         turn("assistant", "a")]}), 0, 1, 0,
     [(1, "messages[1].role", "a system message must come first")]),
    ("conversation", lines({"messages": [turn("system", "s")]}), 0, 1, 0,
     [(1, "messages", "no user/assistant turns")]),
    ("conversation", lines({"system": "s", "messages": [turn("system", "s2"),
                                                        *CHAT["messages"]]}), 0, 1, 0,
     [(1, "messages[0].role", "both a 'system' key and a system message")]),
    ("conversation", lines({"system": 1, **CHAT}), 0, 1, 0, [(1, "system", "not a number")]),
    ("conversation", "[\n" + json.dumps(CHAT) + ",\n{\n\"messages\" []\n}]", 0, 1, 0,
     [(4, None, "bad JSON: Expecting ':' delimiter")]),
    ("conversation", json.dumps([CHAT, 3, {"text": "t"}]), 1, 2, 0,
     [(2, None, "expected a JSON object, not a number"), (3, None, "expected 'messages'")]),
    ("jsonl", "\n" + json.dumps([QA, {"text": ""}]), 1, 1, 0, [(2, "text", "empty text")]),
    # -- csv -------------------------------------------------------------------------------------
    ("csv", "instruction,input,output\nq,,a\nq,x,a\n", 2, 0, 0, []),
    ("csv", "prompt,completion,system\np,c,\np,c,s\n", 2, 0, 0, []),
    ("csv", "id,text\n1,hello\n2,world\n", 2, 0, 0, []),
    ("csv", " Instruction , OUTPUT\nq,a\n", 1, 0, 0, []),
    ("csv", "\ufeffinstruction,output\nq,a\n", 1, 0, 0, []),
    ("csv", "instruction,output\r\nq,a\r\n\r\n,,\r\nq2,a2\r\n", 2, 0, 0, []),
    ("csv", "", 0, 0, 0, []),
    ("csv", "instruction,output\n", 0, 0, 0, []),
    ("csv", "instruction,output\nq,\n,a\n", 0, 2, 0,
     [(2, "output", "empty answer"), (3, "instruction", "empty prompt")]),
    ("csv", "prompt,completion\np, \n", 0, 1, 0, [(2, "completion", "empty answer")]),
    ("csv", "id,text\n1,\n", 0, 1, 0, [(2, "text", "empty text")]),
    ("csv", "instruction,output\nq\n", 0, 1, 0, [(2, "output", "empty answer")]),
    ("csv", "instruction,output\nq,a,b\n", 0, 1, 0,
     [(2, None, "3 cells, the header has 2 (an unquoted comma?)")]),
    ("csv", 'instruction,output\n"multi\nline",a\nq,\n', 1, 1, 0, [(4, "output", "empty answer")]),
    ("csv", "instruction,output\nq,a\nq,a\nq,a\n", 1, 0, 2, []),
    # -- text ------------------------------------------------------------------------------------
    ("text", "first paragraph\nstill first\n\nsecond\n", 2, 0, 0, []),
    ("text", "\n\n  \none\r\n\r\ntwo\r\n\r\none\r\n", 2, 0, 1, []),
    ("text", "", 0, 0, 0, []),
    ("text", "a\n\n\n\nb\n\na\n\nb", 2, 0, 2, []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data_type", "content", "valid", "invalid", "duplicates", "problems"), CASES
)
def test_counts_and_problems(
    data_type: str,
    content: str,
    valid: int,
    invalid: int,
    duplicates: int,
    problems: Expected,
) -> None:
    report = validate_text(content, data_type)
    counts = (report.valid, report.invalid, report.duplicates)
    assert counts == (valid, invalid, duplicates), report.problems
    assert report.total == valid + invalid + duplicates
    assert len(report.examples) == valid
    assert report.ok == (valid > 0)
    assert len(report.problems) == len(problems), report.problems
    for problem, (line, field, message) in zip(report.problems, problems, strict=True):
        assert (problem.line, problem.field) == (line, field), problem
        assert message in problem.message, problem


def chat(source: int, *turns: tuple[str, str]) -> Example:
    return Example(source, tuple(Message(role, content) for role, content in turns))  # type: ignore[arg-type]


EXAMPLES = [
    ("jsonl", lines({"instruction": "Sum", "input": "1 2", "output": "3", "system": "Be terse."}),
     [chat(1, ("system", "Be terse."), ("user", "Sum\n\n1 2"), ("assistant", "3"))]),
    ("jsonl", lines({"instruction": "", "input": "only input", "output": "o", "system": " "}),
     [chat(1, ("user", "only input"), ("assistant", "o"))]),
    ("jsonl", "\n" + lines({"prompt": "p", "completion": " c"}, {"text": " t \n"}),
     [chat(2, ("user", "p"), ("assistant", " c")), Example(3, text=" t \n")]),
    ("conversation", lines({"system": "s", "conversations": [share("human", "h"),
                                                             share("gpt", "g")]}),
     [chat(1, ("system", "s"), ("user", "h"), ("assistant", "g"))]),
    ("conversation", json.dumps([{}, CHAT]),
     [chat(2, ("user", "hi"), ("assistant", "hello"))]),
    ("csv", 'instruction,input,output,system\nq,"x, y",a,s\n',
     [chat(2, ("system", "s"), ("user", "q\n\nx, y"), ("assistant", "a"))]),
    ("csv", "question,answer\n\nq,a\n",  # with the mapping below
     [chat(3, ("user", "q"), ("assistant", "a"))]),
    ("text", "\n  indented\nsecond line  \n\nnext\n",
     [Example(2, text="  indented\nsecond line  "), Example(5, text="next")]),
]  # fmt: skip


@pytest.mark.parametrize(("data_type", "content", "expected"), EXAMPLES)
def test_examples_are_normalised(data_type: str, content: str, expected: list[Example]) -> None:
    mapping = {"instruction": "question", "output": "answer"} if "question" in content else None
    report = validate_text(content, data_type, column_mapping=mapping)
    assert report.examples == expected


CSV_MAPPINGS = [
    ("q,a\nquestion,answer\n", {"instruction": "q", "output": "a"}, "question", "answer"),
    ("Q,A\nquestion,answer\n", {"prompt": "q", "completion": "a"}, "question", "answer"),
    ("body,instruction,output\nhello,x,y\n", {"text": "body"}, None, "hello"),
    # Unmapped fields of the mapped shape default to the same-named column.
    ("instruction,reply\nq,a\n", {"output": "reply"}, "q", "a"),
    ("instruction,output,sys\nq,a,s\n", {"system": "sys"}, "q", "a"),
    # An exact column name wins over one that differs only in case.
    ("instruction,Output,output\nq,A,a\n", {"output": "Output"}, "q", "A"),
]


@pytest.mark.parametrize(("content", "mapping", "user", "answer"), CSV_MAPPINGS)
def test_csv_column_mapping(
    content: str, mapping: dict[str, str], user: str | None, answer: str
) -> None:
    report = validate_text(content, "csv", column_mapping=mapping)
    assert report.valid == 1, report.problems
    example = report.examples[0]
    if user is None:
        assert example.text == answer
    else:
        roles = {m.role: m.content for m in example.messages}
        assert (roles["user"], roles["assistant"]) == (user, answer)
        assert ("system" in roles) == ("system" in mapping)


ARGUMENT_ERRORS = [
    ("yaml", "", None, "unknown data type 'yaml' (expected one of jsonl, csv, text, conversation)"),
    ("jsonl", "", {"output": "a"}, "a column mapping applies to csv data, not jsonl"),
    ("csv", "q,a\n", {"answer": "a"}, "unknown field 'answer'"),
    ("csv", "q,a\nx,y\n", {"instruction": "q", "output": "nope"},
     "no column 'nope' for 'output' (columns: q, a)"),
    ("csv", "q,a\n", {"instruction": "q"}, "no column for 'output' (map it with output=COLUMN)"),
    ("csv", "q,a\n", {"instruction": "q", "completion": "a"}, "mixes fields of different shapes"),
    ("csv", "q,a\n", {"text": "q", "output": "a"}, "mixes fields of different shapes"),
    ("csv", "question,answer\nq,a\n", None,
     "expected instruction/output, prompt/completion or text columns (columns: question, answer)"),
    ("csv", "instruction,completion\nq,a\n", None, "expected instruction/output"),
]  # fmt: skip


@pytest.mark.parametrize(("data_type", "content", "mapping", "message"), ARGUMENT_ERRORS)
def test_unusable_arguments_raise(
    data_type: str, content: str, mapping: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=re.escape(message)):
        validate_text(content, data_type, column_mapping=mapping)


@pytest.mark.parametrize("max_tokens", [0, -5])
def test_max_tokens_must_be_positive(max_tokens: int) -> None:
    with pytest.raises(InvalidRequestError, match="max_tokens must be at least 1"):
        validate_text("", "text", max_tokens=max_tokens)


def words(example: Example) -> int:
    texts = [example.text] if example.text is not None else [m.content for m in example.messages]
    return sum(len(text.split()) for text in texts)


LENGTHS = [
    # (data type, content, max tokens, valid, problems) with one token a word
    ("text", "one two\n\none two three\n\nfour\n", 2, 2,
     [(3, None, "example is 3 tokens, longer than the context (2)")]),
    ("jsonl", lines({"prompt": "a b", "completion": "c"}, {"prompt": "a", "completion": "b c d"}),
     3, 1, [(2, None, "example is 4 tokens, longer than the context (3)")]),
    ("csv", "text\none two\none two\n", 1, 0, [(2, None, "example is 2 tokens"),
                                                (3, None, "example is 2 tokens")]),
    ("conversation", lines(CHAT), 2, 1, []),
]  # fmt: skip


@pytest.mark.parametrize(("data_type", "content", "max_tokens", "valid", "problems"), LENGTHS)
def test_examples_longer_than_the_context(
    data_type: str, content: str, max_tokens: int, valid: int, problems: Expected
) -> None:
    report = validate_text(content, data_type, max_tokens=max_tokens, count_tokens=words)
    assert report.valid == valid
    assert report.invalid == len(problems)
    assert [(p.line, p.field) for p in report.problems] == [(ln, f) for ln, f, _ in problems]
    for problem, (_, _, message) in zip(report.problems, problems, strict=True):
        assert message in problem.message


def test_count_tokens_is_only_called_with_max_tokens() -> None:
    def fail(example: Example) -> int:
        raise AssertionError("called")

    assert validate_text("a\n\nb\n", "text", count_tokens=fail).valid == 2


ESTIMATES = [
    (Example(1, text=""), 0),
    (Example(1, text="abc"), 1),
    (Example(1, text="abcd"), 2),
    (Example(1, text="é"), 1),  # two UTF-8 bytes
    (Example(1, text="日本語"), 3),  # nine bytes
    (chat(1, ("user", "ab"), ("assistant", "cd")), 2 + 2 * 4),
]


@pytest.mark.parametrize(("example", "tokens"), ESTIMATES)
def test_estimate_tokens(example: Example, tokens: int) -> None:
    assert estimate_tokens(example) == tokens


def test_the_default_estimate_says_it_is_one() -> None:
    report = validate_text("x" * 30 + "\n", "text", max_tokens=5)
    assert report.problems == [Problem(1, "example is ~10 tokens, longer than the context (5)")]


def test_problems_are_capped_and_the_rest_counted() -> None:
    content = lines(*[{"text": ""}] * 7, {"prompt": "", "completion": ""})
    report = validate_text(content, "jsonl", max_problems=3)
    assert report.invalid == 8
    assert [p.line for p in report.problems] == [1, 2, 3]
    assert report.problems_omitted == 6  # the last example has two
    assert report.to_dict()["problems_omitted"] == 6


def test_duplicate_lines_are_listed_up_to_twenty() -> None:
    report = validate_text(lines(*[QA] * 30), "jsonl")
    assert (report.valid, report.duplicates) == (1, 29)
    assert report.duplicate_lines == list(range(2, 22))
    assert report.examples == [chat(1, ("user", "q"), ("assistant", "a"))]


def test_report_to_dict_and_summary() -> None:
    report = validate_text(lines(QA, QA, {"text": ""}), "jsonl")
    assert report.to_dict() == {
        "data_type": "jsonl",
        "ok": True,
        "total": 3,
        "valid": 1,
        "invalid": 1,
        "duplicates": 1,
        "problems": [{"line": 3, "field": "text", "message": "empty text"}],
        "problems_omitted": 0,
        "duplicate_lines": [2],
    }
    json.dumps(report.to_dict())
    assert report.summary() == "jsonl: 3 examples: 1 valid, 1 invalid, 1 duplicate"
    assert (
        ValidationReport("text").summary() == "text: 0 examples: 0 valid, 0 invalid, 0 duplicates"
    )
    assert not ValidationReport("text").ok


@pytest.mark.parametrize("data_type", DATA_TYPES)
def test_every_data_type_reads_a_file_as_it_reads_text(data_type: str, tmp_path: Path) -> None:
    content = {
        "jsonl": lines(QA, "{bad", QA, {"text": "t"}),
        "conversation": lines(CHAT, {"messages": []}, CHAT),
        "csv": "instruction,output\r\nq,a\r\n\r\nq,\r\nq,a\r\n",
        "text": "a\r\n\r\nb\r\nc\r\n\r\na\r\n",
    }[data_type]
    path = tmp_path / "data"
    path.write_bytes(("\ufeff" + content).encode("utf-8"))
    from_file = validate_file(path, data_type)
    assert from_file == validate_text(content, data_type)
    assert from_file.duplicates == 1


def test_a_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(lines(QA).encode() + '{"text": "café"}\n'.encode("latin-1"))
    with pytest.raises(InvalidRequestError, match=r"latin1.jsonl: line 2 is not UTF-8 text"):
        validate_file(path, "jsonl")


def test_a_missing_file_is_an_argument_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="no such file"):
        validate_file(tmp_path / "absent.jsonl", "jsonl")
    with pytest.raises(InvalidRequestError, match="unknown data type"):
        validate_file(tmp_path / "absent.jsonl", "parquet")  # checked before the file


def test_json_strings_may_hold_line_separators() -> None:
    # U+2028 is a line break to str.splitlines but legal, unescaped, inside a JSON string.
    report = validate_text('{"text": "a\u2028b"}\n', "jsonl")
    assert report.examples == [Example(1, text="a\u2028b")]
