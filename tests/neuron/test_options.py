from __future__ import annotations

import pytest

from neurons.errors import InvalidOptionError
from neurons.neuron.options import DEFAULTS, resolve_options


def test_defaults_follow_ollama() -> None:
    load, sampling = resolve_options(None, None, train_ctx=8192)
    assert load.num_ctx == 4096 and load.num_batch == 512 and load.num_thread >= 1
    assert sampling.temperature == 0.8 and sampling.top_k == 40 and sampling.top_p == 0.9
    assert sampling.repeat_penalty == 1.0 and sampling.seed == -1 and sampling.num_predict == -1
    assert DEFAULTS["num_keep"] == 4


def test_request_overrides_model_params_and_ctx_is_clamped() -> None:
    load, sampling = resolve_options(
        {"temperature": 0.2, "stop": ["<end>"], "num_ctx": 2048},
        {"temperature": 0.5, "num_ctx": 100000, "top_k": 3.0, "unknown_knob": 1},
        train_ctx=8192,
    )
    assert sampling.temperature == 0.5
    assert sampling.stop == ["<end>"]
    assert sampling.top_k == 3 and isinstance(sampling.top_k, int)
    assert load.num_ctx == 8192


@pytest.mark.parametrize(
    "options",
    [{"temperature": "hot"}, {"num_ctx": True}, {"stop": [1]}, {"use_mmap": 1}, {"top_p": 2.0}],
)
def test_wrong_types_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(InvalidOptionError):
        resolve_options(None, options, train_ctx=8192)
