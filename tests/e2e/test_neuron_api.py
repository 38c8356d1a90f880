"""The embedded neuron through the official ``ollama`` Python client, over real HTTP."""

from __future__ import annotations

import json
import math

import httpx
import ollama
import pytest
from pydantic import BaseModel

from neurons.neuron.process import NeuronProcess

SMOL = "smollm2:135m"
GEMMA = "gemma3:270m"
GREEDY = {"temperature": 0, "seed": 42, "num_predict": 24}


def test_root_and_version(neuron: NeuronProcess, ollama_client: ollama.Client) -> None:
    assert httpx.get(neuron.url + "/").text == "Ollama is running"
    version = httpx.get(neuron.url + "/api/version").json()["version"]
    assert version.count(".") == 2


def test_list_has_both_offline_defaults(ollama_client: ollama.Client) -> None:
    models = {m.model: m for m in ollama_client.list().models}
    assert SMOL in models and GEMMA in models
    smol = models[SMOL]
    assert smol.size is not None and smol.size > 90_000_000
    assert smol.details is not None
    assert smol.details.family == "llama"
    assert smol.details.quantization_level == "Q4_1"
    assert smol.details.parameter_size == "134.52M"
    assert models[GEMMA].details is not None and models[GEMMA].details.family == "gemma3"


def test_show_reports_gguf_metadata_and_template(ollama_client: ollama.Client) -> None:
    shown = ollama_client.show(SMOL)
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 8192
    assert shown.modelinfo["general.parameter_count"] == 134_515_008
    # The TEMPLATE layer that gives SmolLM2 tools (its GGUF chat template has none).
    assert shown.template is not None and ".Tools" in shown.template
    assert shown.capabilities == ["completion", "tools"]
    gemma = ollama_client.show(GEMMA)
    assert gemma.template is not None and "<start_of_turn>" in gemma.template
    assert gemma.parameters is not None and "<end_of_turn>" in gemma.parameters


def test_generate_non_streamed_has_ollama_metrics(ollama_client: ollama.Client) -> None:
    result = ollama_client.generate(SMOL, "Why is the sky blue?", options=GREEDY)
    assert result.done is True
    assert result.response.strip()
    assert result.done_reason in ("stop", "length")
    for field in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(getattr(result, field), int)
    assert result.prompt_eval_count and result.prompt_eval_count > 5
    assert result.eval_count and 0 < result.eval_count <= 24
    assert result.total_duration and result.eval_duration
    assert result.total_duration >= result.eval_duration
    assert result.context and len(result.context) >= result.prompt_eval_count


def test_generate_stream_matches_non_stream_and_is_deterministic(
    ollama_client: ollama.Client,
) -> None:
    chunks = list(ollama_client.generate(SMOL, "Name three colours.", options=GREEDY, stream=True))
    assert len(chunks) > 2
    assert all(not c.done for c in chunks[:-1])
    final = chunks[-1]
    assert final.done and final.response == "" and final.done_reason in ("stop", "length")
    assert final.eval_count and final.eval_duration
    streamed = "".join(c.response for c in chunks)
    again = ollama_client.generate(SMOL, "Name three colours.", options=GREEDY)
    assert again.response == streamed


def test_num_predict_limits_tokens_and_reports_length(ollama_client: ollama.Client) -> None:
    result = ollama_client.generate(
        SMOL, "Write a long essay about rivers.", options={"num_predict": 5, "temperature": 0}
    )
    assert result.eval_count == 5
    assert result.done_reason == "length"


def test_stop_sequence_cuts_output(ollama_client: ollama.Client) -> None:
    free = ollama_client.generate(SMOL, "Count from 1 to 10: 1, 2,", options=GREEDY, raw=True)
    assert " 4" in free.response
    stopped = ollama_client.generate(
        SMOL, "Count from 1 to 10: 1, 2,", options={**GREEDY, "stop": [" 4"]}, raw=True
    )
    assert stopped.done_reason == "stop"
    assert " 4" not in stopped.response
    assert free.response.startswith(stopped.response)


def test_seeded_sampling_is_reproducible(ollama_client: ollama.Client) -> None:
    opts = {"temperature": 1.2, "seed": 7, "num_predict": 16}
    first = ollama_client.generate(SMOL, "Tell me a story.", options=opts).response
    second = ollama_client.generate(SMOL, "Tell me a story.", options=opts).response
    assert first == second


def test_chat_streamed_and_not(ollama_client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    reply = ollama_client.chat(SMOL, messages=messages, options=GREEDY)
    assert reply.message.role == "assistant"
    assert "Paris" in reply.message.content
    assert reply.done_reason in ("stop", "length") and reply.eval_count
    parts = list(ollama_client.chat(SMOL, messages=messages, options=GREEDY, stream=True))
    assert parts[-1].done and parts[-1].message.content == ""
    assert "".join(p.message.content for p in parts) == reply.message.content


def test_chat_uses_modelfile_go_template(ollama_client: ollama.Client) -> None:
    reply = ollama_client.chat(
        GEMMA,
        messages=[{"role": "user", "content": "Say hello."}],
        options={"temperature": 0, "num_predict": 8},
    )
    assert reply.done and reply.eval_count
    assert "<start_of_turn>" not in reply.message.content


def test_embed_single_and_batch_are_l2_normalised(ollama_client: ollama.Client) -> None:
    single = ollama_client.embed(SMOL, input="The cat sat on the mat.")
    assert len(single.embeddings) == 1
    dim = len(single.embeddings[0])
    assert dim == 576
    batch = ollama_client.embed(
        SMOL, input=["The cat sat on the mat.", "A cat is sitting on a mat.", "Stock prices fell."]
    )
    assert len(batch.embeddings) == 3
    for vector in batch.embeddings:
        assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-5)
    assert batch.prompt_eval_count and batch.prompt_eval_count > 10
    # Same text, same vector (batching must not change results).
    assert batch.embeddings[0] == pytest.approx(single.embeddings[0], abs=1e-4)
    legacy = ollama_client.embeddings(SMOL, prompt="The cat sat on the mat.")
    assert len(legacy.embedding) == dim


def test_embed_dimensions_truncates_and_renormalises(ollama_client: ollama.Client) -> None:
    result = ollama_client.embed(SMOL, input="hello", dimensions=64)
    assert len(result.embeddings[0]) == 64
    assert math.isclose(sum(v * v for v in result.embeddings[0]), 1.0, rel_tol=1e-5)


class Country(BaseModel):
    name: str
    capital: str


def test_structured_output_with_json_schema(ollama_client: ollama.Client) -> None:
    result = ollama_client.chat(
        SMOL,
        messages=[{"role": "user", "content": "Tell me about France. Answer in JSON."}],
        format=Country.model_json_schema(),
        options={"temperature": 0, "num_predict": 64},
    )
    country = Country.model_validate_json(result.message.content)
    assert country.name


def test_format_json_gives_valid_json(ollama_client: ollama.Client) -> None:
    result = ollama_client.generate(
        SMOL,
        "List two fruits as JSON.",
        format="json",
        options={"temperature": 0, "num_predict": 48},
    )
    if result.done_reason == "stop":
        json.loads(result.response)
    else:  # truncated by num_predict: must still be a JSON prefix
        assert result.response.lstrip().startswith(("{", "["))


def test_logprobs(neuron: NeuronProcess) -> None:
    body = {
        "model": SMOL,
        "prompt": "The capital of France is",
        "raw": True,
        "stream": False,
        "logprobs": True,
        "top_logprobs": 3,
        "options": {"temperature": 0, "num_predict": 3},
    }
    data = httpx.post(neuron.url + "/api/generate", json=body, timeout=60).json()
    logprobs = data["logprobs"]
    assert len(logprobs) == 3
    first = logprobs[0]
    assert first["logprob"] <= 0
    assert len(first["top_logprobs"]) == 3
    # Greedy decoding picks the most likely token.
    assert first["token"] == first["top_logprobs"][0]["token"]
    assert bytes(first["bytes"]).decode() == first["token"]
    assert "".join(lp["token"] for lp in logprobs) == data["response"]


def test_load_ps_and_unload_with_keep_alive_zero(ollama_client: ollama.Client) -> None:
    loaded = ollama_client.generate(GEMMA, "", keep_alive="10m")
    assert loaded.done_reason == "load"
    running = {m.model: m for m in ollama_client.ps().models}
    assert GEMMA in running
    assert running[GEMMA].context_length == 4096
    assert running[GEMMA].size and running[GEMMA].size > 250_000_000
    unloaded = ollama_client.generate(GEMMA, "", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert GEMMA not in {m.model for m in ollama_client.ps().models}


def test_chat_empty_messages_loads(ollama_client: ollama.Client) -> None:
    reply = ollama_client.chat(SMOL, messages=[])
    assert reply.done_reason == "load"
    assert reply.message.content == ""


def test_idle_model_unloads_after_keep_alive(ollama_client: ollama.Client) -> None:
    import time

    ollama_client.generate(SMOL, "Hi", options={"num_predict": 1}, keep_alive="1s")
    assert SMOL in {m.model for m in ollama_client.ps().models}
    deadline = time.monotonic() + 20
    while SMOL in {m.model for m in ollama_client.ps().models}:
        assert time.monotonic() < deadline, "model was not unloaded after keep_alive"
        time.sleep(0.2)


def test_long_prompt_is_truncated_to_num_ctx(ollama_client: ollama.Client) -> None:
    prompt = "word " * 400
    result = ollama_client.generate(
        SMOL, prompt, raw=True, options={"num_ctx": 128, "num_predict": 4, "num_keep": 4}
    )
    assert result.done
    assert result.prompt_eval_count is not None and result.prompt_eval_count <= 127
    assert result.eval_count is not None and result.eval_count <= 4
    running = {m.model: m for m in ollama_client.ps().models}
    assert running[SMOL].context_length == 128  # a num_ctx change reloads the runner
