"""``neurons finetune validate`` through Typer's CliRunner, on temp files.

Validation needs no server and no state: NEURONS_HOME points at an empty temp dir anyway, so
that nothing here could touch a real one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from neurons.cli.main import app
from neurons.errors import InvalidRequestError

GOOD = '{"instruction": "q", "output": "a"}\n{"prompt": "p", "completion": "c"}\n'


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: no cell cut short with an ellipsis
    return tmp_path / "home"


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def invoke(*args: str | Path) -> Result:
    # Through the root app: a Typer with a single command would run it without its name.
    return CliRunner().invoke(app, ["finetune", "validate", *map(str, args)])


def test_registered_on_the_root_app() -> None:
    assert "finetune" in CliRunner().invoke(app, ["--help"]).stdout
    assert "validate" in CliRunner().invoke(app, ["finetune", "--help"]).stdout


def test_clean_data_exits_0_with_a_summary(tmp_path: Path) -> None:
    path = write(tmp_path, "good.jsonl", GOOD)
    result = invoke(path, "-t", "jsonl")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{path}: jsonl: 2 examples: 2 valid, 0 invalid, 0 duplicates"


def test_problems_are_listed_by_line_and_exit_1(tmp_path: Path) -> None:
    content = GOOD + '{"bad json\n' + '{"messages": [{"role": "assistant", "content": "[x]"}]}\n'
    result = invoke(write(tmp_path, "mixed.jsonl", content), "--type", "jsonl")
    assert result.exit_code == 1, result.output
    rows = [re.split(r"\s{2,}", line.strip()) for line in result.stdout.splitlines()]
    assert ["line", "field", "problem"] in rows
    assert ["3", "bad JSON: Unterminated string starting at (column 2)"] in rows
    # Printed as they are, not as rich markup: [0] and [x] survive.
    assert ["4", "messages[0].role", "expected 'user', not 'assistant' (turns alternate "
            "user/assistant, starting with user)"] in rows  # fmt: skip
    assert "2 valid, 2 invalid, 0 duplicates" in result.stdout


def test_duplicates_alone_do_not_fail(tmp_path: Path) -> None:
    path = write(tmp_path, "dupes.txt", "a\n\nb\n\na\n\na\n")
    result = invoke(path, "-t", "text")
    assert result.exit_code == 0, result.output
    assert "duplicates (kept once) at lines: 5, 7" in result.stdout
    assert "4 examples: 2 valid, 0 invalid, 2 duplicates" in result.stdout


@pytest.mark.parametrize("content", ["", "\n\n", "instruction,output\n"])
def test_no_valid_example_exits_1(tmp_path: Path, content: str) -> None:
    result = invoke(write(tmp_path, "empty.csv", content), "-t", "csv")
    assert result.exit_code == 1, result.output
    assert "0 examples" in result.stdout


def test_json_prints_the_report(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", GOOD + GOOD + '{"text": ""}\n')
    result = invoke(path, "-t", "jsonl", "--json")
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout) == {
        "data_type": "jsonl",
        "ok": True,
        "total": 5,
        "valid": 2,
        "invalid": 1,
        "duplicates": 2,
        "problems": [{"line": 5, "field": "text", "message": "empty text"}],
        "problems_omitted": 0,
        "duplicate_lines": [3, 4],
    }


def test_json_exit_0_when_clean(tmp_path: Path) -> None:
    result = invoke(write(tmp_path, "good.jsonl", GOOD), "-t", "jsonl", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["valid"] == 2


def test_column_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "qa.csv", "question,answer,persona\nq,a,p\nq2,,p\n")
    result = invoke(path, "-t", "csv", "--map", "instruction=question", "--map",
                    "output=answer", "--map", "system=persona", "--json")  # fmt: skip
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["valid"], report["invalid"]) == (1, 1)
    assert report["problems"] == [{"line": 3, "field": "answer", "message": "empty answer"}]


@pytest.mark.parametrize("pair", ["output", "=answer", "output="])
def test_a_malformed_map_is_a_usage_error(tmp_path: Path, pair: str) -> None:
    result = invoke(write(tmp_path, "qa.csv", "q,a\n"), "-t", "csv", "--map", pair)
    assert result.exit_code == 2
    assert "expected FIELD=COLUMN" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-t", "csv", "--map", "output=nope"), "no column 'nope' for 'output'"),
        (("-t", "csv", "--map", "answer=a"), "unknown field 'answer'"),
        (("-t", "parquet"), "unknown data type 'parquet'"),
        (("-t", "jsonl", "--map", "output=a"), "a column mapping applies to csv data"),
    ],
)
def test_unusable_arguments_reach_main_as_library_errors(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """The root ``main()`` prints them as ``Error: …`` and exits 1; the runner sees them."""
    result = invoke(write(tmp_path, "qa.csv", "q,a\nx,y\n"), *args)
    assert isinstance(result.exception, InvalidRequestError), result.output
    assert message in str(result.exception)


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke(tmp_path / "absent.jsonl", "-t", "jsonl")
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_max_tokens(tmp_path: Path) -> None:
    path = write(tmp_path, "long.txt", "short\n\n" + "x" * 300 + "\n")
    result = invoke(path, "-t", "text", "--max-tokens", "50")
    assert result.exit_code == 1, result.output
    assert "example is ~100 tokens, longer than the context (50)" in result.stdout
    assert invoke(path, "-t", "text", "--max-tokens", "100").exit_code == 0
    assert invoke(path, "-t", "text", "--max-tokens", "0").exit_code == 2


def test_only_the_first_50_problems_are_shown(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.jsonl", '{"text": ""}\n' * 60 + '{"text": "ok"}\n')
    result = invoke(path, "-t", "jsonl")
    assert result.exit_code == 1, result.output
    table_rows = [line for line in result.stdout.splitlines() if "empty text" in line]
    assert len(table_rows) == 50
    assert "… and 10 more" in result.stdout
    assert "61 examples: 1 valid, 60 invalid" in result.stdout
