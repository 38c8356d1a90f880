from __future__ import annotations

import pytest

from neurons.errors import ConfigError
from neurons.inference.config import InferenceConfig


def test_round_trip() -> None:
    config = InferenceConfig(model_path="/models/x", model_type="transformer", batch_size=8)
    assert InferenceConfig.from_dict(config.to_dict()) == config
    assert InferenceConfig.from_dict({}) == InferenceConfig()


def test_accepts_the_seeds_keys() -> None:
    config = InferenceConfig.from_dict(
        {
            "model_path": "./models/m",
            "model_type": "transformer",
            "max_length": 512,
            "device": "cpu",
        }
    )
    assert (config.model_path, config.model_type, config.max_length, config.device) == (
        "./models/m",
        "transformer",
        512,
        "cpu",
    )


def test_integer_seconds_are_accepted() -> None:
    assert InferenceConfig.from_dict({"batch_wait_ms": 3, "cache_ttl_s": 60}).cache_ttl_s == 60.0


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"max_lenght": 10}, "max_lenght"),
        ({"model_type": "gguf"}, "model_type"),
        ({"max_length": 0}, "max_length"),
        ({"max_length": True}, "max_length"),
        ({"max_length": "256"}, "max_length"),
        ({"device": "tpu"}, "device"),
        ({"quantization": "int4"}, "quantization"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_wait_ms": -1.0}, "batch_wait_ms"),
        ({"cache_size": -1}, "cache_size"),
        ({"cache_ttl_s": 0.0}, "cache_ttl_s"),
        ({"model_path": ""}, "model_path"),
        ({"name": " "}, "name"),
    ],
)
def test_validation_names_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key}:"):
        InferenceConfig.from_dict(data)
