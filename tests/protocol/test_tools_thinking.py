"""The tool-call and thinking parsers, the template heuristics behind them, and capabilities."""

from __future__ import annotations

import pytest

from neurons.ollama import gotemplate
from neurons.ollama.capabilities import (
    CapabilityError,
    check_capabilities,
    model_capabilities,
    required_capabilities,
)
from neurons.ollama.replies import ReplyParser
from neurons.ollama.thinking import ThinkingParser
from neurons.ollama.tools import ToolParser

QWEN_LIKE = """{{- range $i, $_ := .Messages }}
{{- if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}{{ else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>{{ end }}
{{- end }}{{ end }}"""


def _feed(parser: ToolParser, pieces: list[str]) -> tuple[list[str], str]:
    names, content = [], ""
    for piece in pieces:
        calls, text = parser.add(piece)
        names += [c["function"]["name"] + str(c["function"]["arguments"]) for c in calls]
        content += text
    return names, content + parser.leftover()


def test_tool_call_tag_comes_from_the_template() -> None:
    assert gotemplate.parse(QWEN_LIKE).tool_call_tag() == "<tool_call>"
    assert gotemplate.parse("{{ .Prompt }}").tool_call_tag() == "{"
    bracket = "{{ if .ToolCalls }}[TOOL_CALLS] [{{ range .ToolCalls }}{{ end }}]{{ end }}"
    assert gotemplate.parse(bracket).tool_call_tag() == "[TOOL_CALLS] ["


@pytest.mark.parametrize(
    ("pieces", "names", "content"),
    [
        # split anywhere, even inside the tag and the name
        (
            ["Sure. <tool", '_call>{"name": "get_', 'weather", "arguments": {"city": "Oslo"}}'],
            ["get_weather{'city': 'Oslo'}"],
            "Sure. ",
        ),
        # two calls in SmolLM2's list form
        (
            [
                '<tool_call>[{"name": "add", "arguments": {"a": 1}}, ',
                '{"name": "add", "arguments": {"a": 2}}]',
            ],
            ["add{'a': 1}", "add{'a': 2}"],
            "",
        ),
        # "parameters" and arguments as JSON text
        (['<tool_call>{"name": "add", "parameters": "{\\"a\\": 3}"}'], ["add{'a': 3}"], ""),
        # no tag: all content
        (["It is sunny ", "today."], [], "It is sunny today."),
        # braces inside strings do not confuse the object scan
        (['<tool_call>{"name": "add", "arguments": {"s": "}{"}}'], ["add{'s': '}{'}"], ""),
    ],
)
def test_tool_parser(pieces: list[str], names: list[str], content: str) -> None:
    parser = ToolParser("<tool_call>", ["add", "get_weather", "get"])
    assert _feed(parser, pieces) == (names, content)


def test_brace_tag_only_parses_output_that_starts_with_json() -> None:
    parser = ToolParser("{", ["add"])
    assert _feed(parser, ['{"name": "add", "arguments": {"a": 1}}']) == (["add{'a': 1}"], "")
    text = 'The JSON is {"name": "add"}'
    assert _feed(ToolParser("{", ["add"]), [text]) == ([], text)
    # JSON that names no tool is given back at the end
    assert _feed(ToolParser("{", ["add"]), ['{"x": 1}']) == ([], '{"x": 1}')


@pytest.mark.parametrize(
    ("pieces", "thinking", "content"),
    [
        (["<think>a", "b</think>", "\n\nanswer"], "ab", "answer"),
        (["  <thi", "nk>\n x </thi", "nk>y"], "x ", "y"),
        (["no thinking here"], "", "no thinking here"),
        (["<think>unfinished"], "unfinished", ""),
    ],
)
def test_thinking_parser(pieces: list[str], thinking: str, content: str) -> None:
    parser = ThinkingParser("<think>", "</think>")
    got = [parser.add(p) for p in pieces]
    assert ("".join(t for t, _ in got), "".join(c for _, c in got)) == (thinking, content)


def test_thinking_tags_are_inferred_inside_the_messages_range() -> None:
    inside = (
        "{{ range .Messages }}{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}"
        "{{ .Content }}{{ end }}"
    )
    assert gotemplate.parse(inside).thinking_tags() == ("<think>", "</think>")
    outside = "{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}"
    assert gotemplate.parse(outside).thinking_tags() == ("", "")


def test_reply_parser_starts_inside_a_block_the_prompt_opened() -> None:
    reply = ReplyParser(thinking=("<think>", "</think>"), prompt="assistant\n<think>\n")
    first = reply.add("pondering")
    assert (first.thinking, first.content) == ("pondering", "")
    second = reply.add("</think>Done")
    assert (second.thinking, second.content) == ("", "Done")


def test_capabilities() -> None:
    assert model_capabilities(go_template=QWEN_LIKE.replace("ToolCalls", "Tools")) == [
        "completion",
        "tools",
    ]
    assert model_capabilities(chat_template="{% if tools %}{% endif %}<think></think>") == [
        "completion",
        "tools",
        "thinking",
    ]
    assert model_capabilities(go_template="{{ .Prompt") == ["completion"]  # broken: GGUF only
    assert required_capabilities("/api/generate", {"suffix": "x", "think": False}) == [
        "completion",
        "insert",
    ]
    assert required_capabilities("/api/embed", {}) == ["embedding"]


@pytest.mark.parametrize(
    ("needed", "action", "message"),
    [
        (["completion", "thinking"], "chat", '"m:1" does not support thinking'),
        (["completion", "tools"], "chat", "m:1 does not support tools"),
        (["embedding"], "generate", "m:1 does not support embedding"),
    ],
)
def test_capability_errors(needed: list[str], action: str, message: str) -> None:
    with pytest.raises(CapabilityError, match=message) as info:
        check_capabilities("m:1", ["completion"], needed, action)
    assert info.value.http_status == 400
