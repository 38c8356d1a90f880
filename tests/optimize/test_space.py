from __future__ import annotations

import json
from typing import Any

import optuna
import pytest

from neurons.errors import InvalidRequestError
from neurons.modelfile.schema import PARAMETERS
from neurons.optimize.space import MODEL_TYPES, ParameterRange, SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

TUNED = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "num_ctx",
    "num_batch",
    "num_thread",
    "num_predict",
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "num_ctxx", "kind": "int", "low": 1, "high": 2}, "unknown Ollama option"),
        ({"name": "temperature", "kind": "bogus", "low": 0, "high": 1}, "kind must be"),
        ({"name": "temperature", "kind": "float", "low": 1.0, "high": 0.5}, "low < high"),
        ({"name": "temperature", "kind": "float", "low": 0.5, "high": 0.5}, "low < high"),
        ({"name": "temperature", "kind": "float", "low": 0, "high": float("inf")}, "finite"),
        ({"name": "temperature", "kind": "float", "low": None, "high": 1.0}, "numbers"),
        ({"name": "temperature", "kind": "int", "low": 0, "high": 1}, "float option"),
        ({"name": "top_k", "kind": "float", "low": 1.0, "high": 5.0}, "int option"),
        ({"name": "top_k", "kind": "int", "low": 1, "high": 5.5}, "int low, high"),
        ({"name": "top_p", "kind": "float", "low": 0.5, "high": 1.5}, "valid range"),
        ({"name": "temperature", "kind": "float", "low": -1.0, "high": 1.0}, "valid range"),
        ({"name": "temperature", "kind": "float", "low": 0.0, "high": 1.0, "log": True}, "log"),
        ({"name": "num_ctx", "kind": "int", "low": 1024, "high": 5000, "step": 1024}, "multiple"),
        ({"name": "num_ctx", "kind": "int", "low": 1024, "high": 2048, "step": 0}, "positive"),
        ({"name": "top_k", "kind": "int", "low": 1, "high": 5, "choices": (1,)}, "no choices"),
        ({"name": "num_ctx", "kind": "categorical"}, "non-empty"),
        ({"name": "num_ctx", "kind": "categorical", "choices": (1024, 1024)}, "distinct"),
        ({"name": "num_ctx", "kind": "categorical", "choices": (1024, 2.5)}, "not a int"),
        ({"name": "num_ctx", "kind": "categorical", "choices": (True,)}, "not a int"),
        ({"name": "use_mmap", "kind": "categorical", "choices": (1, 0)}, "not a bool"),
        ({"name": "stop", "kind": "categorical", "choices": ("x",)}, "not a string_list"),
        ({"name": "num_ctx", "kind": "categorical", "low": 1, "choices": (2,)}, "only choices"),
    ],
)
def test_invalid_ranges_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        ParameterRange(**kwargs)


def test_valid_ranges() -> None:
    ParameterRange("use_mmap", "categorical", choices=(True, False))
    ParameterRange("temperature", "categorical", choices=(0, 0.5, 1))
    ParameterRange("temperature", "float", 0.01, 2.0, log=True)
    ParameterRange("temperature", "float", 0.0, 1.0, step=0.1)
    ParameterRange("num_ctx", "int", 1024, 8192, log=True)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_default_spaces_cover_the_tuned_options(model_type: str) -> None:
    space = SearchSpace.for_model_type(model_type)
    assert space.names == TUNED
    assert all(name in PARAMETERS for name in space.names)
    assert not space.has_categorical  # CMA-ES can use every default space


def test_spaces_differ_where_they_should() -> None:
    def high(model_type: str, name: str) -> float:
        space = SearchSpace.for_model_type(model_type)
        value = next(r.high for r in space.ranges if r.name == name)
        assert value is not None
        return value

    assert high("code", "temperature") < high("general", "temperature")
    assert high("creative", "temperature") > high("general", "temperature")
    assert high("analysis", "num_predict") > high("general", "num_predict")


def test_unknown_model_type_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidRequestError, match="general, code, creative, analysis"):
        SearchSpace.for_model_type("poetry")


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_suggest_stays_in_bounds(model_type: str) -> None:
    space = SearchSpace.for_model_type(model_type)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        params = space.suggest(study.ask())
        for r in space.ranges:
            value = params[r.name]
            assert r.low is not None and r.high is not None
            assert r.low <= value <= r.high
            if r.kind == "int":
                assert isinstance(value, int)
                assert (value - r.low) % (r.step or 1) == 0


def test_suggest_with_a_fixed_trial_and_categorical() -> None:
    space = SearchSpace(
        "custom",
        (
            ParameterRange("temperature", "float", 0.0, 1.0),
            ParameterRange("num_ctx", "categorical", choices=(2048, 4096)),
        ),
    )
    fixed = optuna.trial.FixedTrial({"temperature": 0.3, "num_ctx": 4096})
    assert space.suggest(fixed) == {"temperature": 0.3, "num_ctx": 4096}
    assert space.has_categorical


@pytest.mark.parametrize(
    ("rng", "points", "expected"),
    [
        (ParameterRange("temperature", "float", 0.0, 1.0), 3, [0.0, 0.5, 1.0]),
        (ParameterRange("top_k", "int", 1, 3), 5, [1, 2, 3]),  # de-duplicated
        (ParameterRange("num_ctx", "int", 2048, 8192, step=2048), 3, [2048, 6144, 8192]),
        (ParameterRange("num_ctx", "int", 2048, 8192, step=2048), 9, [2048, 4096, 6144, 8192]),
        (ParameterRange("num_ctx", "categorical", choices=(1, 2, 4, 8)), 2, [1, 2, 4, 8]),
        (ParameterRange("temperature", "float", 0.01, 1.0, log=True), 3, [0.01, 0.1, 1.0]),
    ],
)
def test_grid_values(rng: ParameterRange, points: int, expected: list[Any]) -> None:
    assert rng.grid_values(points) == pytest.approx(expected)


def test_grid_sizes() -> None:
    space = SearchSpace.for_model_type("general")
    assert space.grid_size(2) == 2**9
    assert space.grid_size(3) == 3**9
    assert space.restrict(["temperature", "top_p"]).grid_size(4) == 16
    with pytest.raises(InvalidRequestError):
        space.grid(1)


def test_restrict_and_replace() -> None:
    space = SearchSpace.for_model_type("code")
    sub = space.restrict(["top_p", "temperature"])
    assert sub.names == ("temperature", "top_p")  # the space's order
    with pytest.raises(InvalidRequestError, match="not in the code search space: nope"):
        space.restrict(["nope"])
    threads = ParameterRange("num_thread", "int", 1, 4)
    replaced = sub.replace(threads, ParameterRange("top_p", "float", 0.8, 0.9))
    assert replaced.names == ("temperature", "top_p", "num_thread")
    assert replaced.ranges[1].high == 0.9
    with pytest.raises(InvalidRequestError, match="duplicate"):
        SearchSpace("x", (threads, threads))
    with pytest.raises(InvalidRequestError, match="at least one"):
        SearchSpace("x", ())


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_json_round_trip(model_type: str) -> None:
    space = SearchSpace.for_model_type(model_type).replace(
        ParameterRange("use_mmap", "categorical", choices=(True, False)),
        ParameterRange("temperature", "float", 0.05, 1.0, log=True),
    )
    again = SearchSpace.from_dict(json.loads(json.dumps(space.to_dict())))
    assert again == space
    assert again.grid(3) == space.grid(3)


@pytest.mark.parametrize(
    "data",
    [
        {"model_type": "general"},
        {"model_type": "general", "ranges": [{"name": "temperature"}]},
        {"model_type": "general", "ranges": [{"name": "top_k", "kind": "int", "extra": 1}]},
        {"model_type": "general", "ranges": [{"name": "top_k", "kind": "int", "low": 5}]},
        {
            "model_type": "general",
            "ranges": [{"name": "top_k", "kind": "categorical", "choices": [[1], [2]]}],
        },
        {"model_type": "general", "ranges": ["top_k"]},
    ],
)
def test_from_dict_rejects_malformed(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        SearchSpace.from_dict(data)
