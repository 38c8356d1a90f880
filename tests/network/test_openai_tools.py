"""``tool_choice`` and ``response_format`` end to end: the official ``openai`` client, a real
gateway, and the session's real embedded neuron serving SmolLM2-135M.

A model this small seldom calls a tool when merely asked to; with ``"required"`` or a named
function it must, every time, with arguments its schema accepts. So each forced case runs under
many seeds at a temperature that makes the samples differ, and every answer is checked. A model
created from it whose template also opens a ``<think>`` block checks thinking: it must not swallow
a forced call, and reaches OpenAI clients as ``reasoning_content``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.neuron.defaults import SMOLLM2_TEMPLATE
from neurons.neuron.process import NeuronProcess
from tests.conftest import free_port, wait_for
from tests.network.conftest import FAST

MODEL = "smollm2:135m"
SEEDS = range(20)
# The grammar bounds the name, the unit (an enum) and the integers (16 digits at most), but not
# a string: the city can run on until max_tokens cuts the call off, and a call cut off is no
# call (it comes back as text with finish_reason "length", and fails here, as it should). Over
# 40 seeds a call took 25-45 tokens, but once 115 and once 197 (a city that rambled on before
# its closing quote); 512 leaves room for more than twice that, and costs nothing when unused.
MAX_TOKENS = 512
SAMPLING: dict[str, Any] = {"temperature": 0.8, "max_tokens": MAX_TOKENS}

WEATHER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
ADD: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
PARAMETERS = {"get_weather": WEATHER, "add": ADD}
DESCRIPTIONS = {"get_weather": "Get the current weather for a city", "add": "Add two integers"}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": name, "description": DESCRIPTIONS[name], "parameters": schema},
    }
    for name, schema in PARAMETERS.items()
]
THINKER = "smollm2-thinking-tools:test"
# SmolLM2's tools template, and what becomes of it to think: earlier thinking is shown in
# <think> tags (which is how a template says it can think), and the answer opens a <think> block.
THINKING_EDITS = [
    (
        """{{ else if eq .Role "assistant" }}<|im_start|>assistant
""",
        """{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}""",
    ),
    (
        """{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}""",
        """{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ if $.Think }}<think>
{{ end }}{{ end }}""",
    ),
]
ASK: Any = [{"role": "user", "content": "How warm is it in Lisbon? And what is 17 plus 25?"}]


@pytest.fixture(scope="module")
def client(
    neuron: NeuronProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openai.OpenAI]:
    """The OpenAI client on a gateway in front of the session's neuron."""
    fast: dict[str, Any] = FAST  # short health checks: the node is online in a moment
    config = Settings(home=tmp_path_factory.mktemp("tools") / "control", **fast)
    app = create_control_plane(config, [NodeSpec("n", neuron.url, "embedded")])
    with ServerThread(app, port=free_port()) as gateway:

        def online() -> bool:
            nodes = httpx.get(gateway.url + "/api/ai/network/status", timeout=10).json()["nodes"]
            return all(node["state"] == "online" for node in nodes)

        wait_for(online)
        with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", timeout=120) as c:
            yield c


@pytest.fixture(scope="module")
def thinker(neuron: NeuronProcess) -> Iterator[str]:
    """SmolLM2 with its tools template opening a <think> block: a model that thinks and calls."""
    template = SMOLLM2_TEMPLATE
    for plain, thinking in THINKING_EDITS:
        assert plain in template
        template = template.replace(plain, thinking)
    body = {"model": THINKER, "from": MODEL, "template": template, "stream": False}
    created = httpx.post(neuron.url + "/api/create", json=body, timeout=120)
    assert created.status_code == 200, created.text
    shown = httpx.post(neuron.url + "/api/show", json={"model": THINKER}, timeout=30).json()
    assert {"tools", "thinking"} <= set(shown["capabilities"])
    yield THINKER
    httpx.request("DELETE", neuron.url + "/api/delete", json={"model": THINKER}, timeout=30)


def assert_one_valid_call(choice: Any, names: set[str]) -> None:
    assert choice.finish_reason == "tool_calls", choice
    assert not choice.message.content, choice
    calls = choice.message.tool_calls or []
    assert len(calls) == 1, choice
    assert calls[0].type == "function" and calls[0].id.startswith("call_")
    name, arguments = calls[0].function.name, json.loads(calls[0].function.arguments)
    assert name in names
    jsonschema.validate(arguments, PARAMETERS[name])


# 20 calls take about 11 s on an idle 2-core machine, minutes when other tests share it.
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("tool_choice", "names"),
    [
        pytest.param("required", {"get_weather", "add"}, id="required"),
        pytest.param(
            {"type": "function", "function": {"name": "get_weather"}},
            {"get_weather"},
            id="named",
        ),
    ],
)
def test_a_forced_call_is_always_a_valid_call(
    client: openai.OpenAI, tool_choice: Any, names: set[str]
) -> None:
    for seed in SEEDS:
        answer = client.chat.completions.create(
            model=MODEL, messages=ASK, tools=TOOLS, tool_choice=tool_choice, seed=seed, **SAMPLING
        )
        assert_one_valid_call(answer.choices[0], names)


def test_a_forced_call_streams_as_openai_streams_one(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice="required",
            seed=1,
            stream=True,
            stream_options={"include_usage": True},
            **SAMPLING,
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert not "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    head, pieces = deltas[0], deltas[1:]
    assert head.index == 0 and head.id and head.function and head.function.name in PARAMETERS
    assert head.function.arguments == "" and pieces
    assert all(
        p.index == 0 and p.id is None and p.function and p.function.name is None for p in pieces
    )
    arguments = json.loads("".join(p.function.arguments or "" for p in pieces if p.function))
    jsonschema.validate(arguments, PARAMETERS[head.function.name])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert not chunks[-1].choices and chunks[-1].usage and chunks[-1].usage.completion_tokens > 0


def test_tool_choice_none_answers_in_text(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="none", seed=3, max_tokens=24
    )
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length") and not choice.message.tool_calls
    assert choice.message.content


def test_a_json_schema_response_format_is_always_valid(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}
    for seed in range(5):
        answer = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Name a big city and its population."}],
            response_format=response_format,
            seed=seed,
            **SAMPLING,
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "stop", choice
        jsonschema.validate(json.loads(choice.message.content or ""), schema)


def test_bad_tool_choices_are_refused_like_openai(client: openai.OpenAI) -> None:
    named: Any = {"type": "function", "function": {"name": "subtract"}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice=named)
    assert caught.value.param == "tool_choice" and "'subtract'" in caught.value.message
    with pytest.raises(openai.BadRequestError, match="only allowed when 'tools' are specified"):
        client.chat.completions.create(model=MODEL, messages=ASK, tool_choice="required")


def test_a_thinking_model_still_makes_the_forced_call(client: openai.OpenAI, thinker: str) -> None:
    for seed in range(5):
        answer = client.chat.completions.create(
            model=thinker, messages=ASK, tools=TOOLS, tool_choice="required", seed=seed, **SAMPLING
        )
        assert_one_valid_call(answer.choices[0], {"get_weather", "add"})


def test_thinking_reaches_openai_clients_as_reasoning_content(
    client: openai.OpenAI, thinker: str
) -> None:
    ask: Any = [{"role": "user", "content": "Is 17 a prime number?"}]
    answer = client.chat.completions.create(
        model=thinker, messages=ask, temperature=0, max_tokens=24
    )
    extra = answer.choices[0].message.model_extra or {}
    assert extra["reasoning_content"] and extra["reasoning_content"] == extra["reasoning"]
    chunks = client.chat.completions.create(
        model=thinker, messages=ask, temperature=0, max_tokens=24, stream=True
    )
    streamed = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content", "")
        for c in chunks
        if c.choices
    )
    assert streamed == extra["reasoning_content"]
