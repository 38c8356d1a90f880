"""Evaluation sets: the packaged ones load and are sound; a user's JSONL is checked line by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurons.errors import InvalidRequestError
from neurons.optimize.evalsets import (
    BUILTIN_SETS,
    METRICS,
    EvalCase,
    EvalSet,
    builtin_set,
    load_jsonl,
    parse_jsonl,
)
from neurons.optimize.scoring import contains, normalize


@pytest.mark.parametrize("model_type", BUILTIN_SETS)
def test_builtin_set_loads_and_is_sound(model_type: str) -> None:
    evalset = builtin_set(model_type)
    assert evalset.name == model_type
    assert evalset.model_type == model_type
    assert 12 <= len(evalset) <= 16
    assert len({case.id for case in evalset.cases}) == len(evalset)
    for case in evalset.cases:
        assert case.metric in METRICS
        assert case.prompt.strip()
        assert normalize(case.reference)
        assert case.max_tokens is None or 1 <= case.max_tokens <= 64
    # Hyperband's early rungs see a prefix: it must not be a single metric.
    assert len({case.metric for case in evalset.take(4).cases}) >= 2


@pytest.mark.parametrize("model_type", ["general", "code", "analysis"])
def test_builtin_answers_are_not_in_their_prompts(model_type: str) -> None:
    # A model that merely restates the question must not score. Creative prompts are exempt:
    # there the reference is a word the prompt asks the answer to use.
    restated = [
        case.id
        for case in builtin_set(model_type).cases
        if case.metric == "contains" and contains(case.prompt, case.reference)
    ]
    assert restated == []


def test_builtin_sets_favour_checkable_metrics() -> None:
    metrics = [case.metric for name in BUILTIN_SETS for case in builtin_set(name).cases]
    assert metrics.count("contains") + metrics.count("f1") > 0.75 * len(metrics)
    assert metrics.count("similarity") >= len(BUILTIN_SETS)


def test_builtin_set_unknown_type_lists_valid_ones() -> None:
    with pytest.raises(InvalidRequestError, match="general, code, creative, analysis"):
        builtin_set("poetry")


def test_take_is_a_prefix() -> None:
    evalset = builtin_set("general")
    assert evalset.take(3).cases == evalset.cases[:3]
    assert evalset.take(3).name == "general"
    assert evalset.take(1000) == evalset
    with pytest.raises(InvalidRequestError, match="at least 1 prompt"):
        evalset.take(0)


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_jsonl_defaults_and_skips_comments(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            "# my own questions",
            "",
            json.dumps({"prompt": "Capital of Italy?", "reference": "Rome"}),
            "   ",
            json.dumps(
                {
                    "id": "sum",
                    "prompt": "2+2?",
                    "reference": "4",
                    "metric": "exact",
                    "system": "Numbers only.",
                    "max_tokens": 8,
                }
            ),
            json.dumps({"id": 7, "prompt": "Say hi", "reference": "hi", "metric": "similarity"}),
        ],
    )
    evalset = load_jsonl(path, model_type="analysis")
    assert evalset == EvalSet(
        name="mine",
        model_type="analysis",
        cases=(
            EvalCase(id="3", prompt="Capital of Italy?", reference="Rome"),
            EvalCase("sum", "2+2?", "4", "exact", system="Numbers only.", max_tokens=8),
            EvalCase("7", "Say hi", "hi", "similarity"),
        ),
    )
    assert evalset.cases[0].metric == "contains"


def test_load_jsonl_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    ok = {"prompt": "p", "reference": "r"}
    path = _write(
        tmp_path,
        [
            json.dumps({"id": "a", **ok}),  # 1: fine
            "{not json",  # 2
            "[1, 2]",  # 3
            json.dumps({"reference": "r"}),  # 4
            json.dumps({"prompt": "p", "reference": "  "}),  # 5
            json.dumps({**ok, "metric": "bleu"}),  # 6
            json.dumps({**ok, "max_tokens": 0}),  # 7
            json.dumps({**ok, "max_tokens": "32"}),  # 8
            json.dumps({"id": "a", **ok}),  # 9: duplicate of line 1
            json.dumps({**ok, "refrence": "x"}),  # 10
            json.dumps({"prompt": "p", "reference": "The."}),  # 11
            json.dumps({**ok, "system": 3, "max_tokens": True}),  # 12
            json.dumps({"id": "", **ok}),  # 13
        ],
    )
    with pytest.raises(InvalidRequestError) as info:
        load_jsonl(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"invalid evaluation set {path}:"
    problems = lines[1:]
    expected = [
        "(line 2): not valid JSON",
        "(line 3): expected a JSON object, got list",
        "(line 4): missing or empty prompt",
        "(line 5): missing or empty reference",
        "(line 6): unknown metric 'bleu'; valid metrics: exact, contains, f1, similarity",
        "(line 7): max_tokens must be a positive integer, not 0",
        "(line 8): max_tokens must be a positive integer, not '32'",
        "(line 9): duplicate id 'a' (first on line 1)",
        "(line 10): unknown field 'refrence'",
        "(line 11): reference 'The.' has no words once normalized",
        "(line 12): system must be a string",
        "(line 12): max_tokens must be a positive integer, not True",
        "(line 13): id must be a non-empty string",
    ]
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start)


def test_default_id_colliding_with_explicit_id_is_a_duplicate() -> None:
    text = json.dumps({"id": "2", "prompt": "p", "reference": "r"}) + "\n"
    text += json.dumps({"prompt": "q", "reference": "s"}) + "\n"
    with pytest.raises(InvalidRequestError, match=r"\(line 2\): duplicate id '2'"):
        parse_jsonl(text, name="inline")


def test_empty_set_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="no cases"):
        load_jsonl(_write(tmp_path, ["# nothing yet", ""]))


def test_unreadable_file_is_an_invalid_request(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="cannot read evaluation set"):
        load_jsonl(tmp_path / "missing.jsonl")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidRequestError, match="cannot read evaluation set"):
        load_jsonl(binary)


def test_eval_case_is_frozen() -> None:
    case = builtin_set("code").cases[0]
    with pytest.raises(AttributeError):
        case.prompt = "changed"  # type: ignore[misc]
