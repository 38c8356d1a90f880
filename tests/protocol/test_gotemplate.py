"""The Go text/template subset that renders Ollama Modelfile TEMPLATEs.

Expected strings are derived by hand from Go's text/template semantics (and the documented
deliberate differences in ``neurons.ollama.gotemplate``).
"""

from __future__ import annotations

from typing import Any

import pytest

from neurons.errors import InvalidRequestError
from neurons.neuron.defaults import GEMMA3_TEMPLATE
from neurons.ollama.gotemplate import Template, TemplateError, parse, render

MESSAGES = [
    {"Role": "system", "Content": "Be brief."},
    {"Role": "user", "Content": "hi"},
    {"Role": "assistant", "Content": "yo"},
    {"Role": "user", "Content": "again"},
]
DATA: dict[str, Any] = {
    "System": "You are a bot.",
    "Prompt": "Hello?",
    "Response": "",
    "Messages": MESSAGES,
}

# The template neurons ships for gemma3:270m (Ollama library's Gemma 3 template).
GEMMA3 = GEMMA3_TEMPLATE

CHATML = """\
{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ .Response }}<|im_end|>"""

# Shaped like Ollama's qwen2.5 template: tools printed through a struct's String() (here a dict,
# which prints as JSON), tool calls, and a trailing generation prompt.
TOOLS = """\
{{- if .Tools }}<tools>
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
</tools>
{{ end }}
{{- range $i, $m := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
<|{{ .Role }}|>
{{- if .ToolCalls }}{{ range .ToolCalls }}
<tool_call>{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}</tool_call>
{{- end }}{{ else }} {{ .Content }}{{ end }}
{{ if and (ne .Role "assistant") $last }}<|assistant|>
{{ end }}
{{- end }}"""

# Ollama prints a tool's function through ToolFunction.String(), i.e. as JSON with the JSON
# (lower-case) field names; the caller passes it as a dict, which prints the same way.
TOOLS_DATA: dict[str, Any] = {
    "Tools": [
        {
            "Type": "function",
            "Function": {
                "name": "get_weather",
                "parameters": {"type": "object", "required": ["city"]},
            },
        }
    ],
    "Messages": [
        {"Role": "user", "Content": "Weather in Paris?"},
        {
            "Role": "assistant",
            "Content": "",
            "ToolCalls": [
                {"Function": {"Name": "get_weather", "Arguments": {"city": "Paris", "n": 1.0}}}
            ],
        },
        {"Role": "tool", "Content": "sunny <20C>"},
    ],
}


REAL_TEMPLATES: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "gemma3",
        GEMMA3,
        DATA,
        "<start_of_turn>user\nBe brief.<end_of_turn>\n"
        "<start_of_turn>user\nhi<end_of_turn>\n"
        "<start_of_turn>model\nyo<end_of_turn>\n"
        "<start_of_turn>user\nagain<end_of_turn>\n"
        "<start_of_turn>model\n",
    ),
    (
        "gemma3-ends-with-assistant",
        GEMMA3,
        {"Messages": MESSAGES[:3]},
        "<start_of_turn>user\nBe brief.<end_of_turn>\n"
        "<start_of_turn>user\nhi<end_of_turn>\n"
        "<start_of_turn>model\nyo",
    ),
    ("gemma3-no-messages", GEMMA3, {"Messages": []}, ""),
    (
        "chatml",
        CHATML,
        DATA,
        "<|im_start|>system\nYou are a bot.<|im_end|>\n"
        "<|im_start|>user\nHello?<|im_end|>\n"
        "<|im_start|>assistant\n<|im_end|>",
    ),
    (
        "chatml-no-system",
        CHATML,
        {"Prompt": "Hello?", "Response": "Hi!"},
        "<|im_start|>user\nHello?<|im_end|>\n<|im_start|>assistant\nHi!<|im_end|>",
    ),
    ("plain-prompt", "{{ .Prompt }}", DATA, "Hello?"),
    ("system-and-prompt", "{{ .System }} {{ .Prompt }}", DATA, "You are a bot. Hello?"),
    ("system-and-prompt-no-system", "{{ .System }} {{ .Prompt }}", {"Prompt": "p"}, " p"),
    (
        "tools",
        TOOLS,
        TOOLS_DATA,
        "<tools>\n"
        '{"type": "function", "function": {"name":"get_weather",'
        '"parameters":{"type":"object","required":["city"]}}}\n'
        "</tools>\n"
        "<|user|> Weather in Paris?\n"
        "<|assistant|>\n"
        '<tool_call>{"name": "get_weather", "arguments": {"city":"Paris","n":1}}</tool_call>\n'
        "<|tool|> sunny <20C>\n"
        "<|assistant|>\n",
    ),
]


@pytest.mark.parametrize(
    ("template", "data", "expected"),
    [case[1:] for case in REAL_TEMPLATES],
    ids=[case[0] for case in REAL_TEMPLATES],
)
def test_real_templates(template: str, data: dict[str, Any], expected: str) -> None:
    assert render(template, data) == expected


D: dict[str, Any] = {
    "S": "str",
    "Empty": "",
    "N": 3,
    "Zero": 0,
    "F": 2.5,
    "T": True,
    "L": [1, 2, 3],
    "LL": [["a", "b"], ["c"]],
    "M": {"k": "v", "Inner": {"Deep": "deep"}},
    "Messages": MESSAGES,
    "Dict": {"b": 2, "a": 1},
}

CONSTRUCTS: list[tuple[str, dict[str, Any], str]] = [
    # text, trim markers, comments
    ("plain text", {}, "plain text"),
    ("", {}, ""),
    ("a  {{- .S -}}  \n b", D, "astrb"),
    ("a \n{{- .S }} b", D, "astr b"),
    ("a {{ .S -}} \n\t b", D, "a strb"),
    ("{{-3}}", {}, "-3"),
    ("{{- 3 }}", {}, "3"),
    ("a{{/* a comment */}}b", {}, "ab"),
    ("a \n {{- /* trimmed */ -}} \n b", {}, "ab"),
    ("{{/* multi\nline */}}x", {}, "x"),
    ("{{ .S }}}", D, "str}"),
    ("{ {{ .S }} }", D, "{ str }"),
    # fields, dot, root, variables
    ("{{ . }}", {"A": "x"}, '{"A":"x"}'),
    ("{{ .M.Inner.Deep }}", D, "deep"),
    ("{{ .M.Missing.Deeper }}|{{ .Nope }}|", D, "||"),
    ("{{ $ }}", {"A": 1}, '{"A":1}'),
    ("{{ $.S }}", D, "str"),
    ("{{ range .L }}{{ $.S }}{{ end }}", D, "strstrstr"),
    ("{{ $x := .S }}{{ $x }}", D, "str"),
    ("{{ $x := .M }}{{ $x.Inner.Deep }}", D, "deep"),
    ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", {}, "2"),
    ("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}", {}, "21"),
    ("{{ with $x := .S }}{{ $x }}{{ . }}{{ end }}", D, "strstr"),
    ("{{ (index .Messages 1).Content }}", D, "hi"),
    ("{{ if\n  .S }}multi-line action{{ end }}", D, "multi-line action"),
    # if / else if / else, truthiness
    ("{{ if .T }}y{{ else }}n{{ end }}", D, "y"),
    ("{{ if .Zero }}y{{ else }}n{{ end }}", D, "n"),
    ("{{ if .Empty }}y{{ else }}n{{ end }}", D, "n"),
    ("{{ if .Nope }}y{{ else }}n{{ end }}", D, "n"),
    ("{{ if .L }}y{{ end }}{{ if .NoList }}n{{ end }}", {**D, "NoList": []}, "y"),
    ("{{ if .M }}y{{ end }}{{ if .NoMap }}n{{ end }}", {**D, "NoMap": {}}, "y"),
    ("{{ if 0.0 }}y{{ else }}n{{ end }}", {}, "n"),
    ("{{ if false }}a{{ else if .Zero }}b{{ else if .S }}c{{ else }}d{{ end }}", D, "c"),
    ("{{ if false }}a{{ else if false }}b{{ else }}d{{ end }}", D, "d"),
    ('{{ if eq .S "str" }}y{{ end }}', D, "y"),
    ('{{ if (eq .S "x") }}y{{ else }}n{{ end }}', D, "n"),
    # range
    ("{{ range .L }}[{{ . }}]{{ end }}", D, "[1][2][3]"),
    ("{{ range $i, $e := .L }}{{ $i }}={{ $e }} {{ end }}", D, "0=1 1=2 2=3 "),
    ("{{ range $e := .L }}{{ $e }}{{ end }}", D, "123"),
    ("{{ range .NoList }}x{{ else }}empty{{ end }}", {"NoList": []}, "empty"),
    ("{{ range .Nope }}x{{ else }}none{{ end }}", D, "none"),
    ("{{ range $k, $v := .Dict }}{{ $k }}={{ $v }};{{ end }}", D, "a=1;b=2;"),
    ("{{ range .Messages }}{{ .Role }} {{ end }}", D, "system user assistant user "),
    ("{{ range .LL }}{{ range . }}{{ . }}{{ end }}|{{ end }}", D, "ab|c|"),
    ("{{ range 3 }}{{ . }}{{ end }}", {}, "012"),
    ("{{ range .L }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}", D, "13"),
    ("{{ range .L }}{{ if eq . 2 }}{{ break }}{{ end }}{{ . }}{{ end }}", D, "1"),
    ("{{ range $i, $m := .Messages }}{{ $x := $i }}{{ $x }}{{ end }}", D, "0123"),
    # with
    ("{{ with .M }}{{ .k }}{{ end }}", D, "v"),
    ("{{ with .Nope }}x{{ else }}no{{ end }}", D, "no"),
    ("{{ with .Nope }}x{{ else with .S }}{{ . }}{{ else }}no{{ end }}", D, "str"),
    # comparison functions
    ('{{ eq 1 1 }} {{ eq 1 2 }} {{ eq 2 1 2 }} {{ eq "a" "b" "c" }}', {}, "true false true false"),
    ('{{ ne .S "x" }} {{ ne 1 1 }}', D, "true false"),
    ("{{ lt 1 2 }} {{ le 2 2 }} {{ gt 1 2 }} {{ ge 2 3 }}", {}, "true true false false"),
    ('{{ lt "a" "b" }} {{ gt 2.5 2 }}', {}, "true true"),
    (
        '{{ eq .Nope "" }} {{ eq .Nope 0 }} {{ eq .Nope "x" }} {{ eq .Nope nil }}',
        D,
        "true true false true",
    ),
    ("{{ eq true true }} {{ eq 1 1.0 }}", {}, "true true"),
    # logic: and/or return one of their arguments and short-circuit
    ('{{ and 1 0 2 }}|{{ and 1 2 }}|{{ or 0 "" }}|{{ or 0 "x" 1 }}', {}, "0|2||x"),
    ('{{ or .Nope "default" }}', D, "default"),
    ("{{ and false (index .L 99) }} {{ or true (index .L 99) }}", D, "false true"),
    ("{{ not .Nope }} {{ not .S }}", D, "true false"),
    ("{{ if and .S (not .Empty) }}y{{ end }}", D, "y"),
    # len, index, slice
    ('{{ len .L }} {{ len .S }} {{ len .M }} {{ len .Nope }} {{ len "héllo" }}', D, "3 3 2 0 6"),
    ('{{ index .L 1 }} {{ index .M "k" }} {{ index .LL 1 0 }} {{ index .M "x" }}', D, "2 v c "),
    ("{{ index .L }}", D, "[1 2 3]"),
    (
        "{{ slice .L 1 }} {{ slice .L 1 2 }} {{ slice .L }} {{ slice .L 3 }}",
        D,
        "[2 3] [2] [1 2 3] []",
    ),
    ('{{ slice "hello" 1 3 }}', {}, "el"),
    ("{{ len (slice $.Messages 3) }}", D, "1"),
    # print family
    ('{{ print "a" 1 2 "b" }}', {}, "a1 2b"),
    ('{{ print }}|{{ println 1 "a" }}', {}, "|1 a\n"),
    ('{{ printf "%s=%d" "n" 5 }}', {}, "n=5"),
    (
        '{{ printf "%q" "hi\\n" }} {{ printf "%v" .L }} {{ printf "%v" .S }}',
        D,
        '"hi\\n" [1 2 3] str',
    ),
    ('{{ printf "%5.1f|%-4d|%04d|%x|%t" 3.14159 7 42 255 true }}', {}, "  3.1|7   |0042|ff|true"),
    (
        '{{ printf "%d%%" 50 }} {{ printf "%.2s" "abc" }} {{ printf "%5s|" "ab" }}',
        {},
        "50% ab    ab|",
    ),
    (
        '{{ printf "%d" "x" }} {{ printf "%s %s" "a" }} {{ printf "x" 1 }}',
        {},
        "%!d(string=x) a %!s(MISSING) x%!(EXTRA int=1)",
    ),
    ('{{ printf "%v %g %e" 1e6 0.5 1.0 }}', {}, "1e+06 0.5 1.000000e+00"),
    # json
    ("{{ json .M }}", D, '{"k":"v","Inner":{"Deep":"deep"}}'),
    (
        "{{ json .L }} {{ json .S }} {{ json nil }} {{ json true }} {{ json 1.0 }}",
        D,
        '[1,2,3] "str" null true 1',
    ),
    ('{{ json "a<b>&c" }} {{ json "é\\n" }}', {}, '"a\\u003cb\\u003e\\u0026c" "é\\n"'),
    ("{{ .Dict | json }}", D, '{"b":2,"a":1}'),
    # printing values
    (
        "{{ .N }} {{ .F }} {{ .T }} {{ .L }} {{ .LL }} {{ 3.0 }} {{ 1e6 }} {{ 0.00001 }}",
        D,
        "3 2.5 true [1 2 3] [[a b] [c]] 3 1e+06 1e-05",
    ),
    ("{{ .M }}", D, '{"k":"v","Inner":{"Deep":"deep"}}'),
    ('{{ .Nope }}|{{ index .M "Nope" }}|{{ print nil }}', D, "||"),
    # pipelines and parentheses
    ("{{ .S | len }}", D, "3"),
    ('{{ "x" | printf "%s-%s" "a" }}', {}, "a-x"),
    ('{{ .S | eq "str" }} {{ .S | eq "x" | not }}', D, "true true"),
    ("{{ (len .L) }} {{ add (len .L) 1 }} {{ sub (len .L) 1 }} {{ add 1.5 1 }}", D, "3 4 2 2.5"),
    (
        "{{ $n := len .Messages }}{{ index .Messages (sub $n 1) | json }}",
        D,
        '{"Role":"user","Content":"again"}',
    ),
    # literals
    ('{{ "a\\tb\\u00e9\\x41\\\\\\"" }}', {}, 'a\tbéA\\"'),
    ("{{ `raw \\n {{ }}` }}", {}, "raw \\n {{ }}"),
    ("{{ 'a' }} {{ '\\n' }}", {}, "97 10"),
    (
        "{{ 42 }} {{ -7 }} {{ +3 }} {{ 0x1F }} {{ 017 }} {{ 1_000 }} {{ 1.5e3 }} {{ .5 }}",
        {},
        "42 -7 3 31 15 1000 1500 0.5",
    ),
    ("{{ true }} {{ false }}", {}, "true false"),
    # string helpers
    (
        '{{ contains "hello" "ell" }} {{ hasPrefix .S "st" }} {{ hasSuffix .S "x" }}',
        D,
        "true true false",
    ),
    ('{{ contains .Nope "x" }}', D, "false"),
]


@pytest.mark.parametrize(("template", "data", "expected"), CONSTRUCTS)
def test_constructs(template: str, data: dict[str, Any], expected: str) -> None:
    assert render(template, data) == expected


ERRORS: list[tuple[str, str]] = [
    # parse errors
    ("{{ .Foo } }}", 'template: :1: unexpected "}" in operand'),
    ("{{ .Prompt", "template: :1: unclosed action"),
    ("a\n{{ .X\n", "unclosed action started at :2"),
    ("{{ foo .X }}", 'template: :1: function "foo" not defined'),
    ("{{ end }}", "template: :1: unexpected {{end}}"),
    ("x\n{{ else }}", "template: :2: unexpected {{else}}"),
    ("{{ if .X }}a", "unexpected EOF (missing {{end}} for {{if}} on line 1)"),
    ("{{ range .L }}\n{{ if .X }}\n{{ end }}", "missing {{end}} for {{range}} on line 1"),
    ("{{ with .X }}{{ else }}", "missing {{end}} for {{with}}"),
    ("{{ $x }}", 'template: :1: undefined variable "$x"'),
    ("{{ if true }}{{ $x := 1 }}{{ end }}{{ $x }}", 'undefined variable "$x"'),
    ("{{ $y = 1 }}", 'undefined variable "$y"'),
    ("{{ }}", "missing value for command"),
    ("{{ if }}{{ end }}", "template: :1: missing value for if"),
    ("{{ break }}", "{{break}} outside {{range}}"),
    ("{{ range .L }}{{ end }}{{ continue }}", "{{continue}} outside {{range}}"),
    ('{{ template "x" }}', "{{template}} is not supported"),
    ('{{ define "x" }}{{ end }}', "{{define}} is not supported"),
    ('{{ "abc }}', "unterminated quoted string"),
    ("{{ `abc }}", "unterminated raw quoted string"),
    ("{{/* c", "unclosed comment"),
    ("{{/* c */ x }}", "comment ends before closing delimiter"),
    ("{{ (eq 1 1 }}", "unclosed left paren"),
    ("{{ eq 1 1) }}", "unexpected right paren"),
    ("{{ 1 | 2 }}", "non executable command in pipeline stage 2"),
    ("{{ range .L }}{{ else }}{{ else }}{{ end }}", "expected end; found {{else}}"),
    ("{{ $x, $y := .L }}", "too many declarations in command"),
    ("{{ .A€ }}", "bad character U+20AC"),
    ("{{ 3x }}", "bad number syntax"),
    ('{{ "\\q" }}', "illegal syntax"),
    ("{{ .A : }}", "expected :="),
    ("{{ .A if }}", "unexpected <if> in operand"),
    ("{{ if .A }}x{{ end extra }}", 'unexpected "extra" in end'),
    ("{{ 1.Foo }}", 'bad number syntax: "1.F"'),
    ("{{ true.Foo }}", 'unexpected . after term "true"'),
    # execution errors
    ("{{ index .L 5 }}", "error calling index: index out of range: 5"),
    ("{{ .S.Field }}", "can't evaluate field Field in type string"),
    ("{{ eq .S 1 }}", "error calling eq: incompatible types for comparison"),
    ("{{ eq .L .L }}", "non-comparable type"),
    ("{{ lt .L 1 }}", "invalid type for comparison"),
    ("{{ not 1 2 }}", "wrong number of args for not: want 1 got 2"),
    ("{{ eq }}", "wrong number of args for eq: want at least 1 got 0"),
    ("{{ .S 1 }}", "can't give argument to non-function"),
    ("{{ nil }}", "nil is not a command"),
    ("{{ len 3 }}", "len of type int"),
    (
        "{{ range .S }}{{ end }}",
        'template: :1: executing "" at <.S>: range can\'t iterate over str',
    ),
    ('{{ eq (index .L 0) (len .S) "x" }}', 'at <eq (index .L 0) (len .S) "x">: error calling eq'),
    ("{{ slice .L 2 1 }}", "invalid slice index: 2 > 1"),
    ("{{ add .S 1 }}", "error calling add"),
    ("{{ printf 1 }}", "wrong type for value; expected string; got int"),
    ("x\n\n{{ index .L 9 }}", 'template: :3: executing "" at <index .L 9>'),
]


@pytest.mark.parametrize(("template", "message"), ERRORS)
def test_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(template, {"S": "str", "L": [1, 2, 3]})
    assert message in str(info.value)


def test_error_is_an_invalid_request_with_a_line() -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse("ok\n\n{{ if .X }}")
    assert isinstance(info.value, TemplateError)
    assert info.value.http_status == 400
    assert info.value.line == 3


def test_parse_once_render_many() -> None:
    template = parse(GEMMA3)
    assert isinstance(template, Template)
    first = template.render(DATA)
    assert template.render(DATA) == first
    assert template.render({"Messages": [{"Role": "user", "Content": "x"}]}) == (
        "<start_of_turn>user\nx<end_of_turn>\n<start_of_turn>model\n"
    )
    assert template.render(DATA) == first  # no state leaks between renders
    assert template.render({}) == ""


def test_render_does_not_mutate_data() -> None:
    data = {"L": [3, 1, 2], "M": {"b": 1, "a": 2}}
    render("{{ range $k, $v := .M }}{{ $k }}{{ end }}{{ slice .L 1 }}{{ $x := 1 }}", data)
    assert data == {"L": [3, 1, 2], "M": {"b": 1, "a": 2}}
