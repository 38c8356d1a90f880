"""Search spaces over Ollama options, one per seed ``model_type``.

A session tunes request options, so every range names an option Ollama accepts
(:data:`neurons.modelfile.schema.PARAMETERS`) and is checked when it is built: a misspelt
``num_ctxx`` or an inverted range fails here, not at trial 40 on a node. Ranges are centred on
what each kind of task wants (see ``_SPACES``); ``restrict`` narrows a space to a subset of
options and ``replace`` swaps in a range that fits a node (e.g. its core count for
``num_thread``).

Integers use a ``step`` rather than categorical choices (``num_ctx`` 2048..8192 step 2048, not
``[2048, 4096, 8192]``) so the default spaces stay usable by CMA-ES, which refuses categorical
parameters. ``num_predict`` is bounded (never Ollama's ``-1``): an unbounded generation makes
latency meaningless.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

import numpy
from optuna.trial import BaseTrial

from neurons.errors import InvalidRequestError
from neurons.modelfile.schema import PARAMETERS

__all__ = ["MODEL_TYPES", "Choice", "ParameterKind", "ParameterRange", "SearchSpace"]

ParameterKind = Literal["float", "int", "categorical"]
Choice = bool | int | float | str
MODEL_TYPES: tuple[str, ...] = ("general", "code", "creative", "analysis")

# Values outside these bounds are rejected or meaningless in Ollama's sampler/runner.
_DOMAINS: dict[str, tuple[float, float]] = {
    "temperature": (0.0, math.inf),
    "top_p": (0.0, 1.0),
    "min_p": (0.0, 1.0),
    "typical_p": (0.0, 1.0),
    "top_k": (0, math.inf),
    "repeat_penalty": (0.0, math.inf),
    "num_ctx": (1, math.inf),
    "num_batch": (1, math.inf),
    "num_thread": (0, math.inf),
    "num_predict": (1, math.inf),
}


def _invalid(name: str, problem: str) -> InvalidRequestError:
    return InvalidRequestError(f"parameter range '{name}': {problem}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class ParameterRange:
    """One tunable option: a float or int interval (optionally log-scaled or stepped) or a set
    of categorical choices. Invalid combinations raise :class:`InvalidRequestError`."""

    name: str
    kind: ParameterKind
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Choice, ...] = ()

    def __post_init__(self) -> None:
        spec = PARAMETERS.get(self.name)
        if spec is None:
            raise _invalid(self.name, f"unknown Ollama option; known: {', '.join(PARAMETERS)}")
        if self.kind not in get_args(ParameterKind):
            raise _invalid(self.name, f"kind must be float, int or categorical, not {self.kind!r}")
        if self.kind == "categorical":
            self._check_categorical(spec.type)
        else:
            self._check_interval(spec.type)

    def _check_categorical(self, option_type: str) -> None:
        if self.low is not None or self.high is not None or self.log or self.step is not None:
            raise _invalid(self.name, "a categorical range takes only choices")
        if not self.choices or len(set(self.choices)) != len(self.choices):
            raise _invalid(self.name, "choices must be non-empty and distinct")
        wanted: type | tuple[type, ...] = {"bool": bool, "int": int}.get(option_type, (int, float))
        for choice in self.choices:
            if option_type != "bool" and isinstance(choice, bool):
                raise _invalid(self.name, f"choice {choice!r} is not a {option_type}")
            if not isinstance(choice, wanted) or option_type == "string_list":
                raise _invalid(self.name, f"choice {choice!r} is not a {option_type}")
            if not isinstance(choice, bool):
                self._check_domain(float(cast(float, choice)))

    def _check_interval(self, option_type: str) -> None:
        if option_type != self.kind:
            raise _invalid(self.name, f"is a {option_type} option, not a {self.kind} range")
        if self.choices:
            raise _invalid(self.name, "an interval range takes no choices")
        bounds = (self.low, self.high, self.step)
        if not _is_number(self.low) or not _is_number(self.high):
            raise _invalid(self.name, "low and high must be numbers")
        if self.kind == "int" and not all(b is None or type(b) is int for b in bounds):
            raise _invalid(self.name, "an int range needs int low, high and step")
        low, high = float(cast(float, self.low)), float(cast(float, self.high))
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise _invalid(self.name, f"needs finite low < high, got {self.low}..{self.high}")
        if self.log and (low <= 0 or self.step is not None):
            raise _invalid(self.name, "a log range needs low > 0 and no step")
        if self.step is not None:
            if not _is_number(self.step) or not self.step > 0:
                raise _invalid(self.name, "step must be a positive number")
            count = (high - low) / self.step
            if abs(count - round(count)) > 1e-9:  # Optuna would silently move high
                raise _invalid(self.name, f"high - low must be a multiple of step {self.step}")
        self._check_domain(low)
        self._check_domain(high)

    def _check_domain(self, value: float) -> None:
        lo, hi = _DOMAINS.get(self.name, (-math.inf, math.inf))
        if not lo <= value <= hi:
            raise _invalid(self.name, f"{value} is outside Ollama's valid range {lo}..{hi}")

    def suggest(self, trial: BaseTrial) -> Any:
        """The trial's value for this option."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        low, high = cast(float, self.low), cast(float, self.high)
        if self.kind == "int":
            step = 1 if self.step is None else int(self.step)
            return trial.suggest_int(self.name, int(low), int(high), step=step, log=self.log)
        return trial.suggest_float(self.name, low, high, step=self.step, log=self.log)

    def grid_values(self, points: int) -> list[Choice]:
        """``points`` evenly spaced values (geometrically for log), snapped to ``step`` and
        de-duplicated; every choice for a categorical range."""
        if self.kind == "categorical":
            return list(self.choices)
        low, high = float(cast(float, self.low)), float(cast(float, self.high))
        spaced = (
            numpy.geomspace(low, high, points) if self.log else numpy.linspace(low, high, points)
        )
        values: list[Choice] = []
        for raw in spaced:
            value = min(max(float(raw), low), high)  # geomspace can overshoot by an ulp
            if self.step is not None:
                value = low + round((value - low) / self.step) * self.step
            cast_value: Choice = round(value) if self.kind == "int" else value
            if cast_value not in values:
                values.append(cast_value)
        return values

    def nearest(self, value: Any) -> Choice:
        """The value in this range closest to ``value`` (clipped, snapped to ``step``); the
        first choice of a categorical range that does not hold it."""
        if self.kind == "categorical":
            return value if value in self.choices else self.choices[0]
        low, high = float(cast(float, self.low)), float(cast(float, self.high))
        number = float(value) if _is_number(value) else low
        number = min(max(number, low), high)
        if self.step is not None:
            number = min(high, low + round((number - low) / self.step) * self.step)
        return round(number) if self.kind == "int" else number

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "step": self.step,
            "choices": list(self.choices),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParameterRange:
        known = {"name", "kind", "low", "high", "log", "step", "choices"}
        if not isinstance(data, Mapping) or not {"name", "kind"} <= set(data) <= known:
            raise InvalidRequestError(f"a parameter range needs name and kind, got {data!r}")
        fields = dict(data)
        try:
            fields["choices"] = tuple(fields.get("choices") or ())
            return cls(**fields)
        except TypeError as exc:  # unhashable choices, a string where a number belongs, ...
            raise InvalidRequestError(f"invalid parameter range {data!r}: {exc}") from exc


def _f(name: str, low: float, high: float, *, log: bool = False) -> ParameterRange:
    return ParameterRange(name, "float", low, high, log=log)


def _i(name: str, low: int, high: int, step: int = 1) -> ParameterRange:
    return ParameterRange(name, "int", low, high, step=step)


# Shared runner options: batch size and threads trade memory and CPU for speed, whatever the
# task. num_thread 0 lets Ollama decide; 16 is a ceiling to narrow with ``replace``.
_RUNNER = (_i("num_batch", 128, 1024, 128), _i("num_thread", 0, 16, 2))

_SPACES: dict[str, tuple[ParameterRange, ...]] = {
    # Around Ollama's defaults (temperature 0.8, top_p 0.9, top_k 40, min_p 0, repeat 1.0).
    "general": (
        _f("temperature", 0.2, 1.2),
        _f("top_p", 0.7, 1.0),
        _i("top_k", 10, 100),
        _f("min_p", 0.0, 0.1),
        _f("repeat_penalty", 1.0, 1.3),
        _i("num_ctx", 2048, 8192, 2048),
        *_RUNNER,
        _i("num_predict", 128, 1024, 128),
    ),
    # Near-greedy decoding: code has one right answer and legitimately repeats tokens, so
    # low temperature and a mild repeat penalty; more context for whole files.
    "code": (
        _f("temperature", 0.0, 0.5),
        _f("top_p", 0.7, 1.0),
        _i("top_k", 10, 60),
        _f("min_p", 0.0, 0.1),
        _f("repeat_penalty", 1.0, 1.15),
        _i("num_ctx", 2048, 16384, 2048),
        *_RUNNER,
        _i("num_predict", 128, 1024, 128),
    ),
    # Diversity: high temperature with a wide nucleus; min_p keeps high temperatures coherent.
    "creative": (
        _f("temperature", 0.7, 1.6),
        _f("top_p", 0.85, 1.0),
        _i("top_k", 40, 200, 10),
        _f("min_p", 0.0, 0.15),
        _f("repeat_penalty", 1.0, 1.3),
        _i("num_ctx", 2048, 8192, 2048),
        *_RUNNER,
        _i("num_predict", 256, 2048, 256),
    ),
    # Moderate temperature, long contexts to read documents, long answers to reason in.
    "analysis": (
        _f("temperature", 0.2, 0.9),
        _f("top_p", 0.7, 0.95),
        _i("top_k", 20, 80),
        _f("min_p", 0.0, 0.1),
        _f("repeat_penalty", 1.0, 1.2),
        _i("num_ctx", 4096, 16384, 4096),
        *_RUNNER,
        _i("num_predict", 512, 2048, 256),
    ),
}


@dataclass(frozen=True)
class SearchSpace:
    """The options a session tunes and their ranges, in a fixed order."""

    model_type: str
    ranges: tuple[ParameterRange, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.ranges:
            raise InvalidRequestError("a search space needs at least one parameter range")
        names = [r.name for r in self.ranges]
        if len(set(names)) != len(names):
            raise InvalidRequestError(f"duplicate parameters in search space: {names}")

    @classmethod
    def for_model_type(cls, model_type: str) -> SearchSpace:
        ranges = _SPACES.get(model_type)
        if ranges is None:
            valid = ", ".join(MODEL_TYPES)
            raise InvalidRequestError(f"unknown model_type '{model_type}'; valid: {valid}")
        return cls(model_type, ranges)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.ranges)

    @property
    def has_categorical(self) -> bool:
        return any(r.kind == "categorical" for r in self.ranges)

    def suggest(self, trial: BaseTrial) -> dict[str, Any]:
        """Ask ``trial`` for a value of every option, in the space's order."""
        return {r.name: r.suggest(trial) for r in self.ranges}

    def baseline(self) -> dict[str, Choice]:
        """Ollama's defaults, each moved to the nearest value in its range (``num_predict``
        -1, unbounded, becomes the range's top): the first trial of a session, what every
        score is relative to."""
        values: dict[str, Choice] = {}
        for r in self.ranges:
            default = PARAMETERS[r.name].default
            if r.name == "num_predict" and default == -1:
                default = r.high
            values[r.name] = r.nearest(default)
        return values

    def grid(self, points_per_axis: int = 3) -> dict[str, list[Choice]]:
        """A ``GridSampler`` search space with ``points_per_axis`` values per numeric axis."""
        if points_per_axis < 2:
            raise InvalidRequestError("a grid needs at least 2 points per axis")
        return {r.name: r.grid_values(points_per_axis) for r in self.ranges}

    def grid_size(self, points_per_axis: int = 3) -> int:
        return math.prod(len(values) for values in self.grid(points_per_axis).values())

    def restrict(self, names: Iterable[str]) -> SearchSpace:
        """The same space over only ``names`` (kept in this space's order)."""
        wanted = set(names)
        unknown = wanted - set(self.names)
        if unknown:
            raise InvalidRequestError(
                f"not in the {self.model_type} search space: {', '.join(sorted(unknown))}; "
                f"valid: {', '.join(self.names)}"
            )
        return SearchSpace(self.model_type, tuple(r for r in self.ranges if r.name in wanted))

    def replace(self, *ranges: ParameterRange) -> SearchSpace:
        """This space with ``ranges`` substituted for (or added to) those of the same name."""
        new = {r.name: r for r in ranges}
        kept = tuple(new.pop(r.name, r) for r in self.ranges)
        return SearchSpace(self.model_type, kept + tuple(new.values()))

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "ranges": [r.to_dict() for r in self.ranges]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        if not isinstance(data, Mapping) or not isinstance(data.get("ranges"), list):
            raise InvalidRequestError("a search space needs model_type and a list of ranges")
        ranges = tuple(ParameterRange.from_dict(r) for r in data["ranges"])
        return cls(str(data.get("model_type", "")), ranges)
