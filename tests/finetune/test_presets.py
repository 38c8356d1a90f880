"""Presets exactly as seed 002 defines them, the JSON form, and refusals before anything runs."""

from __future__ import annotations

from typing import Any

import pytest

from neurons.errors import InvalidRequestError
from neurons.finetune.presets import PRESETS, Hyperparameters, parse_hyperparameters


@pytest.mark.parametrize(
    ("name", "lr", "batch", "epochs", "warmup"),
    [
        ("efficient", 2e-5, 2, 2, 50),
        ("balanced", 1e-5, 4, 3, 100),
        ("high_quality", 5e-6, 8, 5, 200),
    ],
)
def test_presets_are_the_seeds(name: str, lr: float, batch: int, epochs: int, warmup: int) -> None:
    preset = parse_hyperparameters(name)
    assert (preset.learning_rate, preset.batch_size, preset.epochs, preset.warmup_steps) == (
        lr,
        batch,
        epochs,
        warmup,
    )
    assert preset.preset == name and PRESETS[name] == preset


def test_spellings_and_defaults() -> None:
    assert parse_hyperparameters("high-quality") == PRESETS["high_quality"]
    assert parse_hyperparameters(None) == PRESETS["balanced"]
    assert parse_hyperparameters("  ") == PRESETS["balanced"]


def test_json_overrides_a_preset_and_round_trips() -> None:
    hp = parse_hyperparameters(
        '{"preset": "efficient", "learning_rate": 0.0002, "lora_r": 16, '
        '"target_modules": "all-linear", "max_steps": 30}'
    )
    assert (hp.learning_rate, hp.batch_size, hp.lora_r, hp.max_steps) == (2e-4, 2, 16, 30)
    assert len(hp.target_modules) == 7 and hp.lora_scale == 1.0
    assert Hyperparameters.from_dict(hp.to_dict()) == hp
    assert Hyperparameters.from_json(hp.to_json()) == hp
    assert parse_hyperparameters('{"epochs": 1}').batch_size == 4  # balanced underneath


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fastest", "neither a preset"),
        ("{not json", "invalid JSON"),
        ("[1, 2]", "neither a preset"),
        ('{"preset": "turbo"}', "unknown preset"),
        ('{"learning_rate": 0}', "learning_rate"),
        ('{"learning_rate": "fast"}', "learning_rate must be a number"),
        ('{"batch_size": 0}', "batch_size"),
        ('{"batch_size": 2.5}', "batch_size must be an integer"),
        ('{"epochs": true}', "epochs must be an integer"),
        ('{"lora_dropout": 1.0}', "lora_dropout"),
        ('{"eval_fraction": 0.6}', "eval_fraction"),
        ('{"lr_scheduler": "exp"}', "lr_scheduler"),
        ('{"target_modules": ["lm_head"]}', "target_modules"),
        ('{"target_modules": []}', "target_modules"),
        ('{"device": "tpu"}', "device"),
        ('{"max_steps": 0}', "max_steps"),
        ('{"rank": 8}', "unknown field"),
    ],
)
def test_invalid_values_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        parse_hyperparameters(text)


def test_from_dict_refuses_a_non_object() -> None:
    bad: Any = ["efficient"]
    with pytest.raises(InvalidRequestError, match="JSON object"):
        Hyperparameters.from_dict(bad)
