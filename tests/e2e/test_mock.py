"""Mock mode: a real ``neurons serve-node --mock`` process, served to the official ``ollama``
Python client over real HTTP. The token source is simulated (that is the feature); the
routes, the JSON and the decode loop are the real neuron's."""

from __future__ import annotations

import doctest
import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from neurons.config import Settings
from neurons.neuron import mock_text
from neurons.neuron.mock import BANNER
from neurons.neuron.process import NeuronProcess
from tests.conftest import start_neuron

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def mock_neuron(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NeuronProcess]:
    home = tmp_path_factory.mktemp("mock") / "home"
    process = start_neuron(home, "--mock", "--mock-model", "demo:7b")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def client(mock_neuron: NeuronProcess) -> ollama.Client:
    return ollama.Client(host=mock_neuron.url)


def test_banner_and_no_llama_cpp(mock_neuron: NeuronProcess) -> None:
    assert mock_neuron.log_path is not None and mock_neuron.process is not None
    assert BANNER in mock_neuron.log_path.read_text()
    assert httpx.get(mock_neuron.url + "/api/neuron/status").json()["mock"] is True
    # Generate once, then check that llama.cpp's library was never mapped into the process.
    httpx.post(
        mock_neuron.url + "/api/generate",
        json={"model": "mock", "prompt": "hi", "stream": False},
        timeout=30,
    ).raise_for_status()
    maps = Path(f"/proc/{mock_neuron.process.pid}/maps")
    if maps.exists():
        assert "libllama" not in maps.read_text()


def test_list_and_show(client: ollama.Client, mock_neuron: NeuronProcess) -> None:
    models = {m.model: m for m in client.list().models}
    default = Settings().default_model  # what `neurons up --mock` will look for
    assert {"mock:latest", "mock-embed:latest", "demo:7b", default} <= set(models)
    assert models["mock:latest"].details is not None
    assert models["mock:latest"].details.family == "mock"
    # The mock models live in their own store, never among the real ones.
    assert (mock_neuron.home / "mock-models" / "manifests").is_dir()
    assert not (mock_neuron.home / "models").exists()
    shown = client.show("mock")
    assert shown.capabilities == ["completion", "tools", "insert"]
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "mock"
    assert client.show("mock-embed").capabilities == ["embedding"]


def test_generate_is_deterministic_and_honours_num_predict(client: ollama.Client) -> None:
    first = client.generate("mock", "Why is the sky blue?", options={"seed": 7})
    again = client.generate("mock", "Why is the sky blue?", options={"seed": 7})
    other = client.generate("mock", "Why is the sky blue?", options={"seed": 8})
    assert first.response and first.response == again.response
    assert other.response != first.response
    assert first.done_reason == "stop" and first.eval_count and first.prompt_eval_count
    for field in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(getattr(first, field), int)
    short = client.generate("mock", "Why is the sky blue?", options={"seed": 7, "num_predict": 3})
    assert short.done_reason == "length" and short.eval_count == 3
    assert first.response.startswith(short.response)
    # A stop sequence cuts the same text where it first occurs (the real decode loop's rule).
    word = first.response.split()[2]
    stopped = client.generate("mock", "Why is the sky blue?", options={"seed": 7, "stop": [word]})
    assert stopped.done_reason == "stop"
    assert stopped.response == first.response[: first.response.index(word)]


def test_chat_streams_ndjson(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "Tell me something."}]
    chunks = list(client.chat("mock", messages=messages, stream=True, options={"seed": 1}))
    assert len(chunks) > 2
    assert all(not c.done for c in chunks[:-1]) and chunks[-1].done
    assert chunks[-1].done_reason == "stop" and chunks[-1].eval_count
    streamed = "".join(c.message.content or "" for c in chunks)
    whole = client.chat("mock", messages=messages, options={"seed": 1})
    assert streamed and whole.message.content == streamed


def test_chat_with_tools_calls_one(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    reply = client.chat("mock", messages=messages, tools=TOOLS)
    calls = reply.message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    assert isinstance(calls[0].function.arguments["city"], str)
    # After the tool's answer the model replies in words.
    messages += [
        {"role": "assistant", "content": "", "tool_calls": [c.model_dump() for c in calls]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    final = client.chat("mock", messages=messages, tools=TOOLS)
    assert final.message.content and not final.message.tool_calls


def test_format_gives_json_of_the_schema(client: ollama.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    answer = json.loads(client.generate("mock", "Who?", format=schema).response)
    assert isinstance(answer["name"], str) and isinstance(answer["age"], int)


def test_embed_and_embeddings(client: ollama.Client) -> None:
    result = client.embed("mock-embed", input=["the cat sat", "the cat sat", "stock prices"])
    a, b, c = result.embeddings
    assert len(a) == 384 and a == b
    assert math.isclose(math.sqrt(sum(v * v for v in a)), 1.0, rel_tol=1e-6)
    assert a != c
    legacy = client.embeddings("mock-embed", prompt="the cat sat").embedding
    assert len(legacy) == 384


def test_pull_is_refused_clearly(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.pull("llama3.2")
    assert caught.value.status_code == 400 and "mock mode" in caught.value.error


def test_mock_model_needs_mock(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="exited"):
        start_neuron(tmp_path / "home", "--mock-model", "x:1")


def test_mock_text_docstring_examples() -> None:
    result = doctest.testmod(mock_text, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
