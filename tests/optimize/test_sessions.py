"""Session configs (validation, defaults, limits, JSON round trip) and the status table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from neurons.errors import InvalidModelNameError, InvalidRequestError, SessionStateError
from neurons.optimize.evalsets import builtin_set, parse_jsonl
from neurons.optimize.sessions import (
    SESSION_TRANSITIONS,
    SessionConfig,
    SessionEvent,
    SessionStatus,
    next_status,
)


def test_defaults_come_from_the_limits_and_the_model_type() -> None:
    config = SessionConfig.create(
        model_name="smollm2:135m", model_type="code", limit_iterations=40, limit_minutes=15
    )
    assert (config.max_iterations, config.timeout_minutes) == (40, 15.0)
    assert (config.objective, config.strategy) == ("balance_quality_speed", "bayesian_optimization")
    assert config.space.model_type == "code" and "temperature" in config.space.names
    assert config.eval_set == builtin_set("code")
    assert config.cases == builtin_set("code").cases


def test_round_trip_through_json_keeps_everything() -> None:
    own = parse_jsonl('{"prompt": "2+2?", "reference": "4", "metric": "contains"}\n', name="mine")
    config = SessionConfig.create(
        model_name="smollm2:135m",
        objective="minimize_latency",
        strategy="hyperband",
        parameters=["temperature", "num_ctx"],
        eval_set=own,
        max_iterations=7,
        timeout_minutes=2.5,
        node="n1",
        seed=3,
        eval_limit=1,
        samples=3,
        similarity=False,
    )
    again = SessionConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.space.names == ("temperature", "num_ctx") and again.samples == 3


def test_a_session_stored_before_samples_reads_as_one_draw() -> None:
    data = SessionConfig.create(model_name="smollm2:135m", samples=4).to_dict()
    del data["samples"]
    assert SessionConfig.from_dict(data).samples == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"objective": "maximize_vibes"}, "unknown objective"),
        ({"strategy": "guessing"}, "unknown strategy"),
        ({"model_type": "poetry"}, "unknown model_type"),
        ({"max_iterations": 0}, "max_iterations must be"),
        ({"max_iterations": 11}, "above MAX_OPTIMIZATION_ITERATIONS"),
        ({"timeout_minutes": 0}, "timeout_minutes must be"),
        ({"timeout_minutes": 61}, "above OPTIMIZATION_TIMEOUT_MINUTES"),
        ({"eval_limit": 0}, "eval_limit must be"),
        ({"samples": 0}, "samples must be"),
        ({"samples": True}, "samples must be"),
        ({"samples": "2"}, "samples must be"),
        ({"seed": "x"}, "seed must be an integer"),
        ({"parameters": ["temperature", "warp_factor"]}, "not in the general search space"),
    ],
)
def test_invalid_configs_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        SessionConfig.create(
            model_name="smollm2:135m", limit_iterations=10, limit_minutes=60, **overrides
        )


def test_a_malformed_model_name_is_refused() -> None:
    with pytest.raises(InvalidModelNameError):
        SessionConfig.create(model_name="bad name!")


def test_from_dict_reports_missing_fields() -> None:
    data = SessionConfig.create(model_name="smollm2:135m").to_dict()
    del data["space"]
    with pytest.raises(InvalidRequestError, match="lacks 'space'"):
        SessionConfig.from_dict(data)


@pytest.mark.parametrize(
    ("status", "event", "expected"),
    [
        ("pending", "start", "running"),
        ("pending", "cancel", "cancelled"),
        ("running", "complete", "completed"),
        ("running", "fail", "failed"),
        ("running", "cancel", "cancelled"),
        ("running", "adopt", "running"),
        ("failed", "start", "running"),
        ("cancelled", "start", "running"),
    ],
)
def test_allowed_moves(status: str, event: str, expected: str) -> None:
    assert next_status(status, event) == expected


def test_every_other_move_is_refused() -> None:
    for status in SessionStatus:
        for event in SessionEvent:
            if (status, event) in SESSION_TRANSITIONS:
                continue
            with pytest.raises(SessionStateError, match=f"cannot {event}"):
                next_status(status, event)
    assert SessionStatus.COMPLETED.finished and not SessionStatus.RUNNING.finished
