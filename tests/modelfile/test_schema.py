"""The PARAMETER schema: names, defaults, Go's strconv rules for text, Options.FromMap's
rules for JSON values, and the neuron's option tables derived from it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurons.errors import ModelfileError
from neurons.modelfile import (
    DEPRECATED_PARAMETERS,
    PARAMETERS,
    ParameterSpec,
    coerce_parameter,
    format_parameter_value,
)
from neurons.neuron.options import DEFAULTS, OPTION_TYPES


def test_every_current_ollama_parameter() -> None:
    assert list(PARAMETERS) == [
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "use_mmap",
        "num_thread",
        "draft_num_predict",
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "top_p",
        "min_p",
        "typical_p",
        "repeat_last_n",
        "temperature",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "stop",
    ]
    assert all(isinstance(s, ParameterSpec) and s.name == n for n, s in PARAMETERS.items())
    assert all(spec.description for spec in PARAMETERS.values())


def test_current_defaults() -> None:
    defaults = {name: spec.default for name, spec in PARAMETERS.items()}
    assert defaults == {
        "num_ctx": 4096,
        "num_batch": 512,
        "num_gpu": -1,
        "main_gpu": None,
        "use_mmap": None,
        "num_thread": 0,
        "draft_num_predict": 4,
        "num_keep": 4,
        "seed": -1,
        "num_predict": -1,
        "top_k": 40,
        "top_p": 0.9,
        "min_p": 0.0,
        "typical_p": 1.0,
        "repeat_last_n": 64,
        "temperature": 0.8,
        "repeat_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "stop": (),
    }


def test_runner_options_are_the_load_time_ones() -> None:
    runner = {name for name, spec in PARAMETERS.items() if spec.runner}
    assert runner == {
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "use_mmap",
        "num_thread",
        "draft_num_predict",
    }


def test_deprecated_list() -> None:
    assert DEPRECATED_PARAMETERS == {
        "penalize_newline",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mlock",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
    }
    assert not DEPRECATED_PARAMETERS & PARAMETERS.keys()


def test_neuron_options_derive_from_the_schema() -> None:
    # The tables options.py had before it derived them: its behaviour must not change.
    assert OPTION_TYPES == {
        "num_ctx": int,
        "num_batch": int,
        "num_gpu": int,
        "main_gpu": int,
        "use_mmap": bool,
        "num_thread": int,
        "num_keep": int,
        "seed": int,
        "num_predict": int,
        "top_k": int,
        "top_p": float,
        "min_p": float,
        "typical_p": float,
        "repeat_last_n": int,
        "temperature": float,
        "repeat_penalty": float,
        "presence_penalty": float,
        "frequency_penalty": float,
        "stop": list,
        "draft_num_predict": int,
    }
    assert DEFAULTS == {
        "num_ctx": 4096,
        "num_batch": 512,
        "num_gpu": -1,
        "num_thread": 0,
        "num_keep": 4,
        "seed": -1,
        "num_predict": -1,
        "top_k": 40,
        "top_p": 0.9,
        "min_p": 0.0,
        "typical_p": 1.0,
        "repeat_last_n": 64,
        "temperature": 0.8,
        "repeat_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "stop": [],
    }
    assert all(type(DEFAULTS[n]) is OPTION_TYPES[n] for n in DEFAULTS)


# (id, name, Modelfile text, typed value) -- Go's ParseInt(s, 10, 64), ParseFloat(s, 32),
# ParseBool.
TEXT_VALUES = [
    ("int", "num_ctx", "8192", 8192),
    ("int-negative", "seed", "-1", -1),
    ("int-plus", "top_k", "+5", 5),
    ("int-leading-zeros", "top_k", "007", 7),
    ("int64-max", "seed", "9223372036854775807", 2**63 - 1),
    ("int64-min", "seed", "-9223372036854775808", -(2**63)),
    ("float", "temperature", "0.7", 0.7),
    ("float-int", "temperature", "1", 1.0),
    ("float-leading-dot", "top_p", ".5", 0.5),
    ("float-trailing-dot", "top_p", "5.", 5.0),
    ("float-exponent", "min_p", "5e-2", 0.05),
    ("float-exponent-upper", "min_p", "1E+1", 10.0),
    ("float-underscores", "repeat_penalty", "1_0.0_5", 10.05),
    ("float-exponent-underscore", "repeat_penalty", "1e0_1", 10.0),
    ("float-hex", "temperature", "0x1.8p-1", 0.75),
    ("float-hex-underscore", "temperature", "0x_1p0", 1.0),
    ("float-negative", "presence_penalty", "-0.5", -0.5),
    ("float-underflow-to-zero", "min_p", "1e-50", 0.0),
    ("float32-max", "temperature", "3.4028234e38", 3.4028235e38),
    ("float32-rounding", "temperature", "0.1000000001", 0.1),
    ("bool-1", "use_mmap", "1", True),
    ("bool-t", "use_mmap", "t", True),
    ("bool-T", "use_mmap", "T", True),
    ("bool-TRUE", "use_mmap", "TRUE", True),
    ("bool-true", "use_mmap", "true", True),
    ("bool-True", "use_mmap", "True", True),
    ("bool-0", "use_mmap", "0", False),
    ("bool-f", "use_mmap", "f", False),
    ("bool-F", "use_mmap", "F", False),
    ("bool-FALSE", "use_mmap", "FALSE", False),
    ("bool-false", "use_mmap", "false", False),
    ("bool-False", "use_mmap", "False", False),
    ("stop", "stop", "<|eot_id|>", ["<|eot_id|>"]),
    ("stop-empty", "stop", "", [""]),
]


@pytest.mark.parametrize(
    ("name", "text", "value"), [t[1:] for t in TEXT_VALUES], ids=[t[0] for t in TEXT_VALUES]
)
def test_text_values(name: str, text: str, value: object) -> None:
    result = coerce_parameter(name, text)
    assert result == value and type(result) is type(value)


# (id, name, Modelfile text, exact error)
TEXT_ERRORS = [
    ("int-float", "num_ctx", "1.0", "invalid int value [1.0]"),
    ("int-word", "num_ctx", "x", "invalid int value [x]"),
    ("int-empty", "num_ctx", "", "invalid int value []"),
    ("int-space", "num_ctx", " 1", "invalid int value [ 1]"),
    ("int-underscore", "num_ctx", "1_000", "invalid int value [1_000]"),
    ("int-hex", "num_ctx", "0x10", "invalid int value [0x10]"),
    ("int-overflow", "seed", "9223372036854775808", "invalid int value [9223372036854775808]"),
    ("int-unicode-digit", "seed", "١", "invalid int value [١]"),
    ("float-word", "temperature", "abc", "invalid float value [abc]"),
    ("float-empty", "temperature", "", "invalid float value []"),
    ("float-comma", "temperature", "0,5", "invalid float value [0,5]"),
    ("float-space", "temperature", "0.5 ", "invalid float value [0.5 ]"),
    ("float-bad-underscore", "temperature", "1__0", "invalid float value [1__0]"),
    ("float-trailing-underscore", "temperature", "1_", "invalid float value [1_]"),
    ("float-underscore-dot", "temperature", "1_.5", "invalid float value [1_.5]"),
    ("float-hex-no-exponent", "temperature", "0x1.8", "invalid float value [0x1.8]"),
    ("float-empty-exponent", "temperature", "1e", "invalid float value [1e]"),
    ("float32-overflow", "temperature", "1e39", "invalid float value [1e39]"),
    ("float-inf", "temperature", "inf", "invalid float value [inf]"),
    ("float-infinity", "temperature", "-Infinity", "invalid float value [-Infinity]"),
    ("float-nan", "temperature", "NaN", "invalid float value [NaN]"),
    ("bool-yes", "use_mmap", "yes", "invalid bool value [yes]"),
    ("bool-tRUE", "use_mmap", "tRUE", "invalid bool value [tRUE]"),
    ("bool-empty", "use_mmap", "", "invalid bool value []"),
    ("unknown", "Temperature", "1", "unknown parameter 'Temperature'"),
    ("removed", "tfs_z", "1", "unknown parameter 'tfs_z'"),
    ("deprecated", "mirostat", "1", "parameter mirostat is deprecated"),
]


@pytest.mark.parametrize(
    ("name", "text", "message"), [t[1:] for t in TEXT_ERRORS], ids=[t[0] for t in TEXT_ERRORS]
)
def test_text_errors(name: str, text: str, message: str) -> None:
    with pytest.raises(ModelfileError) as info:
        coerce_parameter(name, text)
    assert str(info.value) == message


# (id, name, JSON value, typed value) -- Options.FromMap
JSON_VALUES = [
    ("int", "num_ctx", 2048, 2048),
    ("int-from-float-truncates", "top_k", 3.9, 3),
    ("int-from-negative-float", "seed", -2.7, -2),
    ("float-from-int", "temperature", 1, 1.0),
    ("float", "top_p", 0.25, 0.25),
    ("float-as-float32", "top_p", 0.1000000001, 0.1),
    ("bool", "use_mmap", False, False),
    ("stop-list", "stop", ["a", "b"], ["a", "b"]),
    ("stop-tuple", "stop", ("a",), ["a"]),
    ("stop-empty", "stop", [], []),
]


@pytest.mark.parametrize(
    ("name", "raw", "value"), [t[1:] for t in JSON_VALUES], ids=[t[0] for t in JSON_VALUES]
)
def test_json_values(name: str, raw: object, value: object) -> None:
    result = coerce_parameter(name, raw)
    assert result == value and type(result) is type(value)


JSON_ERRORS = [
    ("bool-for-int", "num_ctx", True, 'option "num_ctx" must be of type integer'),
    ("list-for-int", "num_ctx", [1], 'option "num_ctx" must be of type integer'),
    ("none-for-int", "num_ctx", None, 'option "num_ctx" must be of type integer'),
    ("nan-for-int", "num_ctx", math.nan, "invalid int value [nan]"),
    ("huge-for-int", "seed", 1e30, "invalid int value [1e+30]"),
    ("bool-for-float", "temperature", False, 'option "temperature" must be of type float32'),
    ("inf-for-float", "temperature", math.inf, "invalid float value [inf]"),
    ("int-for-bool", "use_mmap", 1, 'option "use_mmap" must be of type boolean'),
    ("ints-for-stop", "stop", [1], 'option "stop" must be of an array of strings'),
    ("dict-for-stop", "stop", {"a": 1}, 'option "stop" must be of an array of strings'),
]


@pytest.mark.parametrize(
    ("name", "raw", "message"), [t[1:] for t in JSON_ERRORS], ids=[t[0] for t in JSON_ERRORS]
)
def test_json_errors(name: str, raw: object, message: str) -> None:
    with pytest.raises(ModelfileError) as info:
        coerce_parameter(name, raw)
    assert str(info.value) == message


def test_format_parameter_value() -> None:
    assert format_parameter_value("num_ctx", 8192) == ["8192"]
    assert format_parameter_value("temperature", 1) == ["1.0"]
    assert format_parameter_value("min_p", 1e-5) == ["1e-05"]
    assert format_parameter_value("use_mmap", True) == ["true"]
    assert format_parameter_value("stop", ["a", " b "]) == ["a", " b "]
    assert format_parameter_value("stop", "x") == ["x"]
    assert format_parameter_value("seed", "42") == ["42"]
    with pytest.raises(ModelfileError, match="unknown parameter 'x'"):
        format_parameter_value("x", 1)


FLOAT32_RANGE = st.floats(min_value=-3.4e38, max_value=3.4e38, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.tuples(st.just("seed"), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        st.tuples(st.just("temperature"), FLOAT32_RANGE),
        st.tuples(st.just("use_mmap"), st.booleans()),
        st.tuples(st.just("stop"), st.lists(st.text())),
    )
)
def test_formatted_text_reads_back(pair: tuple[str, object]) -> None:
    name, value = pair
    texts = format_parameter_value(name, value)
    if name == "stop":
        assert texts == value
    else:
        assert [coerce_parameter(name, text) for text in texts] == [coerce_parameter(name, value)]
