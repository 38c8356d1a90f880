"""Rendering: the quoting rule, Ollama's format round-trip cases, and the property
``parse(render(m)) == m`` for every Modelfile the parser can produce."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurons.errors import ModelfileError
from neurons.modelfile import COMMANDS, MESSAGE_ROLES, Instruction, Modelfile, parse, quote, render

I = Instruction  # noqa: E741 - keeps the tables readable

# (id, value, rendered argument)
QUOTES = [
    ("plain", "llama3:8b", "llama3:8b"),
    ("plain-inner-spaces", "a b\tc", "a b\tc"),
    ("plain-hash", "# not a comment", "# not a comment"),
    ("plain-inner-quote", 'say "hi"', 'say "hi"'),
    ("plain-trailing-quote", 'a"', 'a"'),
    ("plain-unicode", "你好👋", "你好👋"),
    ("empty", "", '""'),
    ("leading-space", " x", '" x"'),
    ("trailing-tab", "x\t", '"x\t"'),
    ("starts-with-quote", '"hi"', '""hi""'),
    ("single-quote-char", '"', '"""""""'),
    ("two-quote-chars", '""', '""""""""'),
    ("leading-double-quote-pair", '""x', '"""""x"""'),
    ("multiline", "a\nb", '"""a\nb"""'),
    ("multiline-cr", "a\rb", '"""a\rb"""'),
    ("multiline-with-quotes", 'say "hi"\nnow', '"""say "hi"\nnow"""'),
    ("multiline-triple-inside", 'a"""b\nc', '"""a"""b\nc"""'),
    ("trailing-newline", "x\n", '"""x\n"""'),
    ("ends-with-quote-multiline", 'x\ny"', '"""x\ny""""'),
]


@pytest.mark.parametrize(("value", "text"), [q[1:] for q in QUOTES], ids=[q[0] for q in QUOTES])
def test_quote(value: str, text: str) -> None:
    assert quote(value) == text
    assert parse(f"FROM a\nSYSTEM {text}\n").value("system") == value


@pytest.mark.parametrize(
    "value",
    ['a"""\nb', 'a""" \t\nb', 'a"""\nb"\nc', '""\n"""\n', '"""\n', 'x"""\r\ny"\n'],
    ids=["triple-eol", "triple-blanks-eol", "both-fail", "leading-pair", "only-triple", "crlf"],
)
def test_unrepresentable_values_raise(value: str) -> None:
    with pytest.raises(ModelfileError, match="cannot be written in a Modelfile"):
        quote(value)


def test_render_format() -> None:
    mf = parse(
        'from base\nparameter temperature 0.5\nparameter stop "<|eot|>"\n'
        'message user "  hi  "\ntemplate """{{ .Prompt }}\n"""\nrequires v0.14.0\n'
    )
    assert render(mf) == (
        "FROM base\n"
        "PARAMETER temperature 0.5\n"
        "PARAMETER stop <|eot|>\n"
        'MESSAGE user "  hi  "\n'
        'TEMPLATE """{{ .Prompt }}\n"""\n'
        "REQUIRES v0.14.0\n"
    )
    assert render(Modelfile()) == ""


def test_render_keeps_source_order_and_empty_parameter_name() -> None:
    mf = parse("PARAMETER  seed 1\nFROM a")
    assert render(mf) == "PARAMETER  seed 1\nFROM a\n"
    assert parse(render(mf)) == mf


# Ollama's TestParseFileFormatParseFile inputs: parse, String(), parse again, compare.
GO_FORMAT_CASES = [
    "\nFROM foo\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nPARAMETER param2 value2\n"
    "TEMPLATE template1\nMESSAGE system You are a file parser. Always parse things.\n"
    "MESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the things!\n",
    "\nFROM foo\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nPARAMETER param2 value2\n"
    'TEMPLATE template1\nMESSAGE system """\nYou are a store greeter. Always respond with '
    '"Hello!".\n"""\nMESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the '
    "things!\n",
    '\nFROM foo\nADAPTER adapter1\nLICENSE """\nVery long and boring legal text.\nBlah blah '
    'blah.\n"Oh look, a quote!"\n"""\n\nPARAMETER param1 value1\nPARAMETER param2 value2\n'
    'TEMPLATE template1\nMESSAGE system """\nYou are a store greeter. Always respond with '
    '"Hello!".\n"""\nMESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the '
    "things!\n",
    '\nFROM foo\nSYSTEM ""\n',
]


@pytest.mark.parametrize("text", GO_FORMAT_CASES, ids=["plain", "multiline", "license", "empty"])
def test_go_format_round_trip(text: str) -> None:
    mf = parse(text)
    assert parse(render(mf)) == mf
    assert render(parse(render(mf))) == render(mf)


def test_non_printable_characters_are_lost_as_in_ollama() -> None:
    built = Modelfile([I("from", "a"), I("system", "x\x00y\u00a0z")])
    assert parse(render(built)).value("system") == "xyz"


# --- the round-trip property ----------------------------------------------------------------

# What a parsed value can hold: printable characters plus the layout whitespace. Weighted
# towards the characters that matter to quoting.
VALUE_CHARS = st.sampled_from(
    ['"', '"', '"', "'", "#", " ", "\t", "\n", "\r", "x", "é", "你", "👋"]
)
VALUES = st.text(
    alphabet=VALUE_CHARS | st.characters(categories=["L", "M", "N", "P", "S"]), max_size=24
) | st.sampled_from(["", '"', '""', '"""', '""""""', ' "x" ', '"""\n', 'a"\n'])
SEMVER = st.sampled_from(["0.14.0", "v0.14.0", "1", "1.2", "1.2.3-rc.1+b.5"])
PARAMETER_NAMES = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", max_size=12
)
SIMPLE_COMMANDS = [c for c in COMMANDS if c not in ("parameter", "message", "requires")]


@st.composite
def instructions(draw: st.DrawFn) -> Instruction:
    command = draw(st.sampled_from(COMMANDS))
    if command == "parameter":
        return I(command, draw(VALUES), draw(PARAMETER_NAMES))
    if command == "message":
        return I(command, draw(VALUES), draw(st.sampled_from(MESSAGE_ROLES)))
    if command == "requires":
        return I(command, draw(SEMVER))
    return I(command, draw(VALUES))


@st.composite
def modelfiles(draw: st.DrawFn) -> Modelfile:
    body = draw(st.lists(instructions(), max_size=8))
    base = I("from", draw(VALUES))
    return Modelfile(draw(st.permutations([base, *body])))


_UNREPRESENTABLE = re.compile(r'"""[ \t]*[\r\n]')


@settings(max_examples=300, deadline=None)
@given(modelfiles())
def test_parse_render_round_trip(mf: Modelfile) -> None:
    representable = not any(_UNREPRESENTABLE.search(i.value) for i in mf.instructions)
    if not representable:
        with pytest.raises(ModelfileError):
            render(mf)
        return
    assert parse(render(mf)) == mf


# Text built from Modelfile pieces, so that many examples parse (quoted values spanning lines
# included): whatever the parser produces renders, with no value it cannot write, and reads
# back the same.
PIECES = st.sampled_from(
    [
        "FROM ",
        "SYSTEM ",
        "TEMPLATE ",
        "LICENSE ",
        "PARAMETER stop ",
        "PARAMETER seed ",
        "MESSAGE user ",
        "ADAPTER ",
        '"',
        '"""',
        " ",
        "\t",
        "\n",
        "\r\n",
        "\r",
        "#",
        "x",
        "'",
        "你",
    ]
)
BODY_PIECES = st.sampled_from(['"', '""', '"""', " ", "\t", "\n", "\r\n", "\r", "#", "x", "你"])
QUOTED_LINE = st.tuples(
    st.sampled_from(["SYSTEM ", "TEMPLATE  ", "MESSAGE user ", "PARAMETER stop ", "LICENSE\t"]),
    st.sampled_from(["", '"', '"""']),
    st.lists(BODY_PIECES, max_size=12).map("".join),
    st.sampled_from(["", '"', '"""']),
    st.sampled_from(["\n", " \n", "\r\n", ""]),
).map("".join)
PARSER_INPUT = st.lists(PIECES, min_size=1, max_size=30).map("".join) | st.lists(
    QUOTED_LINE, min_size=1, max_size=4
).map("\n".join)


@settings(max_examples=500, deadline=None)
@given(PARSER_INPUT.map(lambda text: "FROM a\n" + text))
def test_parser_output_always_renders(text: str) -> None:
    try:
        mf = parse(text)
    except ModelfileError:
        return
    assert all(not _UNREPRESENTABLE.search(i.value) for i in mf.instructions)
    assert parse(render(mf)) == mf


@pytest.mark.parametrize("command", SIMPLE_COMMANDS)
def test_every_command_renders_upper_case(command: str) -> None:
    mf = Modelfile([I("from", "a"), I(command, "v")])
    assert render(mf).splitlines()[1] == f"{command.upper()} v"


LAYOUT = ['"', " ", "\n", "x", "\t", "\r"]


def _words(max_length: int) -> list[str]:
    return [
        "".join(word)
        for length in range(max_length + 1)
        for word in itertools.product(LAYOUT, repeat=length)
    ]


def test_exhaustive_small_values() -> None:
    """Every string of up to 5 layout characters: quote() either raises for a value with
    triple quotes before a line end, or the text reads back exactly; and every value the
    parser makes from up to 5 characters after ``SYSTEM`` renders and reads back."""
    for value in _words(5):
        try:
            text = quote(value)
        except ModelfileError:
            assert _UNREPRESENTABLE.search(value)
            continue
        assert parse(f"FROM a\nSYSTEM {text}\n").value("system") == value, repr(value)
    for word in _words(5):
        try:
            mf = parse("FROM a\nSYSTEM " + word)
        except ModelfileError:
            continue
        assert parse(render(mf)) == mf, repr(word)
