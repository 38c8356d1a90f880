"""The Modelfile parser against Ollama's grammar: cases ported from parser/parser_test.go,
every syntax rule, every error with its exact text, and fuzzing."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurons.errors import InvalidRequestError, ModelfileError
from neurons.modelfile import Instruction, parse, parse_file, validate

I = Instruction  # noqa: E741 - keeps the tables readable

BAD_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
BAD_ROLE = 'message role must be one of "system", "user", or "assistant"'
LLAMA3_TEMPLATE = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>"
    "{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}"
    "<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}"
    "<|eot_id|>"
)

# (id, input, expected instructions)
PARSES = [
    # --- ported from parser_test.go ---------------------------------------------------------
    (
        "go-file",
        f"\nFROM model1\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\n"
        f'PARAMETER param2 value2\nTEMPLATE """{LLAMA3_TEMPLATE}"""    \n',
        [
            I("from", "model1"),
            I("adapter", "adapter1"),
            I("license", "MIT"),
            I("parameter", "value1", "param1"),
            I("parameter", "value2", "param2"),
            I("template", LLAMA3_TEMPLATE),
        ],
    ),
    (
        "go-draft",
        "\nFROM base\nDRAFT ./assistant\n",
        [I("from", "base"), I("draft", "./assistant")],
    ),
    (
        "go-trim-space",
        f'\nFROM "     model 1"\nADAPTER      adapter3\nLICENSE "MIT       "\n'
        f"PARAMETER param1        value1\nPARAMETER param2    value2\n"
        f'TEMPLATE """   {LLAMA3_TEMPLATE}   """    \n',
        [
            I("from", "     model 1"),
            I("adapter", "adapter3"),
            I("license", "MIT       "),
            I("parameter", "value1", "param1"),
            I("parameter", "value2", "param2"),
            I("template", f"   {LLAMA3_TEMPLATE}   "),
        ],
    ),
    ("go-from-quoted-spaces", 'FROM "FOO  BAR  "', [I("from", "FOO  BAR  ")]),
    (
        "go-from-quoted-then-param",
        'FROM "FOO BAR"\nPARAMETER param1 value1',
        [I("from", "FOO BAR"), I("parameter", "value1", "param1")],
    ),
    ("go-from-unquoted-trimmed", "FROM     FOOO BAR    ", [I("from", "FOOO BAR")]),
    ("go-from-path-space", "FROM /what/is/the path ", [I("from", "/what/is/the path")]),
    ("go-from-name", "FROM foo", [I("from", "foo")]),
    ("go-from-path", "FROM /path/to/model", [I("from", "/path/to/model")]),
    ("go-from-bin", "FROM /path/to/model/fp16.bin", [I("from", "/path/to/model/fp16.bin")]),
    ("go-from-tag", "FROM llama3:latest", [I("from", "llama3:latest")]),
    (
        "go-from-quant-tag",
        "FROM llama3:7b-instruct-q4_K_M",
        [I("from", "llama3:7b-instruct-q4_K_M")],
    ),
    (
        "go-from-after-parameter",
        "PARAMETER param1 value1\nFROM foo",
        [I("parameter", "value1", "param1"), I("from", "foo")],
    ),
    (
        "go-from-lemonade",
        "PARAMETER what the \nFROM lemons make lemonade ",
        [I("parameter", "the", "what"), I("from", "lemons make lemonade")],
    ),
    (
        "go-renderer",
        "\nFROM foo\nRENDERER renderer1\n",
        [I("from", "foo"), I("renderer", "renderer1")],
    ),
    ("go-parser", "\nFROM foo\nPARSER parser1\n", [I("from", "foo"), I("parser", "parser1")]),
    (
        "go-message-system",
        "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.\n",
        [I("from", "foo"), I("message", "You are a file parser. Always parse things.", "system")],
    ),
    (
        "go-message-at-eof",
        "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.",
        [I("from", "foo"), I("message", "You are a file parser. Always parse things.", "system")],
    ),
    (
        "go-messages",
        "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.\n"
        "MESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the things!\n",
        [
            I("from", "foo"),
            I("message", "You are a file parser. Always parse things.", "system"),
            I("message", "Hey there!", "user"),
            I("message", "Hello, I want to parse all the things!", "assistant"),
        ],
    ),
    (
        "go-message-multiline",
        '\nFROM foo\nMESSAGE system """\nYou are a multiline file parser. Always parse things.\n"""'
        "\n\t\t\t",
        [
            I("from", "foo"),
            I("message", "\nYou are a multiline file parser. Always parse things.\n", "system"),
        ],
    ),
    (
        "go-quoted-multiline",
        '\nFROM foo\nSYSTEM """\nThis is a\nmultiline system.\n"""\n\t\t\t',
        [I("from", "foo"), I("system", "\nThis is a\nmultiline system.\n")],
    ),
    (
        "go-quoted-multiline-close-on-text",
        '\nFROM foo\nSYSTEM """\nThis is a\nmultiline system."""\n\t\t\t',
        [I("from", "foo"), I("system", "\nThis is a\nmultiline system.")],
    ),
    (
        "go-quoted-multiline-open-on-text",
        '\nFROM foo\nSYSTEM """This is a\nmultiline system."""\n\t\t\t',
        [I("from", "foo"), I("system", "This is a\nmultiline system.")],
    ),
    (
        "go-quoted-one-line",
        '\nFROM foo\nSYSTEM """This is a multiline system."""\n\t\t\t',
        [I("from", "foo"), I("system", "This is a multiline system.")],
    ),
    (
        "go-quoted-inner-quotes",
        '\nFROM foo\nSYSTEM """\nThis is a multiline system with "quotes".\n"""\n',
        [I("from", "foo"), I("system", '\nThis is a multiline system with "quotes".\n')],
    ),
    ("go-empty-triple", '\nFROM foo\nSYSTEM """"""\n', [I("from", "foo"), I("system", "")]),
    ("go-empty-double", '\nFROM foo\nSYSTEM ""\n', [I("from", "foo"), I("system", "")]),
    ("go-single-quote-inside", '\nFROM foo\nSYSTEM "\'"\n', [I("from", "foo"), I("system", "'")]),
    (
        "go-quote-soup",
        '\nFROM foo\nSYSTEM """\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'"""\n',
        [I("from", "foo"), I("system", "''\"'\"\"'\"\"'\"'''''\"\"'\"\"'")],
    ),
    (
        "go-template-at-eof",
        '\nFROM foo\nTEMPLATE """\n{{ .Prompt }}\n"""',
        [I("from", "foo"), I("template", "\n{{ .Prompt }}\n")],
    ),
    ("go-comment", "\n# comment\nFROM foo\n\t", [I("from", "foo")]),
    ("go-multibyte", "FROM test\n\tSYSTEM 你好👋", [I("from", "test"), I("system", "你好👋")]),
    # --- the rest of the grammar ------------------------------------------------------------
    ("case-insensitive", "from a\nSyStEm b\n", [I("from", "a"), I("system", "b")]),
    ("comment-indented", "  \t# note\nFROM a", [I("from", "a")]),
    ("comment-between", "FROM a\n# SYSTEM no\nSYSTEM yes", [I("from", "a"), I("system", "yes")]),
    ("hash-in-value", "FROM a # not a comment", [I("from", "a # not a comment")]),
    ("tab-separator", "FROM\ta\nPARAMETER\tseed\t1", [I("from", "a"), I("parameter", "1", "seed")]),
    ("tab-inside-value", "FROM a\nSYSTEM x\ty", [I("from", "a"), I("system", "x\ty")]),
    ("single-quotes-literal", "FROM a\nSYSTEM 'hi'", [I("from", "a"), I("system", "'hi'")]),
    ("quote-not-first", 'FROM a\nSYSTEM say "hi"', [I("from", "a"), I("system", 'say "hi"')]),
    ("inner-quote-wrapped", 'FROM a\nSYSTEM "a" b"', [I("from", "a"), I("system", 'a" b')]),
    (
        "double-quote-multiline",
        'FROM a\nSYSTEM "line 1\nline 2"\n',
        [I("from", "a"), I("system", "line 1\nline 2")],
    ),
    (
        "quoted-keeps-hash-lines",
        'FROM a\nSYSTEM """\n# kept\n"""',
        [I("from", "a"), I("system", "\n# kept\n")],
    ),
    ("crlf", "FROM a\r\nSYSTEM b\r\n", [I("from", "a"), I("system", "b")]),
    (
        "crlf-inside-quotes",
        'FROM a\r\nSYSTEM "x\r\ny"\r\n',
        [I("from", "a"), I("system", "x\r\ny")],
    ),
    ("trailing-space-empty-value", "FROM a\nSYSTEM \n", [I("from", "a"), I("system", "")]),
    (
        "parameter-empty-name",
        "FROM a\nPARAMETER  temperature 1\n",
        [I("from", "a"), I("parameter", "temperature 1", "")],
    ),
    (
        "parameter-name-case-kept",
        "FROM a\nPARAMETER Temperature 1",
        [I("from", "a"), I("parameter", "1", "Temperature")],
    ),
    (
        "parameter-value-with-spaces",
        "FROM a\nPARAMETER stop ### User:  ",
        [I("from", "a"), I("parameter", "### User:", "stop")],
    ),
    (
        "repeated-stop",
        "FROM a\nPARAMETER stop a\nPARAMETER stop b",
        [I("from", "a"), I("parameter", "a", "stop"), I("parameter", "b", "stop")],
    ),
    ("many-from", "FROM a\nFROM b", [I("from", "a"), I("from", "b")]),
    ("requires", "FROM a\nREQUIRES 0.14.0", [I("from", "a"), I("requires", "0.14.0")]),
    ("requires-v", "FROM a\nREQUIRES v0.14.0", [I("from", "a"), I("requires", "v0.14.0")]),
    ("requires-short", "FROM a\nREQUIRES 1.2", [I("from", "a"), I("requires", "1.2")]),
    (
        "requires-prerelease",
        "FROM a\nREQUIRES 1.2.3-rc.1+build.05",
        [I("from", "a"), I("requires", "1.2.3-rc.1+build.05")],
    ),
    ("control-chars-dropped", "FROM a\nSYSTEM x\x00y\x0bz", [I("from", "a"), I("system", "xyz")]),
    ("nbsp-dropped", "FROM a\nSYSTEM x\u00a0y", [I("from", "a"), I("system", "xy")]),
    ("non-printable-before-command", "\u00a0FROM a", [I("from", "a")]),
    ("bom-str", "\ufeffFROM a", [I("from", "a")]),
]


@pytest.mark.parametrize(("text", "expected"), [p[1:] for p in PARSES], ids=[p[0] for p in PARSES])
def test_parses(text: str, expected: list[Instruction]) -> None:
    assert parse(text).instructions == expected


# Parameters as the Go test feeds them: "FROM foo\nPARAMETER <line>\n" (TestParseFileParameters).
GO_PARAMETERS = {
    "numa true": ("numa", "true"),
    "num_ctx 1": ("num_ctx", "1"),
    "num_batch 1": ("num_batch", "1"),
    "num_gqa 1": ("num_gqa", "1"),
    "num_gpu 1": ("num_gpu", "1"),
    "main_gpu 1": ("main_gpu", "1"),
    "use_mmap true": ("use_mmap", "true"),
    "num_thread 1": ("num_thread", "1"),
    "num_keep 1": ("num_keep", "1"),
    "seed 1": ("seed", "1"),
    "num_predict 1": ("num_predict", "1"),
    "top_k 1": ("top_k", "1"),
    "top_p 1.0": ("top_p", "1.0"),
    "min_p 0.05": ("min_p", "0.05"),
    "typical_p 1.0": ("typical_p", "1.0"),
    "repeat_last_n 1": ("repeat_last_n", "1"),
    "temperature 1.0": ("temperature", "1.0"),
    "repeat_penalty 1.0": ("repeat_penalty", "1.0"),
    "presence_penalty 1.0": ("presence_penalty", "1.0"),
    "frequency_penalty 1.0": ("frequency_penalty", "1.0"),
    "penalize_newline true": ("penalize_newline", "true"),
    "stop ### User:": ("stop", "### User:"),
    "stop ### User: ": ("stop", "### User:"),
    'stop "### User:"': ("stop", "### User:"),
    'stop "### User: "': ("stop", "### User: "),
    'stop """### User:"""': ("stop", "### User:"),
    'stop """### User:\n"""': ("stop", "### User:\n"),
    "stop <|endoftext|>": ("stop", "<|endoftext|>"),
    "stop <|eot_id|>": ("stop", "<|eot_id|>"),
    "stop </s>": ("stop", "</s>"),
}


@pytest.mark.parametrize(("line", "expected"), GO_PARAMETERS.items(), ids=list(GO_PARAMETERS))
def test_go_parameter_lines(line: str, expected: tuple[str, str]) -> None:
    name, value = expected
    parsed = parse(f"FROM foo\nPARAMETER {line}\n")
    assert parsed.instructions == [I("from", "foo"), I("parameter", value, name)]


# (id, input, the exact error message)
ERRORS = [
    ("go-bad-command", "\nFROM foo\nBADCOMMAND param1 value1\n", f"(line 3): {BAD_COMMAND}"),
    ("go-missing-parameter-value", "\nFROM foo\nPARAMETER param1\n", "(line 3): unexpected EOF"),
    ("go-bad-role", "\nFROM foo\nMESSAGE badguy I'm a bad guy!\n", f"(line 3): {BAD_ROLE}"),
    ("go-message-no-text", "\nFROM foo\nMESSAGE system\n", "(line 3): unexpected EOF"),
    ("go-message-no-text-eof", "\nFROM foo\nMESSAGE system", "(line 3): unexpected EOF"),
    (
        "go-triple-unclosed",
        '\nFROM foo\nSYSTEM """This is a multiline system.""\n\t\t\t',
        "(line 3): unexpected EOF",
    ),
    ("go-double-unclosed", '\nFROM foo\nSYSTEM "\n\t\t\t', "(line 3): unexpected EOF"),
    ("go-empty", "", "no FROM line"),
    ("go-no-from", "PARAMETER param1 value1", "no FROM line"),
    ("comments-only", "# FROM a\n", "no FROM line"),
    ("command-alone-on-line", "FROM\n", f"(line 1): {BAD_COMMAND}"),
    ("command-at-eof", "FROM a\nSYSTEM", "(line 2): unexpected EOF"),
    ("bad-command-char", "FR0M a", f"(line 1): {BAD_COMMAND}"),
    ("command-then-quote", 'FROM a\nSYSTEM"x"', f"(line 2): {BAD_COMMAND}"),
    ("bad-command-at-eof", "FROM a\nBAD", "(line 2): unexpected EOF"),
    ("parameter-bad-name-char", "FROM a\nPARAMETER te-mp 1", "(line 2): unexpected EOF"),
    ("parameter-name-at-eof", "FROM a\nPARAMETER seed", "(line 2): unexpected EOF"),
    ("role-capitalised", "FROM a\nMESSAGE System hi", f"(line 2): {BAD_ROLE}"),
    ("role-tool", "FROM a\nMESSAGE tool hi", f"(line 2): {BAD_ROLE}"),
    ("role-empty", "FROM a\nMESSAGE  user hi", f"(line 2): {BAD_ROLE}"),
    ("role-bad-char", "FROM a\nMESSAGE us3r hi", "(line 2): unexpected EOF"),
    ("unclosed-at-eof", 'FROM a\nSYSTEM "abc', "(line 2): unexpected EOF"),
    ("quote-then-text", 'FROM a\nSYSTEM "abc"def\nPARAMETER seed 1', "(line 2): unexpected EOF"),
    ("line-of-start-not-end", 'FROM a\n\nSYSTEM """\n\n\n', "(line 3): unexpected EOF"),
    ("crlf-lines", "FROM a\r\nSYSTEM b\r\nBAD x\r\n", f"(line 3): {BAD_COMMAND}"),
    (
        "requires-word",
        "FROM a\nREQUIRES abc",
        "(line 2): requires must be a valid semver (e.g. 0.14.0)",
    ),
    (
        "requires-leading-zero",
        "FROM a\nREQUIRES 01.2.3",
        "(line 2): requires must be a valid semver (e.g. 0.14.0)",
    ),
    (
        "requires-prerelease-leading-zero",
        "FROM a\nREQUIRES 1.2.3-01",
        "(line 2): requires must be a valid semver (e.g. 0.14.0)",
    ),
    (
        "requires-short-prerelease",
        "FROM a\nREQUIRES 1.2-rc1",
        "(line 2): requires must be a valid semver (e.g. 0.14.0)",
    ),
    (
        "no-from-and-bad-requires",
        "REQUIRES x",
        "no FROM line\n(line 1): requires must be a valid semver (e.g. 0.14.0)",
    ),
]


@pytest.mark.parametrize(("text", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ModelfileError) as info:
        parse(text)
    assert str(info.value) == message
    assert info.value.problems == message.split("\n")


def test_not_strict_stops_after_syntax(tmp_path: Path) -> None:
    text = "PARAMETER seed 1\nREQUIRES soon\n"
    assert parse(text, strict=False).instructions == [
        I("parameter", "1", "seed"),
        I("requires", "soon"),
    ]
    (tmp_path / "Modelfile").write_text(text)
    assert parse_file(tmp_path / "Modelfile", strict=False) == parse(text, strict=False)
    with pytest.raises(ModelfileError, match="unexpected EOF"):
        parse("PARAMETER seed", strict=False)


def test_error_types() -> None:
    with pytest.raises(ModelfileError) as info:
        parse("")
    assert isinstance(info.value, InvalidRequestError) and isinstance(info.value, ValueError)
    assert info.value.http_status == 400


GO_UTF16_TEXT = (
    "FROM bob\nPARAMETER param1 1\nPARAMETER param2 4096\nSYSTEM You are a utf16 file.\n"
)
GO_UTF16_EXPECTED = [
    I("from", "bob"),
    I("parameter", "1", "param1"),
    I("parameter", "4096", "param2"),
    I("system", "You are a utf16 file."),
]


@pytest.mark.parametrize(
    "data",
    [
        GO_UTF16_TEXT.encode("utf-8"),
        b"\xef\xbb\xbf" + GO_UTF16_TEXT.encode("utf-8"),
        b"\xff\xfe" + GO_UTF16_TEXT.encode("utf-16-le"),
        b"\xfe\xff" + GO_UTF16_TEXT.encode("utf-16-be"),
    ],
    ids=["utf8", "utf8-bom", "utf16-le", "utf16-be"],
)
def test_encodings(data: bytes) -> None:
    assert parse(data).instructions == GO_UTF16_EXPECTED


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_multibyte_in_every_encoding(encoding: str) -> None:
    # Python's "utf-16" codec writes a BOM, as Go's UseBOM encoder does (TestParseMultiByte).
    data = "FROM test\n\tSYSTEM 你好👋".encode(encoding)
    assert parse(data).instructions == [I("from", "test"), I("system", "你好👋")]


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert parse(b"FROM a\nSYSTEM x\xffy").value("system") == "x\ufffdy"


def test_line_numbers() -> None:
    text = '# c\nFROM a\n\nSYSTEM """\none\ntwo\n"""\nPARAMETER seed 1\r\nLICENSE x'
    assert [i.line for i in parse(text).instructions] == [2, 4, 8, 9]


def test_parse_file(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_bytes(b"\xff\xfe" + "FROM a\n".encode("utf-16-le"))
    assert parse_file(path).instructions == [I("from", "a")]
    assert parse_file(str(path)) == parse("FROM a")


@pytest.mark.parametrize("name", ["parser", "render", "schema"])
def test_doctests(name: str) -> None:
    # importlib, not attribute access: the package's ``render`` is the function.
    module = importlib.import_module(f"neurons.modelfile.{name}")
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


# --- fuzzing: only ModelfileError ever escapes ----------------------------------------------

FRAGMENTS = st.sampled_from(
    [
        "FROM ",
        "from ",
        "PARAMETER ",
        "MESSAGE ",
        "SYSTEM ",
        "TEMPLATE ",
        "ADAPTER ",
        "LICENSE ",
        "REQUIRES ",
        "DRAFT ",
        "RENDERER ",
        "PARSER ",
        "BOGUS ",
        "temperature ",
        "stop ",
        "num_ctx ",
        "use_mmap ",
        "mirostat ",
        "user ",
        "system ",
        "assistant ",
        "tool ",
        '"',
        '"""',
        "'",
        "#",
        " ",
        "\t",
        "\n",
        "\r\n",
        "\r",
        "0.5",
        "42",
        "-1",
        "true",
        "x",
        "0.14.0",
        "你好",
        "👋",
        "\u00a0",
        "\x00",
        "\ufeff",
    ]
)
MODELFILE_LIKE = st.lists(FRAGMENTS | st.text(max_size=4), max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.text() | MODELFILE_LIKE)
def test_fuzz_text_only_raises_modelfile_error(text: str) -> None:
    for function in (parse, validate):
        try:
            function(text)
        except ModelfileError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    st.binary()
    | MODELFILE_LIKE.map(lambda t: t.encode("utf-8", "surrogatepass"))
    | MODELFILE_LIKE.map(lambda t: b"\xff\xfe" + t.encode("utf-16-le", "surrogatepass"))
)
def test_fuzz_bytes_only_raises_modelfile_error(data: bytes) -> None:
    for function in (parse, validate):
        try:
            function(data)
        except ModelfileError:
            pass
