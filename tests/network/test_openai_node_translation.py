"""The translation between Ollama's API and an OpenAI-compatible node's, field by field
(the real server is in test_openai_nodes.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from neurons.errors import InvalidRequestError
from neurons.network.openai_inventory import tags_of
from neurons.network.openai_nodes import translatable
from neurons.network.openai_translate import (
    SseToNdjson,
    chat_answer,
    chat_body,
    embed_body,
    embedding_answer,
    error_answer,
    generate_answer,
    generate_body,
)
from neurons.network.operations import Candidate, Operation, choose
from neurons.network.routing import NodeView

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_mapped_options_format_and_stream() -> None:
    body = chat_body(
        {
            **CHAT,
            "stream": False,
            "format": {"type": "object"},
            "options": {"temperature": 0.2, "top_p": 0.9, "seed": 7, "stop": ["\n"],
                        "num_predict": -1, "presence_penalty": 0.1},
        }
    )  # fmt: skip
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["\n"],
        "presence_penalty": 0.1,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": {"type": "object"}},
        },
    }
    assert chat_body(CHAT)["stream_options"] == {"include_usage": True}  # Ollama streams


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({**CHAT, "options": {"num_ctx": 4096}}, "num_ctx"),
        ({**CHAT, "options": {"mirostat": 2}}, "mirostat"),
        ({**CHAT, "options": {"top_k": 40}}, "top_k"),
        ({**CHAT, "keep_alive": "5m"}, "keep_alive"),
        ({**CHAT, "think": True}, "think"),
        ({**CHAT, "novel_field": 1}, "novel_field"),
        ({"model": "m", "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]},
         "images"),
    ],
)  # fmt: skip
def test_chat_refuses_what_it_cannot_say(body: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidRequestError, match=named):
        chat_body(body)


def test_unset_fields_are_not_refusals() -> None:
    body = chat_body({**CHAT, "keep_alive": None, "think": False, "tools": [], "format": ""})
    assert "tools" not in body and "response_format" not in body


@pytest.mark.parametrize("field", ["system", "template", "context", "images"])
def test_generate_refuses_template_fields(field: str) -> None:
    value: object = [1, 2] if field in ("context", "images") else "x"
    with pytest.raises(InvalidRequestError, match=field):
        generate_body({"model": "m", "prompt": "p", field: value})


def test_generate_and_embed_bodies() -> None:
    body = generate_body({"model": "m", "prompt": "p", "suffix": "s", "raw": True,
                          "options": {"num_predict": 3}, "stream": False})  # fmt: skip
    assert body == {"model": "m", "prompt": "p", "stream": False, "max_tokens": 3, "suffix": "s"}
    embed = embed_body({"model": "m", "input": "a", "dimensions": 4})
    assert embed == {"model": "m", "input": ["a"]}  # dimensions: cut here, from the answer
    assert embed_body({"model": "m", "prompt": "a"})["input"] == ["a"]  # /api/embeddings
    assert embed_body({"model": "m", "input": []})["input"] == [""]  # loads, as Ollama's
    loaded = embedding_answer({"data": [{"embedding": [1.0]}]}, {"input": []}, "/api/embed", 1)
    assert loaded["embeddings"] == []
    with pytest.raises(InvalidRequestError, match="truncate"):
        embed_body({"model": "m", "input": "a", "truncate": True})
    with pytest.raises(InvalidRequestError, match="options"):
        embed_body({"model": "m", "input": "a", "options": {"num_ctx": 1}})


def test_tool_calls_both_ways() -> None:
    history = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "12C", "tool_name": "get_weather"},
    ]  # fmt: skip
    sent = chat_body({"model": "m", "messages": history})["messages"]
    call = sent[1]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    assert sent[2]["tool_call_id"] == call["id"]
    answer = {
        "choices": [
            {
                "message": {"content": None, "tool_calls": [
                    {"id": "x", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "Bergen"}'}}]},
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4},
    }  # fmt: skip
    got = chat_answer(answer, "m", 1000)
    assert got["message"]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Bergen"}}}
    ]
    assert got["done_reason"] == "stop" and got["prompt_eval_count"] == 9
    assert got["eval_count"] == 4 and got["total_duration"] == 1000


def test_answers_and_errors() -> None:
    generated = generate_answer({"choices": [{"text": "abc", "finish_reason": "length"}]}, "m", 5)
    assert generated["response"] == "abc" and generated["done_reason"] == "length"
    assert "eval_count" not in generated  # no usage: not made up
    embedded = embedding_answer(
        {"data": [{"index": 1, "embedding": [0.0, 2.0]},
                  {"index": 0, "embedding": [[3.0, 0.0], [3.0, 8.0]]}],
         "usage": {"prompt_tokens": 3}},
        {"model": "m", "input": ["a", "b"]}, "/api/embed", 1,
    )  # fmt: skip
    assert embedded["embeddings"] == [[0.6, 0.8], [0.0, 1.0]]
    assert embedded["prompt_eval_count"] == 3
    legacy = embedding_answer(
        {"data": [{"embedding": [3.0, 4.0]}]}, {"prompt": "a"}, "/api/embeddings", 1
    )
    assert legacy == {"embedding": [3.0, 4.0]}
    assert json.loads(error_answer(b'{"error": {"message": "bad"}}', 400)) == {"error": "bad"}
    assert json.loads(error_answer(b'{"detail": "Invalid API key"}', 401)) == {
        "error": "Invalid API key"
    }
    assert json.loads(error_answer(b"", 502)) == {"error": "HTTP 502"}


def test_a_stream_becomes_ndjson_with_a_done_line() -> None:
    stream = SseToNdjson("m", chat=True)
    lines = []
    for event in (
        {"choices": [{"delta": {"role": "assistant"}}]},
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
    ):
        lines += stream.feed(event)
    lines += stream.done()
    assert [item["message"]["content"] for item in lines] == ["Hel", "lo", ""]
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert (final["prompt_eval_count"], final["eval_count"]) == (5, 2)
    assert final["total_duration"] >= final["eval_duration"] >= 0
    counted = SseToNdjson("m", chat=False)
    counted.feed({"choices": [{"text": "a"}]})
    counted.feed({"choices": [{"text": "b", "finish_reason": "length"}]})
    assert counted.done()[-1]["eval_count"] == 2  # no usage sent: chunks counted


def test_inventory_and_skips() -> None:
    assert tags_of({"data": [{"id": "org/Model-7B"}, {"object": "model"}]}) == {
        "models": [{"name": "org/Model-7B", "model": "org/Model-7B"}]
    }
    ollama_node = Candidate("a", "http://a", "ollama", "online")
    openai_node = Candidate("b", "http://b", "openai", "online", frozenset({"m:latest"}))
    selection = choose([ollama_node, openai_node], Operation.PULL)
    assert selection.targets == [ollama_node]
    assert [(r.node, r.skipped) for r in selection.skipped] == [
        ("b", "skipped: an OpenAI-compatible node has no Ollama API for /api/pull")
    ]
    with pytest.raises(InvalidRequestError, match="OpenAI-compatible"):
        choose([openai_node], Operation.COPY, "m")


def test_a_request_such_a_node_would_refuse_goes_to_one_that_can_take_it() -> None:
    ollama_node = NodeView("1", "a", "http://a", "ollama")
    openai_node = NodeView("2", "b", "http://b", "openai")
    both = [openai_node, ollama_node]
    plain = json.dumps(CHAT).encode()
    with_num_ctx = json.dumps({**CHAT, "options": {"num_ctx": 8192}}).encode()
    assert translatable(both, "/api/chat", plain) == both
    assert translatable(both, "/api/chat", with_num_ctx) == [ollama_node]
    assert translatable(both, "/api/show", b'{"model": "m"}') == [ollama_node]
    assert translatable([openai_node], "/api/chat", with_num_ctx) == [openai_node]  # its 400
