"""Request bounds as pure functions: each list and size a request may carry, in Ollama's and
OpenAI's field names, at and past its limit."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from neurons.config import Settings
from neurons.errors import InvalidRequestError
from neurons.network import bounds as bounds_module
from neurons.network.bounds import Bounds, check_ollama, check_openai
from neurons.network.openai_errors import OpenAIRequestError

LIMITS = Bounds(max_list_items=3, max_num_predict=100, max_num_ctx=4096)
MANY = [{}] * 4
FEW = [{}] * 3


def test_doctests() -> None:
    result = doctest.testmod(bounds_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_from_settings() -> None:
    settings = Settings(max_list_items=7, max_num_predict=70, max_num_ctx=700)
    assert Bounds.from_settings(settings) == Bounds(7, 70, 700)


@pytest.mark.parametrize(
    ("body", "field", "excess"),
    [
        ({"messages": MANY}, "messages", "4"),
        ({"messages": [{"role": "user", "images": ["a"] * 4}]}, "messages[0].images", "4"),
        ({"tools": MANY}, "tools", "4"),
        ({"input": ["x"] * 4}, "input", "4"),
        ({"images": ["a"] * 4}, "images", "4"),
        ({"options": {"stop": ["s"] * 4}}, "options.stop", "4"),
        ({"options": {"num_predict": 101}}, "options.num_predict", "101"),
        ({"options": {"num_predict": 1e9}}, "options.num_predict", "1000000000.0"),
        ({"options": {"num_ctx": 4097}}, "options.num_ctx", "4097"),
    ],
)
def test_ollama_refuses_past_a_bound_naming_the_field_and_limit(
    body: dict[str, Any], field: str, excess: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_ollama({"model": "m", **body}, LIMITS)
    limit = {"options.num_predict": 100, "options.num_ctx": 4096}.get(field, 3)
    assert caught.value.http_status == 400
    assert field in caught.value.message and f"the limit is {limit}" in caught.value.message
    assert excess in caught.value.message


@pytest.mark.parametrize(
    "body",
    [
        {"messages": FEW, "tools": FEW, "images": ["a"] * 3},
        {"input": ["x"] * 3},
        {"input": "one string is one item whatever its length"},
        {"options": {"num_predict": 100, "num_ctx": 4096, "stop": ["a", "b", "c"]}},
        {"options": {"num_predict": -1}},  # no limit, as Ollama allows
        {"options": {"num_predict": -2}},  # fill the context
        {"options": {"num_predict": "many", "num_ctx": True, "stop": "x"}},  # the node's call
        {"messages": "not a list", "options": "not an object"},
    ],
)
def test_ollama_within_bounds_or_of_another_type_passes(body: dict[str, Any]) -> None:
    check_ollama({"model": "m", **body}, LIMITS)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MANY}, "messages"),
        ({"messages": [{"role": "user", "content": [{}] * 4}]}, "messages[0].content"),
        ({"tools": MANY}, "tools"),
        ({"stop": ["s"] * 4}, "stop"),
        ({"input": ["x"] * 4}, "input"),
        ({"input": [[1, 2]] * 4}, "input"),
        ({"max_tokens": 101}, "max_tokens"),
        ({"max_completion_tokens": 101}, "max_completion_tokens"),
    ],
)
def test_openai_refuses_past_a_bound_with_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(OpenAIRequestError) as caught:
        check_openai({"model": "m", **body}, LIMITS)
    error = caught.value.body()["error"]
    assert caught.value.status == 400 and error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert param in error["message"] and "the limit is" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": FEW, "tools": FEW, "stop": "one", "max_tokens": 100},
        {"max_completion_tokens": 100, "input": "text"},
        {"max_tokens": "lots"},  # the translation answers the type in OpenAI's words
        ["not", "an", "object", "at", "all"],
    ],
)
def test_openai_within_bounds_or_of_another_type_passes(body: object) -> None:
    check_openai(body if isinstance(body, list) else {"model": "m", **body}, LIMITS)
