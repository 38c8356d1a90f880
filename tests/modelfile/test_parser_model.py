"""check / validate, and the Modelfile helpers the manager builds on (first, value,
set_instruction, parameters, set_parameter, ...)."""

from __future__ import annotations

import pytest

from neurons.errors import ModelfileError
from neurons.modelfile import Instruction, Modelfile, check, parse, validate

I = Instruction  # noqa: E741 - keeps the tables readable

BAD_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
BAD_ROLE = 'message role must be one of "system", "user", or "assistant"'

# --- check / validate -----------------------------------------------------------------------

CHECKS = [
    ("valid", "FROM a\nPARAMETER temperature 0.5\nPARAMETER stop x", [], []),
    (
        "unknown-case-sensitive",
        "FROM a\n\n\n\nPARAMETER Temperature 1",
        ["(line 5): unknown parameter 'Temperature'"],
        [],
    ),
    ("bad-float", "FROM a\nPARAMETER temperature abc", ["(line 2): invalid float value [abc]"], []),
    ("bad-int", "FROM a\nPARAMETER num_ctx x", ["(line 2): invalid int value [x]"], []),
    ("int-not-float", "FROM a\nPARAMETER top_k 1.0", ["(line 2): invalid int value [1.0]"], []),
    ("bad-bool", "FROM a\nPARAMETER use_mmap x", ["(line 2): invalid bool value [x]"], []),
    ("empty-float", "FROM a\nPARAMETER temperature ", ["(line 2): invalid float value []"], []),
    ("removed-numa", "FROM a\nPARAMETER numa true", ["(line 2): unknown parameter 'numa'"], []),
    ("removed-tfs_z", "FROM a\nPARAMETER tfs_z 1", ["(line 2): unknown parameter 'tfs_z'"], []),
    ("empty-name", "FROM a\nPARAMETER  x 1", ["(line 2): unknown parameter ''"], []),
    (
        "deprecated",
        "FROM a\nPARAMETER mirostat 2\nPARAMETER penalize_newline nonsense",
        [],
        [
            "(line 2): parameter mirostat is deprecated",
            "(line 3): parameter penalize_newline is deprecated",
        ],
    ),
    (
        "two-adapters",
        "FROM a\nADAPTER x\nADAPTER y",
        [],
        ["(line 2): only the last ADAPTER is used: Ollama supports one adapter"],
    ),
    (
        "every-problem",
        "PARAMETER seed x\nPARAMETER top_p y\nPARAMETER foo 1\nPARAMETER low_vram true",
        [
            "no FROM line",
            "(line 1): invalid int value [x]",
            "(line 2): invalid float value [y]",
            "(line 3): unknown parameter 'foo'",
        ],
        ["(line 4): parameter low_vram is deprecated"],
    ),
]


@pytest.mark.parametrize(
    ("text", "problems", "warnings"), [c[1:] for c in CHECKS], ids=[c[0] for c in CHECKS]
)
def test_check_and_validate(text: str, problems: list[str], warnings: list[str]) -> None:
    assert check(parse(text, strict=False)) == (problems, warnings)
    if problems:
        with pytest.raises(ModelfileError) as info:
            validate(text)
        assert info.value.problems == problems
    else:
        assert validate(text) == validate(text.encode())


def test_check_built_modelfile() -> None:
    built = Modelfile(
        [I("from", "a"), I("bogus", "x"), I("message", "hi", "tool"), I("requires", "x.y")]
    )
    problems, _ = check(built)
    assert problems == [BAD_COMMAND, BAD_ROLE, "requires must be a valid semver (e.g. 0.14.0)"]


def test_validate_logs_warnings(caplog: pytest.LogCaptureFixture) -> None:
    validate("FROM a\nPARAMETER vocab_only true")
    assert "(line 2): parameter vocab_only is deprecated" in caplog.text


# --- the Modelfile helpers ------------------------------------------------------------------


def sample() -> Modelfile:
    return parse(
        "PARAMETER temperature 0.5\nFROM base\nSYSTEM one\nPARAMETER stop a\nSYSTEM two\n"
        "LICENSE MIT\nLICENSE Apache\nPARAMETER stop b\nMESSAGE user hi\nMESSAGE assistant yo\n"
        "PARAMETER top_k 7\nPARAMETER top_k 9\nPARAMETER mirostat 1\n"
    )


def test_lookups() -> None:
    mf = sample()
    assert mf.first("FROM") == I("from", "base")
    assert mf.first("template") is None
    assert mf.value("system") == "two" and mf.value("template") is None
    assert mf.values("license") == ["MIT", "Apache"]
    assert mf.messages() == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]


def test_parameters_are_typed() -> None:
    mf = sample()
    assert mf.parameters() == {"temperature": 0.5, "stop": ["a", "b"], "top_k": 9}
    assert mf.get_parameter("top_k") == 9
    assert mf.get_parameter("stop") == ["a", "b"]
    assert mf.get_parameter("num_ctx") is None
    assert mf.get_parameter("mirostat") is None
    with pytest.raises(ModelfileError, match="unknown parameter 'nope'"):
        mf.get_parameter("nope")


def test_parameters_report_every_bad_line() -> None:
    mf = parse("FROM a\nPARAMETER seed x\nPARAMETER top_p y\nPARAMETER zzz 1")
    with pytest.raises(ModelfileError) as info:
        mf.parameters()
    assert info.value.problems == [
        "(line 2): invalid int value [x]",
        "(line 3): invalid float value [y]",
        "(line 4): unknown parameter 'zzz'",
    ]
    with pytest.raises(ModelfileError, match=r"^\(line 2\): invalid int value \[x\]$"):
        mf.get_parameter("seed")


def test_set_instruction_replaces_in_place_and_dedupes() -> None:
    mf = sample()
    mf.set_instruction("SYSTEM", "three")
    assert mf.values("system") == ["three"]
    assert [i.command for i in mf.instructions][:4] == ["parameter", "from", "system", "parameter"]
    mf.set_instruction("template", "{{ .Prompt }}")
    assert mf.instructions[-1] == I("template", "{{ .Prompt }}")


def test_set_instruction_from_goes_first() -> None:
    mf = Modelfile()
    mf.set_instruction("system", "s")
    mf.set_instruction("from", "base")
    assert mf.instructions == [I("from", "base"), I("system", "s")]
    mf.set_instruction("from", "other")
    assert mf.instructions == [I("from", "other"), I("system", "s")]


@pytest.mark.parametrize(
    ("command", "value", "message"),
    [
        ("bogus", "x", BAD_COMMAND),
        ("parameter", "x", "PARAMETER takes a key"),
        ("message", "x", "MESSAGE takes a key"),
        ("requires", "soon", "requires must be a valid semver"),
    ],
)
def test_set_instruction_refuses(command: str, value: str, message: str) -> None:
    with pytest.raises(ModelfileError, match=message):
        Modelfile().set_instruction(command, value)


def test_remove() -> None:
    mf = sample()
    mf.remove("license")
    mf.remove("message", "user")
    assert mf.values("license") == []
    assert mf.messages() == [{"role": "assistant", "content": "yo"}]
    mf.remove_parameter("stop")
    assert mf.get_parameter("stop") is None


def test_set_parameter() -> None:
    mf = sample()
    mf.set_parameter("top_k", 20)
    mf.set_parameter("temperature", "0.25")
    mf.set_parameter("use_mmap", False)
    mf.set_parameter("num_ctx", 8192.0)
    assert mf.parameters()["top_k"] == 20
    assert [i for i in mf.instructions if i.key == "top_k"] == [I("parameter", "20", "top_k")]
    assert mf.get_parameter("temperature") == 0.25
    assert mf.first("parameter") == I("parameter", "0.25", "temperature")  # kept its place
    assert mf.get_parameter("use_mmap") is False
    assert mf.instructions[-1] == I("parameter", "8192", "num_ctx")


def test_set_parameter_stop() -> None:
    mf = sample()
    mf.set_parameter("stop", ["x", "y", "z"])
    assert mf.get_parameter("stop") == ["x", "y", "z"]
    mf.set_parameter("stop", "only")
    assert mf.get_parameter("stop") == ["only"]
    mf.set_parameter("stop", [])
    assert mf.get_parameter("stop") is None


def test_set_parameter_none_removes() -> None:
    mf = sample()
    mf.set_parameter("temperature", None)
    assert mf.get_parameter("temperature") is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("Temperature", 1.0, "unknown parameter 'Temperature'"),
        ("numa", True, "unknown parameter 'numa'"),
        ("mirostat", 1, "parameter mirostat is deprecated"),
        ("temperature", "hot", r"invalid float value \[hot\]"),
        ("num_ctx", "4k", r"invalid int value \[4k\]"),
        ("use_mmap", 1, 'option "use_mmap" must be of type boolean'),
        ("stop", [1], 'option "stop" must be of an array of strings'),
    ],
)
def test_set_parameter_refuses(name: str, value: object, message: str) -> None:
    mf = sample()
    before = list(mf.instructions)
    with pytest.raises(ModelfileError, match=message):
        mf.set_parameter(name, value)
    assert mf.instructions == before


def test_equality_ignores_line_numbers() -> None:
    assert parse("\n\nFROM a") == parse("FROM a")
    assert I("from", "a", line=3) == I("from", "a", line=9)
    assert parse("FROM a") != parse("FROM b")
