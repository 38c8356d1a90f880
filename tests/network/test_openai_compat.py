"""The OpenAI <-> Ollama translation layer: request and response tables, stream sequences, and
the official ``openai`` client parsing what we produce (the shapes must be exactly OpenAI's)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from neurons.network.openai_compat import (
    SSE_DONE,
    ChatStream,
    CompletionStream,
    OpenAIRequestError,
    chat_request,
    chat_response,
    completion_request,
    completion_response,
    embedding_request,
    embedding_response,
    encoding_format,
    error_body,
    forced_tools,
    include_usage,
    model_response,
    models_response,
    new_id,
    owned_by,
    sse,
    sse_error,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake-image").decode()
DEFAULTS = {"temperature": 1.0, "top_p": 1.0}
USER_HI = [{"role": "user", "content": "hi"}]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "messages": USER_HI, **extra}


def ollama_chat(messages: list[dict[str, Any]] = USER_HI, **extra: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "messages": messages, "stream": False, **extra}


# --- requests ---------------------------------------------------------------------------------

WEATHER_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(chat(), ollama_chat(options=DEFAULTS), id="minimal-openai-defaults"),
        pytest.param(
            chat(
                stream=True,
                max_tokens=50,
                seed=42,
                stop="END",
                temperature=0.2,
                top_p=0.5,
                frequency_penalty=0.1,
                presence_penalty=0.3,
                n=1,
                user="bob",
                tool_choice="auto",
            ),
            ollama_chat(
                stream=True,
                options={
                    "num_predict": 50,
                    "seed": 42,
                    "stop": ["END"],
                    "temperature": 0.2,
                    "top_p": 0.5,
                    "frequency_penalty": 0.1,
                    "presence_penalty": 0.3,
                },
            ),
            id="all-options-unsupported-ignored",
        ),
        pytest.param(
            chat(max_tokens=10, max_completion_tokens=20, stop=["a", "b"], temperature=0),
            ollama_chat(
                options={"num_predict": 20, "stop": ["a", "b"], "temperature": 0, "top_p": 1.0}
            ),
            id="max-completion-tokens-wins",
        ),
        pytest.param(
            chat(response_format={"type": "json_object"}),
            ollama_chat(options=DEFAULTS, format="json"),
            id="json-object",
        ),
        pytest.param(
            chat(
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "object"}},
                }
            ),
            ollama_chat(options=DEFAULTS, format={"type": "object"}),
            id="json-schema",
        ),
        pytest.param(
            chat(response_format={"type": "text"}), ollama_chat(options=DEFAULTS), id="text-format"
        ),
        pytest.param(
            chat(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is"},
                            {
                                "type": "image_url",
                                "image_url": {"url": f"data:image/png;base64,{PNG}"},
                            },
                            {"type": "text", "text": "this?"},
                            {"type": "image_url", "image_url": f"data:;base64,{PNG}"},
                        ],
                    }
                ]
            ),
            ollama_chat(
                [{"role": "user", "content": "What is\nthis?", "images": [PNG, PNG]}],
                options=DEFAULTS,
            ),
            id="content-parts-and-images",
        ),
        pytest.param(
            chat(
                messages=[
                    {"role": "developer", "content": "Be brief."},
                    {"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                    {"role": "tool", "name": "explicit", "content": "ok"},
                    {"role": "Assistant", "content": "18C.", "reasoning": "easy"},
                ],
                tools=[WEATHER_TOOL],
            ),
            ollama_chat(
                [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Weather in Paris?"},
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                            }
                        ],
                    },
                    {
                        "role": "tool",
                        "content": "18C",
                        "tool_name": "get_weather",
                        "tool_call_id": "call_1",
                    },
                    {"role": "tool", "content": "ok", "tool_name": "explicit"},
                    {"role": "assistant", "content": "18C.", "thinking": "easy"},
                ],
                options=DEFAULTS,
                tools=[WEATHER_TOOL],
            ),
            id="tools-round-trip",
        ),
        pytest.param(
            chat(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "now", "arguments": ""}}],
                    }
                ]
            ),
            ollama_chat(
                [
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [{"function": {"name": "now", "arguments": {}}}],
                    }
                ],
                options=DEFAULTS,
            ),
            id="empty-arguments-are-an-empty-object",
        ),
        pytest.param(
            chat(reasoning_effort="high"), ollama_chat(options=DEFAULTS, think="high"), id="effort"
        ),
        pytest.param(
            chat(reasoning={"effort": "none"}, reasoning_effort="high"),
            ollama_chat(options=DEFAULTS, think=False),
            id="reasoning-object-wins-none-is-false",
        ),
        pytest.param(chat(tools=[]), ollama_chat(options=DEFAULTS), id="empty-tools-dropped"),
    ],
)
def test_chat_request(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert chat_request(body) == expected


BAD_CHAT = [
    ([], "request body must be a JSON object"),
    ({"messages": USER_HI}, "model is required"),
    (chat(model=""), "model is required"),
    (chat(model=3), "'model' must be a string"),
    ({"model": "m"}, "[] is too short - 'messages'"),
    (chat(messages=[]), "[] is too short - 'messages'"),
    (chat(messages="hi"), "'messages' must be an array"),
    (chat(messages=["hi"]), "messages[0] must be an object"),
    (
        chat(messages=[{"role": "wizard", "content": "x"}]),
        "messages[0].role must be one of system, user, assistant, tool; got 'wizard'",
    ),
    (
        chat(messages=[{"role": "user", "content": 5}]),
        "messages[0].content must be a string or an array of content parts",
    ),
    (
        chat(messages=[{"role": "user"}]),
        "invalid message content type: messages[0].content is missing",
    ),
    (
        chat(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]),
        "invalid message format: messages[0].content[0] is not a text or image_url part",
    ),
    (
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
        "invalid message format: messages[0].content[0].image_url has no url",
    ),
    (
        chat(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}],
                }
            ]
        ),
        "invalid image input: messages[0].content[0] must be a base64 data URL "
        "(data:image/png;base64,...) of a jpeg, png or webp image",
    ),
    (
        chat(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": "data:image/gif;base64,AAAA"}],
                }
            ]
        ),
        "invalid image input: messages[0].content[0] must be a base64 data URL "
        "(data:image/png;base64,...) of a jpeg, png or webp image",
    ),
    (
        chat(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": "data:image/png;base64,!!"}],
                }
            ]
        ),
        "invalid image input: messages[0].content[0] is not valid base64",
    ),
    (
        chat(
            messages=[
                {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{"}}]}
            ]
        ),
        "invalid tool call arguments in messages[0].tool_calls[0]",
    ),
    (
        chat(
            messages=[
                {
                    "role": "assistant",
                    "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}],
                }
            ]
        ),
        "invalid tool call arguments in messages[0].tool_calls[0]",
    ),
    (
        chat(messages=[{"role": "assistant", "tool_calls": [{"type": "function"}]}]),
        "messages[0].tool_calls[0] must have a function with a name",
    ),
    (
        chat(messages=[{"role": "assistant", "tool_calls": {}}]),
        "messages[0].tool_calls must be an array",
    ),
    (chat(temperature="hot"), "'temperature' must be a number"),
    (chat(top_p=True), "'top_p' must be a number"),
    (chat(max_tokens=1.5), "'max_tokens' must be an integer"),
    (chat(seed="1"), "'seed' must be an integer"),
    (chat(stream="yes"), "'stream' must be a boolean"),
    (chat(stop=5), "'stop' must be a string or an array of strings"),
    (chat(stop=["a", 1]), "'stop' must be a string or an array of strings"),
    (chat(response_format="json"), "'response_format' must be an object"),
    (
        chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}}),
        "'response_format.json_schema.schema' must be an object",
    ),
    (
        chat(reasoning_effort="extreme"),
        'invalid reasoning value: \'extreme\' (must be "high", "medium", "low", "max", or "none")',
    ),
    (chat(tools={}), "'tools' must be an array"),
    (chat(stream_options="x"), "'stream_options' must be an object"),
    (chat(stream_options={"include_usage": "yes"}), "'include_usage' must be a boolean"),
]


@pytest.mark.parametrize(("body", "message"), BAD_CHAT)
def test_chat_request_rejects(body: object, message: str) -> None:
    with pytest.raises(OpenAIRequestError) as caught:
        chat_request(body)
    assert (caught.value.status, caught.value.type, caught.value.message) == (
        400,
        "invalid_request_error",
        message,
    )
    assert caught.value.body() == {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (chat(), False),
        (chat(stream_options={"include_usage": True}), True),
        (chat(stream_options={"include_usage": False}), False),
        (chat(stream_options=None), False),
        ("not a body", False),
    ],
)
def test_include_usage(body: object, expected: bool) -> None:
    assert include_usage(body) is expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"model": "m", "prompt": "Once"},
            {"model": "m", "prompt": "Once", "stream": False, "options": DEFAULTS},
        ),
        (
            {"model": "m", "prompt": ["Once"], "stream": True, "echo": False, "best_of": 2},
            {"model": "m", "prompt": "Once", "stream": True, "options": DEFAULTS},
        ),
        (
            {
                "model": "m",
                "prompt": "def f(",
                "suffix": "    return x",
                "max_tokens": 16,
                "stop": "\n\n",
                "seed": 7,
                "temperature": 0.0,
                "top_p": 0.9,
                "frequency_penalty": 0.5,
                "presence_penalty": -0.5,
            },
            {
                "model": "m",
                "prompt": "def f(",
                "suffix": "    return x",
                "stream": False,
                "options": {
                    "num_predict": 16,
                    "stop": ["\n\n"],
                    "seed": 7,
                    "temperature": 0.0,
                    "top_p": 0.9,
                    "frequency_penalty": 0.5,
                    "presence_penalty": -0.5,
                },
            },
        ),
    ],
    ids=["minimal", "one-element-list-prompt", "fim-and-options"],
)
def test_completion_request(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert completion_request(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "x"}, "model is required"),
        (
            {"model": "m", "prompt": [1, 2, 3]},
            "'prompt' must be a string (token arrays and batches are not supported)",
        ),
        (
            {"model": "m", "prompt": ["a", "b"]},
            "'prompt' must be a string (token arrays and batches are not supported)",
        ),
        (
            {"model": "m"},
            "'prompt' must be a string (token arrays and batches are not supported)",
        ),
        ({"model": "m", "prompt": "x", "suffix": 1}, "'suffix' must be a string"),
        ({"model": "m", "prompt": "x", "temperature": "0"}, "'temperature' must be a number"),
    ],
)
def test_completion_request_rejects(body: object, message: str) -> None:
    with pytest.raises(OpenAIRequestError, match=re.escape(message)) as caught:
        completion_request(body)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("body", "expected", "encoding"),
    [
        ({"model": "e", "input": "hello"}, {"model": "e", "input": "hello"}, "float"),
        ({"model": "e", "input": ""}, {"model": "e", "input": [""]}, "float"),
        (
            {"model": "e", "input": ["a", "b"], "dimensions": 64, "encoding_format": "BASE64"},
            {"model": "e", "input": ["a", "b"], "dimensions": 64},
            "base64",
        ),
        (
            {"model": "e", "input": "x", "encoding_format": "float"},
            {"model": "e", "input": "x"},
            "float",
        ),
    ],
)
def test_embedding_request(body: dict[str, Any], expected: dict[str, Any], encoding: str) -> None:
    assert embedding_request(body) == expected
    assert encoding_format(body) == encoding


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input": "x"}, "model is required"),
        ({"model": "e"}, "invalid input"),
        ({"model": "e", "input": []}, "invalid input"),
        (
            {"model": "e", "input": [[1, 2]]},
            "invalid input type: 'input' must be a string or an array of strings",
        ),
        (
            {"model": "e", "input": 5},
            "invalid input type: 'input' must be a string or an array of strings",
        ),
        ({"model": "e", "input": "x", "dimensions": 0}, "'dimensions' must be a positive integer"),
        ({"model": "e", "input": "x", "dimensions": "8"}, "'dimensions' must be an integer"),
        (
            {"model": "e", "input": "x", "encoding_format": "int8"},
            "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64'].",
        ),
    ],
)
def test_embedding_request_rejects(body: object, message: str) -> None:
    with pytest.raises(OpenAIRequestError) as caught:
        embedding_request(body)
    assert (caught.value.status, caught.value.message) == (400, message)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (404, "not_found_error"),
        (500, "api_error"),
        (503, "api_error"),
    ],
)
def test_error_body(status: int, kind: str) -> None:
    assert error_body("boom", status) == {
        "error": {"message": "boom", "type": kind, "param": None, "code": None}
    }
    assert OpenAIRequestError("boom", status).type == kind


# --- responses --------------------------------------------------------------------------------

METRICS = {
    "total_duration": 5_000_000_000,
    "load_duration": 1_000_000,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 100_000_000,
    "eval_count": 3,
    "eval_duration": 200_000_000,
}
USAGE = {"prompt_tokens": 26, "completion_tokens": 3, "total_tokens": 29}
OLLAMA_TOOL_CALL = {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}


def ollama_answer(message: dict[str, Any], done_reason: str | None = "stop") -> dict[str, Any]:
    answer = {
        "model": "llama3.2",
        "created_at": "2025-01-01T00:00:00.123456789Z",
        "message": {"role": "assistant", **message},
        "done": True,
        **METRICS,
    }
    if done_reason is not None:
        answer["done_reason"] = done_reason
    return answer


@pytest.mark.parametrize(
    ("answer", "message", "finish_reason"),
    [
        (ollama_answer({"content": "Hello!"}), {"role": "assistant", "content": "Hello!"}, "stop"),
        (
            ollama_answer({"content": "Hel"}, "length"),
            {"role": "assistant", "content": "Hel"},
            "length",
        ),
        (ollama_answer({"content": ""}, "load"), {"role": "assistant", "content": ""}, "stop"),
        (ollama_answer({"content": "x"}, None), {"role": "assistant", "content": "x"}, "stop"),
        (
            ollama_answer({"content": "4", "thinking": "2+2"}),
            {"role": "assistant", "content": "4", "reasoning": "2+2", "reasoning_content": "2+2"},
            "stop",
        ),
        (
            ollama_answer({"content": "", "tool_calls": [{"id": "call_9", **OLLAMA_TOOL_CALL}]}),
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            "tool_calls",
        ),
    ],
    ids=["stop", "length", "load-is-stop", "no-reason-is-stop", "thinking", "tool-calls"],
)
def test_chat_response(answer: dict[str, Any], message: dict[str, Any], finish_reason: str) -> None:
    out = chat_response(answer, id="chatcmpl-1", created=1700000000)
    assert out == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "llama3.2",
        "system_fingerprint": "fp_ollama",
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": USAGE,
    }
    parsed = ChatCompletion.model_validate(out)
    assert parsed.choices[0].finish_reason == finish_reason
    assert parsed.usage is not None and parsed.usage.total_tokens == 29


def test_chat_response_tool_call_without_id_gets_one() -> None:
    out = chat_response(
        ollama_answer({"content": "", "tool_calls": [OLLAMA_TOOL_CALL]}),
        id="c",
        created=0,
        model="x",
    )
    calls = ChatCompletion.model_validate(out).choices[0].message.tool_calls
    assert calls is not None
    call = calls[0].model_dump()
    assert re.fullmatch(r"call_[0-9a-f]{16}", call["id"])
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert out["model"] == "x"


@pytest.mark.parametrize(("done_reason", "finish_reason"), [("stop", "stop"), ("length", "length")])
def test_completion_response(done_reason: str, finish_reason: str) -> None:
    answer = {"model": "m", "response": "upon a time", "done": True, "done_reason": done_reason}
    out = completion_response({**answer, **METRICS}, id="cmpl-1", created=5)
    assert out == {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 5,
        "model": "m",
        "system_fingerprint": "fp_ollama",
        "choices": [
            {"text": "upon a time", "index": 0, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": USAGE,
    }
    assert Completion.model_validate(out).choices[0].text == "upon a time"


EMBED_ANSWER: dict[str, Any] = {
    "model": "all-minilm",
    "embeddings": [[0.1, -0.25, 3.5e-7], [1.0, 0.0, -1.0]],
    "total_duration": 14143917,
    "load_duration": 1019500,
    "prompt_eval_count": 8,
}


def test_embedding_response_float() -> None:
    out = embedding_response(EMBED_ANSWER, model="all-minilm", encoding_format="float")
    assert out == {
        "object": "list",
        "data": [
            {"object": "embedding", "embedding": [0.1, -0.25, 3.5e-7], "index": 0},
            {"object": "embedding", "embedding": [1.0, 0.0, -1.0], "index": 1},
        ],
        "model": "all-minilm",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    assert CreateEmbeddingResponse.model_validate(out).data[1].embedding == [1.0, 0.0, -1.0]


def test_embedding_response_base64_round_trip() -> None:
    out = embedding_response(EMBED_ANSWER, model="all-minilm", encoding_format="base64")
    for item, vector in zip(out["data"], EMBED_ANSWER["embeddings"], strict=True):
        decoded = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        assert decoded.tolist() == np.asarray(vector, dtype=np.float32).tolist()
    assert embedding_response({"model": "e"}, model="e")["data"] == []


@pytest.mark.parametrize(
    ("name", "owner"),
    [
        ("llama3.2", "library"),
        ("llama3.2:3b-instruct-q4_K_M", "library"),
        ("library/llama3.2:latest", "library"),
        ("jmorganca/mistral:7b", "jmorganca"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "bartowski"),
        ("localhost:5000/team/model:v1", "team"),
        ("model@sha256:abcd", "library"),
    ],
)
def test_owned_by(name: str, owner: str) -> None:
    assert owned_by(name) == owner


TAGS: list[dict[str, Any]] = [
    {
        "name": "llama3.2:latest",
        "model": "llama3.2:latest",
        "modified_at": "2024-05-20T12:34:56.123456789-07:00",
        "size": 2019393189,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B"},
    },
    {"name": "me/tiny:1b", "model": "me/tiny:1b", "modified_at": "2025-01-01T00:00:00Z"},
    {"name": "broken", "modified_at": "yesterday"},
]


def test_models_response() -> None:
    out = models_response(TAGS)
    assert out == {
        "object": "list",
        "data": [
            {
                "id": "llama3.2:latest",
                "object": "model",
                "created": 1716233696,
                "owned_by": "library",
            },
            {"id": "me/tiny:1b", "object": "model", "created": 1735689600, "owned_by": "me"},
            {"id": "broken", "object": "model", "created": 0, "owned_by": "library"},
        ],
    }
    assert [Model.model_validate(m).id for m in out["data"]] == [t["name"] for t in TAGS]
    assert model_response(TAGS[1]) == out["data"][1]
    assert models_response([]) == {"object": "list", "data": []}


# --- streams ----------------------------------------------------------------------------------


def chat_line(content: str = "", done: bool = False, **extra: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": content, **extra.pop("message", {})}
    line = {"model": "llama3.2", "created_at": "2025-01-01T00:00:00Z", "message": message}
    return {**line, "done": done, **extra}


def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-7",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "llama3.2",
        "system_fingerprint": "fp_ollama",
        "choices": choices,
        **extra,
    }


def delta(delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
    return [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]


HELLO_LINES = [
    chat_line("Hel"),
    chat_line("lo"),
    chat_line("", True, done_reason="stop", **METRICS),
]
TOOL_LINES = [
    chat_line(message={"thinking": "Need the weather."}),
    chat_line(message={"tool_calls": [OLLAMA_TOOL_CALL]}),
    chat_line(message={"tool_calls": [{"id": "c2", **OLLAMA_TOOL_CALL}]}),
    chat_line("", True, done_reason="stop", **METRICS),
]


NEED_WEATHER = {"reasoning": "Need the weather.", "reasoning_content": "Need the weather."}


def tool_delta(index: int, call_id: str) -> dict[str, Any]:
    function = {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    return {"index": index, "id": call_id, "type": "function", "function": function}


@pytest.mark.parametrize(
    ("lines", "usage", "expected"),
    [
        pytest.param(
            HELLO_LINES,
            False,
            [
                chunk(delta({"role": "assistant", "content": "Hel"})),
                chunk(delta({"content": "lo"})),
                chunk(delta({}, "stop")),
            ],
            id="hello",
        ),
        pytest.param(
            HELLO_LINES,
            True,
            [
                chunk(delta({"role": "assistant", "content": "Hel"}), usage=None),
                chunk(delta({"content": "lo"}), usage=None),
                chunk(delta({}, "stop"), usage=None),
                chunk([], usage=USAGE),
            ],
            id="hello-with-usage",
        ),
        pytest.param(
            [chat_line("", True, done_reason="length", **METRICS)],
            False,
            [chunk(delta({"role": "assistant", "content": ""})), chunk(delta({}, "length"))],
            id="nothing-generated",
        ),
        pytest.param(
            [chat_line("Hel"), chat_line("lo", True, done_reason="length")],
            False,
            [
                chunk(delta({"role": "assistant", "content": "Hel"})),
                chunk(delta({"content": "lo"})),
                chunk(delta({}, "length")),
            ],
            id="text-on-the-done-line",
        ),
        pytest.param(
            TOOL_LINES,
            False,
            [
                chunk(delta({"role": "assistant", "content": "", **NEED_WEATHER})),
                chunk(delta({"tool_calls": [tool_delta(0, "ANY")]})),
                chunk(delta({"tool_calls": [tool_delta(1, "c2")]})),
                chunk(delta({}, "tool_calls")),
            ],
            id="thinking-then-tool-calls",
        ),
        pytest.param(
            [chat_line("Hel"), {"error": "model runner has unexpectedly stopped"}, chat_line("x")],
            True,
            [
                chunk(delta({"role": "assistant", "content": "Hel"}), usage=None),
                sse_error("model runner has unexpectedly stopped"),
            ],
            id="error-mid-stream-ends-it",
        ),
    ],
)
def test_chat_stream(
    lines: list[dict[str, Any]], usage: bool, expected: list[dict[str, Any]]
) -> None:
    stream = ChatStream("chatcmpl-7", 1700000000, "llama3.2", include_usage=usage)
    out = [c for line in lines for c in stream.feed(line)]
    for got in out:  # generated tool-call ids are random: compare their shape only
        for call in (got.get("choices") or [{}])[0].get("delta", {}).get("tool_calls", []):
            assert call["id"] == "c2" or re.fullmatch(r"call_[0-9a-f]{16}", call["id"])
            call["id"] = "c2" if call["id"] == "c2" else "ANY"
    assert out == expected
    assert stream.done
    assert stream.feed(chat_line("late")) == []
    for got in out:
        if "error" not in got:
            ChatCompletionChunk.model_validate(got)
    if expected[-1].get("error"):
        assert expected[-1]["error"]["type"] == "api_error"


def generate_line(text: str, done: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "created_at": "2025-01-01T00:00:00Z",
        "response": text,
        "done": done,
        **extra,
    }


@pytest.mark.parametrize("usage", [False, True])
def test_completion_stream(usage: bool) -> None:
    stream = CompletionStream("cmpl-3", 9, "m", include_usage=usage)
    lines = [generate_line("Once"), generate_line(""), generate_line(" upon")]
    lines.append(generate_line("", True, done_reason="length", context=[1, 2], **METRICS))
    out = [c for line in lines for c in stream.feed(line)]
    base = {"id": "cmpl-3", "object": "text_completion", "created": 9, "model": "m"}
    base = {**base, "system_fingerprint": "fp_ollama", **({"usage": None} if usage else {})}

    def text(value: str, reason: str | None = None) -> dict[str, Any]:
        choice = {"text": value, "index": 0, "finish_reason": reason, "logprobs": None}
        return {**base, "choices": [choice]}

    expected = [text("Once"), text(" upon"), text("", "length")]
    if usage:
        expected.append({**base, "choices": [], "usage": USAGE})
    assert out == expected
    for final in out[2:]:  # intermediate chunks carry finish_reason null, as OpenAI's do
        Completion.model_validate(final)


def test_sse_framing_and_ids() -> None:
    assert sse({"a": "é"}) == b'data: {"a": "\xc3\xa9"}\n\n'
    assert SSE_DONE == b"data: [DONE]\n\n"
    assert sse_error("boom") == error_body("boom", 500)
    assert re.fullmatch(r"chatcmpl-\d+", new_id("chatcmpl"))
    assert re.fullmatch(r"cmpl-\d+", new_id("cmpl-"))
    assert len({new_id("x") for _ in range(50)}) == 50


# --- tool_choice --------------------------------------------------------------------------------

WEATHER_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
ADD_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
STRICT_WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": WEATHER_PARAMS},
}
ADD = {"type": "function", "function": {"name": "add", "parameters": ADD_PARAMS}}
NOW = {"type": "function", "function": {"name": "now"}}  # no parameters at all
TOOLS: list[Any] = [STRICT_WEATHER, ADD]


def call_schema(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": arguments},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def named(name: str) -> Any:
    return {"type": "function", "function": {"name": name}}


def allowed(mode: str, *names: str) -> dict[str, Any]:
    return {
        "type": "allowed_tools",
        "allowed_tools": {"mode": mode, "tools": [named(n) for n in names]},
    }


BOTH_CALLS = {"anyOf": [call_schema("get_weather", WEATHER_PARAMS), call_schema("add", ADD_PARAMS)]}


@pytest.mark.parametrize(
    ("body", "expected", "forced"),
    [
        pytest.param(
            chat(tools=TOOLS, tool_choice="auto", parallel_tool_calls=False),
            ollama_chat(options=DEFAULTS, tools=TOOLS),
            (),
            id="auto-sends-the-tools",
        ),
        pytest.param(
            chat(tools=TOOLS, tool_choice="none"), ollama_chat(options=DEFAULTS), (), id="none"
        ),
        pytest.param(
            chat(tool_choice="none"), ollama_chat(options=DEFAULTS), (), id="none-without-tools"
        ),
        pytest.param(
            chat(tools=TOOLS, tool_choice="required"),
            ollama_chat(options=DEFAULTS, format=BOTH_CALLS, tools=TOOLS, think=False),
            ("get_weather", "add"),
            id="required-any-of-the-calls",
        ),
        pytest.param(
            chat(tools=TOOLS, tool_choice=named("add")),
            ollama_chat(
                options=DEFAULTS, format=call_schema("add", ADD_PARAMS), tools=TOOLS, think=False
            ),
            ("add",),
            id="named-function",
        ),
        pytest.param(
            chat(tools=TOOLS, tool_choice={"type": "function", "name": "add"}),
            ollama_chat(
                options=DEFAULTS, format=call_schema("add", ADD_PARAMS), tools=TOOLS, think=False
            ),
            ("add",),
            id="named-function-flat",
        ),
        pytest.param(
            chat(tools=[NOW], tool_choice="required", response_format={"type": "json_object"}),
            ollama_chat(
                options=DEFAULTS,
                format=call_schema("now", {"type": "object"}),
                tools=[NOW],
                think=False,
            ),
            ("now",),
            id="forced-call-beats-response-format-no-parameters-any-object",
        ),
        pytest.param(
            chat(tools=[*TOOLS, NOW], tool_choice=allowed("auto", "now", "add")),
            ollama_chat(options=DEFAULTS, tools=[ADD, NOW]),
            (),
            id="allowed-tools-auto-sends-those",
        ),
        pytest.param(
            chat(tools=[*TOOLS, NOW], tool_choice=allowed("required", "add")),
            ollama_chat(
                options=DEFAULTS,
                format=call_schema("add", ADD_PARAMS),
                tools=[*TOOLS, NOW],
                think=False,
            ),
            ("add",),
            id="allowed-tools-required",
        ),
        pytest.param(
            chat(tools=TOOLS, tool_choice="required", reasoning_effort="low"),
            ollama_chat(options=DEFAULTS, format=BOTH_CALLS, tools=TOOLS, think="low"),
            ("get_weather", "add"),
            id="forced-thinks-only-when-asked",
        ),
        pytest.param(
            chat(messages=[{"role": "assistant", "content": "4", "reasoning_content": "2+2"}]),
            ollama_chat(
                [{"role": "assistant", "content": "4", "thinking": "2+2"}], options=DEFAULTS
            ),
            (),
            id="reasoning-content-read-back",
        ),
    ],
)
def test_chat_request_tool_choice(
    body: dict[str, Any], expected: dict[str, Any], forced: tuple[str, ...]
) -> None:
    assert chat_request(body) == expected
    assert forced_tools(body) == forced


NO_TOOLS = (
    "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."
)
BAD_VALUE = "Invalid value: '{}'. Supported values are: 'none', 'auto', and 'required'."
BAD_TYPE = (
    "Invalid type for 'tool_choice': expected one of a string or an object, but got {} instead."
)


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        (chat(tool_choice="required"), NO_TOOLS, "tool_choice"),
        (chat(tools=[], tool_choice="required"), NO_TOOLS, "tool_choice"),
        (chat(tool_choice=named("add")), NO_TOOLS, "tool_choice"),
        (chat(tools=[{"type": "function"}], tool_choice="required"), NO_TOOLS, "tool_choice"),
        (
            chat(tools=TOOLS, tool_choice=named("nope")),
            "Invalid value for 'tool_choice': no function named 'nope' in 'tools'.",
            "tool_choice",
        ),
        (chat(tools=TOOLS, tool_choice="add"), BAD_VALUE.format("add"), "tool_choice"),
        (chat(tools=TOOLS, tool_choice=""), BAD_VALUE.format(""), "tool_choice"),
        (chat(tools=TOOLS, tool_choice=3), BAD_TYPE.format("an integer"), "tool_choice"),
        (chat(tools=TOOLS, tool_choice=True), BAD_TYPE.format("a boolean"), "tool_choice"),
        (chat(tools=TOOLS, tool_choice=["add"]), BAD_TYPE.format("an array"), "tool_choice"),
        (
            chat(tools=TOOLS, tool_choice={"type": "function", "function": {}}),
            "Missing required parameter: 'tool_choice.function.name'.",
            "tool_choice.function.name",
        ),
        (
            chat(tools=TOOLS, tool_choice={"type": "custom", "custom": {"name": "add"}}),
            "Invalid value: 'custom'. Supported values are: 'function' and 'allowed_tools'.",
            "tool_choice.type",
        ),
        (
            chat(tools=TOOLS, tool_choice={"type": "allowed_tools", "allowed_tools": {}}),
            "Missing required parameter: 'tool_choice.allowed_tools.tools'.",
            "tool_choice.allowed_tools.tools",
        ),
        (
            chat(tools=TOOLS, tool_choice=allowed("always", "add")),
            "Invalid value: 'always'. Supported values are: 'auto' and 'required'.",
            "tool_choice.allowed_tools.mode",
        ),
        (
            chat(tools=TOOLS, tool_choice=allowed("auto", "now")),
            "Invalid value for 'tool_choice': no function named 'now' in 'tools'.",
            "tool_choice",
        ),
        (
            chat(tools=TOOLS, tool_choice=allowed("required")),
            NO_TOOLS,
            "tool_choice",
        ),
        (chat(parallel_tool_calls="yes"), "'parallel_tool_calls' must be a boolean", None),
    ],
)
def test_chat_request_rejects_tool_choice(body: object, message: str, param: str | None) -> None:
    with pytest.raises(OpenAIRequestError) as caught:
        chat_request(body)
    assert caught.value.body() == {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": None,
        }
    }


@pytest.mark.parametrize(
    "tool_choice", ["required", named("get_weather"), named("add"), named("now")]
)
def test_forced_formats_compile_with_the_nodes_grammar_converter(tool_choice: object) -> None:
    """The node turns ``format`` into GBNF with llama.cpp's converter: each call schema must
    compile, and pin the function name as a literal."""
    from neurons.neuron.llama import grammar_for_format

    request = chat_request(chat(tools=[*TOOLS, NOW], tool_choice=tool_choice))
    grammar = grammar_for_format(request["format"])
    for name in forced_tools(chat(tools=[*TOOLS, NOW], tool_choice=tool_choice)):
        assert f'"\\"{name}\\""' in grammar
    assert "root ::=" in grammar


ADD_JSON = '{"name": "add", "arguments": {"a": 2, "b": 3}}'
WEATHER_JSON = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
ADD_CALL = {"name": "add", "arguments": '{"a":2,"b":3}'}


@pytest.mark.parametrize(
    ("message", "done_reason", "expected", "finish_reason"),
    [
        pytest.param(
            {"content": ADD_JSON},
            "stop",
            {"content": "", "tool_calls": [ADD_CALL]},
            "tool_calls",
            id="content-is-the-call",
        ),
        pytest.param(
            {"content": f" {ADD_JSON}\n", "thinking": "sum"},
            "stop",
            {
                "content": "",
                "tool_calls": [ADD_CALL],
                "reasoning": "sum",
                "reasoning_content": "sum",
            },
            "tool_calls",
            id="whitespace-and-thinking",
        ),
        pytest.param(
            {"content": WEATHER_JSON.replace("Paris", "New\nYork")},
            "stop",
            {
                "content": "",
                "tool_calls": [
                    {"name": "get_weather", "arguments": '{"city":"New\\nYork","unit":"celsius"}'}
                ],
            },
            "tool_calls",
            id="raw-control-character-the-grammar-allows",
        ),
        pytest.param(
            {
                "content": "",
                "tool_calls": [{"function": {"name": "add", "arguments": {"a": 2, "b": 3}}}],
            },
            "stop",
            {"content": "", "tool_calls": [ADD_CALL]},
            "tool_calls",
            id="the-nodes-own-calls",
        ),
        pytest.param(
            {"content": '{"name": "add", "arguments": {"a": 2'},
            "length",
            {"content": '{"name": "add", "arguments": {"a": 2'},
            "length",
            id="cut-off-is-no-call",
        ),
        pytest.param(
            {"content": '{"name": "sub", "arguments": {}}'},
            "stop",
            {"content": '{"name": "sub", "arguments": {}}'},
            "stop",
            id="not-a-tool-it-may-call",
        ),
        pytest.param(
            {"content": '{"name": "add", "arguments": "{}"}'},
            "stop",
            {"content": '{"name": "add", "arguments": "{}"}'},
            "stop",
            id="arguments-not-an-object",
        ),
    ],
)
def test_chat_response_forced(
    message: dict[str, Any], done_reason: str, expected: dict[str, Any], finish_reason: str
) -> None:
    out = chat_response(
        ollama_answer(message, done_reason), id="c", created=0, forced=("get_weather", "add")
    )
    ChatCompletion.model_validate(out)
    reply = out["choices"][0]["message"]
    for call in reply.get("tool_calls", []):
        assert re.fullmatch(r"call_[0-9a-f]{16}", call.pop("id")) and call.pop("type") == "function"
        call.update(call.pop("function"))
    assert reply == {"role": "assistant", **expected}
    assert out["choices"][0]["finish_reason"] == finish_reason


def test_chat_response_reads_content_as_a_call_only_when_forced() -> None:
    out = chat_response(ollama_answer({"content": ADD_JSON}), id="c", created=0)
    assert out["choices"][0]["message"] == {"role": "assistant", "content": ADD_JSON}
    assert out["choices"][0]["finish_reason"] == "stop"


WEATHER_JSON_PIECES = [
    '{"name": "get_',
    'weather", "arguments": {"city": "Paris", ',
    '"unit": "celsius"}}',
]


def call_head(name: str) -> dict[str, Any]:
    function = {"name": name, "arguments": ""}
    return {"tool_calls": [{"index": 0, "id": "ANY", "type": "function", "function": function}]}


def arguments_piece(text: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}


NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


@pytest.mark.parametrize(
    ("lines", "expected", "arguments"),
    [
        pytest.param(
            [
                chat_line(message={"thinking": "Need the weather."}),
                *(chat_line(piece) for piece in WEATHER_JSON_PIECES),
                chat_line("", True, done_reason="stop", **METRICS),
            ],
            [
                chunk(delta({"role": "assistant", "content": "", **NEED_WEATHER}), usage=None),
                chunk(delta(call_head("get_weather")), usage=None),
                # '{"city":"Paris","unit":"celsius"}' is 33 characters: two pieces
                chunk(delta(arguments_piece('{"city":"Paris","unit":"celsius"')), usage=None),
                chunk(delta(arguments_piece("}")), usage=None),
                chunk(delta({}, "tool_calls"), usage=None),
                chunk([], usage=USAGE),
            ],
            [{"city": "Paris", "unit": "celsius"}],
            id="held-then-streamed-as-a-call",
        ),
        pytest.param(
            [chat_line(ADD_JSON[:20]), chat_line(ADD_JSON[20:], True, done_reason="length")],
            [
                chunk(delta({"role": "assistant", "content": ""}), usage=None),
                chunk(delta(call_head("add")), usage=None),
                chunk(delta(arguments_piece('{"a":2,"b":3}')), usage=None),
                chunk(delta({}, "tool_calls"), usage=None),
                chunk([], usage=NO_USAGE),
            ],
            [{"a": 2, "b": 3}],
            id="a-whole-call-is-a-call-whatever-the-done-reason",
        ),
        pytest.param(
            [chat_line('{"name": "add", '), chat_line("", True, done_reason="length", **METRICS)],
            [
                chunk(delta({"role": "assistant", "content": ""}), usage=None),
                chunk(delta({"content": '{"name": "add", '}), usage=None),
                chunk(delta({}, "length"), usage=None),
                chunk([], usage=USAGE),
            ],
            [],
            id="cut-off-comes-out-as-content",
        ),
        pytest.param(
            [
                chat_line(message={"tool_calls": [OLLAMA_TOOL_CALL]}),
                chat_line("", True, done_reason="stop", **METRICS),
            ],
            [
                chunk(
                    delta(
                        {"role": "assistant", "content": "", "tool_calls": [tool_delta(0, "ANY")]}
                    ),
                    usage=None,
                ),
                chunk(delta({}, "tool_calls"), usage=None),
                chunk([], usage=USAGE),
            ],
            [{"city": "Paris"}],
            id="the-nodes-own-calls-pass-through",
        ),
    ],
)
def test_chat_stream_forced(
    lines: list[dict[str, Any]], expected: list[dict[str, Any]], arguments: list[dict[str, Any]]
) -> None:
    stream = ChatStream("chatcmpl-7", 1700000000, "llama3.2", True, forced=("get_weather", "add"))
    out = [c for line in lines for c in stream.feed(line)]
    state = ChatCompletionStreamState()  # the openai client's own accumulator
    for got in out:
        state.handle_chunk(ChatCompletionChunk.model_validate(got))
        for call in (got.get("choices") or [{}])[0].get("delta", {}).get("tool_calls", []):
            if "id" in call:  # generated: compare the shape only
                assert re.fullmatch(r"call_[0-9a-f]{16}", call["id"])
                call["id"] = "ANY"
    assert out == expected
    calls = state.current_completion_snapshot.choices[0].message.tool_calls or []
    assert [json.loads(call.function.arguments) for call in calls] == arguments


# --- the official client against a fake gateway built from this module -----------------------


def ndjson_answers(path: str, request: dict[str, Any]) -> list[dict[str, Any]]:
    """What an Ollama node would answer, as a list of NDJSON lines."""
    if path == "/api/chat":
        if request["messages"][-1]["content"] == "weather?":
            return [chat_line(message={"tool_calls": [OLLAMA_TOOL_CALL]}), HELLO_LINES[-1]]
        if request["messages"][-1]["content"] == "2+3?":  # a model under the call's grammar
            assert request["format"] == call_schema("add", ADD_PARAMS)
            if request["stream"]:
                return [chat_line(ADD_JSON[:20]), chat_line(ADD_JSON[20:]), HELLO_LINES[-1]]
            return [ollama_answer({"content": ADD_JSON})]
        lines = HELLO_LINES if request["stream"] else [ollama_answer({"content": "Hello"})]
        return lines
    if path == "/api/generate":
        if request["stream"]:
            return [generate_line("Once"), generate_line("", True, done_reason="stop", **METRICS)]
        return [generate_line("Once", True, done_reason="stop", **METRICS)]
    assert path == "/api/embed"
    return [EMBED_ANSWER]


def fake_gateway(request: httpx.Request) -> httpx.Response:
    path = request.url.path.removeprefix("/v1")
    try:
        if request.method == "GET":
            if path == "/models":
                return httpx.Response(200, json=models_response(TAGS))
            found = [m for m in TAGS if m["name"] == path.removeprefix("/models/")]
            if not found:
                raise OpenAIRequestError(f"model '{path[8:]}' not found", 404)
            return httpx.Response(200, json=model_response(found[0]))
        body = json.loads(request.content)
        if path == "/embeddings":
            lines = ndjson_answers("/api/embed", embedding_request(body))
            out = embedding_response(
                lines[0], model=body["model"], encoding_format=encoding_format(body)
            )
            return httpx.Response(200, json=out)
        is_chat = path == "/chat/completions"
        ollama_req = chat_request(body) if is_chat else completion_request(body)
        lines = ndjson_answers("/api/chat" if is_chat else "/api/generate", ollama_req)
        forced = forced_tools(body) if is_chat else ()
        if not ollama_req["stream"]:
            if is_chat:
                out = chat_response(lines[-1], id=new_id("x"), created=1, forced=forced)
            else:
                out = completion_response(lines[-1], id=new_id("x"), created=1)
            return httpx.Response(200, json=out)
        stream: ChatStream | CompletionStream = (
            ChatStream(new_id("x"), 1, body["model"], include_usage(body), forced)
            if is_chat
            else CompletionStream(new_id("x"), 1, body["model"], include_usage(body))
        )
        events = b"".join(sse(c) for line in lines for c in stream.feed(line)) + SSE_DONE
        return httpx.Response(200, content=events, headers={"content-type": "text/event-stream"})
    except OpenAIRequestError as exc:
        return httpx.Response(exc.status, json=exc.body())


@pytest.fixture
def client() -> Iterator[openai.OpenAI]:
    # openai 3.x is typed for httpx2 clients but still takes an httpx one (1.x/2.x want httpx).
    http: Any = httpx.Client(transport=httpx.MockTransport(fake_gateway))
    with openai.OpenAI(base_url="http://gateway/v1", api_key="x", http_client=http) as client:
        yield client


def test_client_chat(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "Hello"
    assert answer.usage is not None and answer.usage.completion_tokens == 3

    chunks = list(
        client.chat.completions.create(
            model="llama3.2",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == [None, None, "stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 29


def test_client_tool_call_stream(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "weather?"}], stream=True
        )
    )
    calls = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
    assert [(c.index, c.function.name if c.function else None) for c in calls] == [
        (0, "get_weather")
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_client_forced_tool_call(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "2+3?"}]
    add = named("add")
    answer = client.chat.completions.create(
        model="llama3.2", messages=messages, tools=TOOLS, tool_choice=add
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    calls: list[Any] = choice.message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("add", {"a": 2, "b": 3})
    ]

    with client.chat.completions.stream(
        model="llama3.2", messages=messages, tools=TOOLS, tool_choice=add
    ) as stream:
        final = stream.get_final_completion().choices[0]
    assert final.finish_reason == "tool_calls"
    streamed: list[Any] = final.message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in streamed] == [("add", '{"a":2,"b":3}')]

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="llama3.2", messages=messages, tool_choice="required")
    assert (
        caught.value.param == "tool_choice" and "only allowed when 'tools'" in caught.value.message
    )


def test_client_completions(client: openai.OpenAI) -> None:
    answer = client.completions.create(model="m", prompt="Tell me")
    assert (answer.choices[0].text, answer.choices[0].finish_reason) == ("Once", "stop")
    chunks = list(client.completions.create(model="m", prompt="Tell me", stream=True))
    assert [c.choices[0].text for c in chunks] == ["Once", ""]


@pytest.mark.parametrize("fmt", ["default-base64", "float"])
def test_client_embeddings(client: openai.OpenAI, fmt: str) -> None:
    if fmt == "float":
        answer = client.embeddings.create(
            model="all-minilm", input=["a", "b"], encoding_format="float"
        )
    else:  # the client asks for base64 unless told otherwise, and decodes it itself
        answer = client.embeddings.create(model="all-minilm", input=["a", "b"])
    expected = [np.asarray(v, dtype=np.float32) for v in EMBED_ANSWER["embeddings"]]
    for item, vector in zip(answer.data, expected, strict=True):
        np.testing.assert_allclose(item.embedding, vector, rtol=1e-6)
    assert answer.usage.prompt_tokens == 8


def test_client_models_and_errors(client: openai.OpenAI) -> None:
    assert [m.owned_by for m in client.models.list()] == ["library", "me", "library"]
    assert client.models.retrieve("me/tiny:1b").created == 1735689600
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    with pytest.raises(openai.BadRequestError, match=re.escape("[] is too short - 'messages'")):
        client.chat.completions.create(model="llama3.2", messages=[])
