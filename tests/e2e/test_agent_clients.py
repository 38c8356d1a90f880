"""Clients that use tools, thinking and fill-in-the-middle, against a real embedded neuron.

SmolLM2-135M rarely calls a tool on its own, so the tool tests use a model created from it
with two example turns (Modelfile MESSAGEs) in SmolLM2's call format: with those, greedy
decoding calls the tool for a new city. Everything else is the default model as shipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_ollama import ChatOllama

from neurons.neuron.process import NeuronProcess

SMOL = "smollm2:135m"
GEMMA = "gemma3:270m"
AGENT = "weather-agent:test"
THINKER = "thinker:test"
FIM = "fim:test"
GREEDY = {"temperature": 0, "num_predict": 40}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city"}},
            "required": ["city"],
        },
    },
}


def _call(city: str) -> str:
    return f'<tool_call>[{{"name": "get_weather", "arguments": {{"city": "{city}"}}}}]</tool_call>'


# A thinking template: the think flags open a <think> block the model continues.
THINKING_TEMPLATE = """{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}<|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ if $.Think }}<think>
{{ end }}{{ end }}
{{- end }}"""

FIM_TEMPLATE = (
    "{{ if .Suffix }}<fim_prefix>{{ .Prompt }}<fim_suffix>{{ .Suffix }}<fim_middle>"
    "{{ else }}{{ .Prompt }}{{ end }}"
)


def _create(url: str, body: dict[str, Any]) -> None:
    reply = httpx.post(f"{url}/api/create", json={**body, "stream": False}, timeout=120)
    assert reply.status_code == 200, reply.text


@pytest.fixture(scope="module")
def models(neuron: NeuronProcess) -> Iterator[None]:
    _create(
        neuron.url,
        {
            "model": AGENT,
            "from": SMOL,
            "messages": [
                {"role": "user", "content": "What is the weather in Berlin?"},
                {"role": "assistant", "content": _call("Berlin")},
                {"role": "user", "content": "How is the weather in Rome?"},
                {"role": "assistant", "content": _call("Rome")},
            ],
            "parameters": {"temperature": 0},
        },
    )
    _create(neuron.url, {"model": THINKER, "from": SMOL, "template": THINKING_TEMPLATE})
    _create(neuron.url, {"model": FIM, "from": SMOL, "template": FIM_TEMPLATE})
    yield
    for name in (AGENT, THINKER, FIM):
        httpx.request("DELETE", f"{neuron.url}/api/delete", json={"model": name})


def test_capabilities_of_defaults_and_created_models(
    ollama_client: ollama.Client, neuron: NeuronProcess, models: None
) -> None:
    assert ollama_client.show(SMOL).capabilities == ["completion", "tools"]
    assert ollama_client.show(GEMMA).capabilities == ["completion"]
    assert ollama_client.show(AGENT).capabilities == ["completion", "tools"]
    assert ollama_client.show(THINKER).capabilities == ["completion", "thinking"]
    assert ollama_client.show(FIM).capabilities == ["completion", "insert"]
    # /api/tags lists them too (the ollama client's ListResponse has no field for them).
    tags = httpx.get(f"{neuron.url}/api/tags").json()["models"]
    listed = {m["name"]: m["capabilities"] for m in tags}
    assert listed[SMOL] == ["completion", "tools"] and listed[THINKER] == ["completion", "thinking"]


def test_ollama_client_tool_call_not_streamed(ollama_client: ollama.Client, models: None) -> None:
    reply = ollama_client.chat(
        AGENT,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        options=GREEDY,
    )
    calls = reply.message.tool_calls or []
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert reply.message.content == ""  # the call's text is not content


def test_ollama_client_tool_call_streamed(ollama_client: ollama.Client, models: None) -> None:
    chunks = list(
        ollama_client.chat(
            AGENT,
            messages=[{"role": "user", "content": "What is the weather in Tokyo?"}],
            tools=[WEATHER_TOOL],
            options=GREEDY,
            stream=True,
        )
    )
    calls = [c for chunk in chunks for c in chunk.message.tool_calls or []]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Tokyo"})
    ]
    assert "".join(chunk.message.content or "" for chunk in chunks) == ""
    assert chunks[-1].done


def test_without_tools_the_call_text_stays_content(
    ollama_client: ollama.Client, models: None
) -> None:
    reply = ollama_client.chat(
        AGENT,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        options=GREEDY,
    )
    assert not reply.message.tool_calls and "<tool_call>" in reply.message.content


def test_langchain_agent_loop(neuron: NeuronProcess, models: None) -> None:
    @tool
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        return f"It is 20 degrees and sunny in {city}."

    llm = ChatOllama(model=AGENT, base_url=neuron.url, temperature=0, num_predict=40)
    agent = llm.bind_tools([get_weather])
    messages: list[Any] = [HumanMessage("What is the weather in Madrid?")]
    first = agent.invoke(messages)
    assert isinstance(first, AIMessage)
    assert [(c["name"], c["args"]) for c in first.tool_calls] == [
        ("get_weather", {"city": "Madrid"})
    ]
    messages.append(first)
    for call in first.tool_calls:
        messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
    final = agent.invoke(messages)
    assert isinstance(final, AIMessage) and not final.tool_calls
    assert isinstance(final.content, str) and final.content.strip()


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/chat", {"model": SMOL, "think": True}, '"smollm2:135m" does not support thinking'),
        ("/api/generate", {"model": SMOL, "think": "high"}, "does not support thinking"),
        ("/api/generate", {"model": SMOL, "prompt": "a", "suffix": "b"}, "does not support insert"),
        ("/api/chat", {"model": GEMMA, "tools": [WEATHER_TOOL]}, "does not support tools"),
        (
            "/api/generate",
            {"model": SMOL, "prompt": "a", "images": ["aGk="]},
            "does not support vision",
        ),
        (
            "/api/chat",
            {"model": SMOL, "messages": [{"role": "user", "content": "a", "images": ["aGk="]}]},
            "does not support vision",
        ),
        ("/api/chat", {"model": SMOL, "think": "very"}, "invalid think value"),
        ("/api/chat", {"model": SMOL, "tools": "x"}, "tools must be a list"),
    ],
)
def test_what_the_model_cannot_do_is_refused_like_ollama(
    neuron: NeuronProcess, path: str, body: dict[str, Any], message: str
) -> None:
    reply = httpx.post(f"{neuron.url}{path}", json={**body, "stream": False}, timeout=60)
    assert reply.status_code == 400
    assert message in reply.json()["error"]


def test_think_false_is_accepted_by_any_model(ollama_client: ollama.Client) -> None:
    reply = ollama_client.chat(
        SMOL, messages=[{"role": "user", "content": "Hi"}], think=False, options={"num_predict": 4}
    )
    assert reply.message.content and not reply.message.thinking


def test_thinking_goes_to_its_own_field_and_can_be_switched_off(
    ollama_client: ollama.Client, models: None
) -> None:
    messages = [{"role": "user", "content": "Is 17 a prime number?"}]
    options = {"temperature": 0, "num_predict": 24}
    # A model that can think thinks by default, as in Ollama; its template opens <think>.
    thought = ollama_client.chat(THINKER, messages=messages, options=options)
    assert thought.message.thinking and thought.message.content == ""
    streamed = list(ollama_client.chat(THINKER, messages=messages, options=options, stream=True))
    assert "".join(c.message.thinking or "" for c in streamed) == thought.message.thinking
    plain = ollama_client.chat(THINKER, messages=messages, options=options, think=False)
    assert plain.message.content and not plain.message.thinking
    generated = ollama_client.generate(THINKER, "Is 17 a prime number?", options=options)
    assert generated.thinking and generated.response == ""


def test_suffix_fills_in_the_middle(neuron: NeuronProcess, models: None) -> None:
    def generate(**extra: Any) -> dict[str, Any]:
        body = {"model": FIM, "stream": False, "options": {"num_predict": 1, "temperature": 0}}
        reply = httpx.post(f"{neuron.url}/api/generate", json={**body, **extra}, timeout=120)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    prompt = "def add(a, b):\n    "
    plain = generate(prompt=prompt)
    fim = generate(prompt=prompt, suffix="\n\nprint(add(1, 2))\n")
    # The suffix went through .Suffix (with the FIM tokens around it): a longer prompt.
    assert len(fim["context"]) > len(plain["context"]) + 5
    # raw: true sends the prompt as it is, template and suffix aside.
    raw = generate(prompt=prompt, suffix="x", raw=True)
    assert raw["prompt_eval_count"] <= len(plain["context"])


def test_embed_truncate_false_refuses_a_long_input(neuron: NeuronProcess) -> None:
    long_text = "word " * 9000  # past smollm2's 8192-token context
    reply = httpx.post(
        f"{neuron.url}/api/embed",
        json={"model": SMOL, "input": long_text, "truncate": False, "options": {"num_ctx": 512}},
        timeout=120,
    )
    assert reply.status_code == 400
    assert reply.json()["error"] == "the input length exceeds the context length"
    ok = httpx.post(
        f"{neuron.url}/api/embed",
        json={"model": SMOL, "input": "word " * 600, "options": {"num_ctx": 512}, "dimensions": 8},
        timeout=120,
    )
    assert ok.status_code == 200 and len(ok.json()["embeddings"][0]) == 8
    assert json.loads(ok.text)["prompt_eval_count"] == 512
