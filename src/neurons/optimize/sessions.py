"""What an optimization session is: its validated configuration and its status machine.

A session's status moves along :mod:`neurons.lifecycle`'s table.

A failed or cancelled session can be started again: it continues the same Optuna study, so its
finished trials count and the sampler keeps what it learned. A completed one is final.

:class:`SessionConfig` holds everything a runner needs, validated when it is built and kept as
JSON in the session's row, so a session resumed after a restart runs exactly as it was asked
(its evaluation cases included, even if the user's JSONL file has changed since).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from neurons import lifecycle
from neurons.errors import InvalidRequestError, SessionStateError
from neurons.lifecycle import TRANSITIONS, Event, Status
from neurons.ollama.names import ModelName
from neurons.optimize.evalsets import EvalCase, EvalSet, builtin_set
from neurons.optimize.objectives import OBJECTIVES
from neurons.optimize.space import MODEL_TYPES, SearchSpace
from neurons.optimize.strategies import STRATEGIES

__all__ = [
    "SESSION_TRANSITIONS",
    "SessionConfig",
    "SessionEvent",
    "SessionStatus",
    "next_status",
]


# The shared status machine under the names the optimization code and its tests use.
SessionStatus = Status
SessionEvent = Event
SESSION_TRANSITIONS = TRANSITIONS


def next_status(status: Status | str, event: Event | str) -> Status:
    """The status after ``event``; :class:`SessionStateError` (409) where the table has no
    such move, e.g. starting a completed session."""
    return lifecycle.next_status(
        status, event, lambda s, e: SessionStateError(f"cannot {e} a session that is {s}")
    )


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(f"{name} must be an integer of at least 1, not {value!r}")
    return value


def _case_to_dict(case: EvalCase) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": case.id,
        "prompt": case.prompt,
        "reference": case.reference,
        "metric": case.metric,
    }
    if case.system is not None:
        data["system"] = case.system
    if case.max_tokens is not None:
        data["max_tokens"] = case.max_tokens
    return data


def _set_from_dict(data: Mapping[str, Any]) -> EvalSet:
    cases = data.get("cases")
    if not isinstance(cases, list) or not cases:
        raise InvalidRequestError("an evaluation set needs a non-empty list of cases")
    try:
        parsed = tuple(EvalCase(**case) for case in cases)
    except TypeError as exc:
        raise InvalidRequestError(f"invalid evaluation case: {exc}") from exc
    return EvalSet(str(data.get("name", "custom")), str(data.get("model_type", "general")), parsed)


@dataclass(frozen=True)
class SessionConfig:
    """A session as asked for, validated. Build one with :meth:`create`, which fills the
    defaults and checks the limits; ``to_dict``/``from_dict`` round-trip it through JSON.

    - ``node``: the node every trial runs on (None: the network picks one holding the model,
      and keeps it for the whole session so trials stay comparable).
    - ``max_iterations``: trials to run (finished trials count, pruned ones included).
    - ``timeout_minutes``: running time, summed over restarts.
    - ``eval_limit``: prompts per trial, the first ``eval_limit`` cases of the set; it is also
      Hyperband's largest budget.
    - ``samples``: generations per prompt, each with its own fixed sampling seed
      (``TRIAL_SEED``, ``TRIAL_SEED + 1``, ...); the trial's metrics are means over all of
      them. One draw per prompt makes a configuration's quality the luck of that draw: on
      ``smollm2:135m`` at temperature 0.2, six seeds scored the same options 0.55..0.63
      over the general set, more than most options move it.
    - ``baseline``: run Ollama's defaults first (what ``overall_score`` is relative to).
    - ``similarity``: score ``similarity`` cases with MiniLM embeddings; False scores them by
      token F1, which needs no model (for machines where loading one is too much).
    """

    model_name: str
    objective: str
    strategy: str
    model_type: str
    space: SearchSpace
    eval_set: EvalSet
    max_iterations: int
    timeout_minutes: float
    node: str | None = None
    seed: int | None = None
    eval_limit: int | None = None
    samples: int = 1
    baseline: bool = True
    similarity: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ModelName.parse(self.model_name)  # InvalidModelNameError (400) for a malformed name
        if self.objective not in OBJECTIVES:
            raise InvalidRequestError(
                f"unknown objective '{self.objective}'; valid: {', '.join(OBJECTIVES)}"
            )
        if self.strategy not in STRATEGIES:
            raise InvalidRequestError(
                f"unknown strategy '{self.strategy}'; valid: {', '.join(STRATEGIES)}"
            )
        if self.model_type not in MODEL_TYPES:
            raise InvalidRequestError(
                f"unknown model_type '{self.model_type}'; valid: {', '.join(MODEL_TYPES)}"
            )
        _positive_int("max_iterations", self.max_iterations)
        if self.eval_limit is not None:
            _positive_int("eval_limit", self.eval_limit)
        _positive_int("samples", self.samples)
        if not isinstance(self.timeout_minutes, int | float) or not self.timeout_minutes > 0:
            raise InvalidRequestError(
                f"timeout_minutes must be a number above 0, not {self.timeout_minutes!r}"
            )
        seed = self.seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidRequestError(f"seed must be an integer, not {self.seed!r}")

    @classmethod
    def create(
        cls,
        *,
        model_name: str,
        objective: str = "balance_quality_speed",
        strategy: str = "bayesian_optimization",
        model_type: str = "general",
        max_iterations: int | None = None,
        timeout_minutes: float | None = None,
        limit_iterations: int = 100,
        limit_minutes: float = 60.0,
        parameters: list[str] | None = None,
        space: SearchSpace | None = None,
        eval_set: EvalSet | None = None,
        **options: Any,
    ) -> SessionConfig:
        """A config with defaults: the limits (``MAX_OPTIMIZATION_ITERATIONS``,
        ``OPTIMIZATION_TIMEOUT_MINUTES``) are the defaults and the ceilings, ``parameters``
        narrows the model_type's space, and the evaluation set is the packaged one."""
        if model_type not in MODEL_TYPES:
            raise InvalidRequestError(
                f"unknown model_type '{model_type}'; valid: {', '.join(MODEL_TYPES)}"
            )
        iterations = limit_iterations if max_iterations is None else max_iterations
        if isinstance(iterations, int) and iterations > limit_iterations:
            raise InvalidRequestError(
                f"max_iterations {iterations} is above MAX_OPTIMIZATION_ITERATIONS "
                f"({limit_iterations})"
            )
        minutes = limit_minutes if timeout_minutes is None else timeout_minutes
        if isinstance(minutes, int | float) and minutes > limit_minutes:
            raise InvalidRequestError(
                f"timeout_minutes {minutes} is above OPTIMIZATION_TIMEOUT_MINUTES ({limit_minutes})"
            )
        chosen = space if space is not None else SearchSpace.for_model_type(model_type)
        if parameters:
            chosen = chosen.restrict(parameters)
        return cls(
            model_name=model_name,
            objective=objective,
            strategy=strategy,
            model_type=model_type,
            space=chosen,
            eval_set=eval_set if eval_set is not None else builtin_set(model_type),
            max_iterations=iterations,
            timeout_minutes=float(minutes),
            **options,
        )

    @property
    def cases(self) -> tuple[EvalCase, ...]:
        """The cases each trial runs (the first ``eval_limit``)."""
        if self.eval_limit is None:
            return self.eval_set.cases
        return self.eval_set.take(self.eval_limit).cases

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "objective": self.objective,
            "strategy": self.strategy,
            "model_type": self.model_type,
            "space": self.space.to_dict(),
            "eval_set": {
                "name": self.eval_set.name,
                "model_type": self.eval_set.model_type,
                "cases": [_case_to_dict(c) for c in self.eval_set.cases],
            },
            "max_iterations": self.max_iterations,
            "timeout_minutes": self.timeout_minutes,
            "node": self.node,
            "seed": self.seed,
            "eval_limit": self.eval_limit,
            "samples": self.samples,
            "baseline": self.baseline,
            "similarity": self.similarity,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionConfig:
        try:
            return cls(
                model_name=data["model_name"],
                objective=data["objective"],
                strategy=data["strategy"],
                model_type=data["model_type"],
                space=SearchSpace.from_dict(data["space"]),
                eval_set=_set_from_dict(data["eval_set"]),
                max_iterations=data["max_iterations"],
                timeout_minutes=data["timeout_minutes"],
                node=data.get("node"),
                seed=data.get("seed"),
                eval_limit=data.get("eval_limit"),
                samples=data.get("samples", 1),  # sessions stored before samples: one draw
                baseline=bool(data.get("baseline", True)),
                similarity=bool(data.get("similarity", True)),
                extra=dict(data.get("extra") or {}),
            )
        except KeyError as exc:
            raise InvalidRequestError(f"session config lacks {exc}") from exc
