"""Training hyperparameters: the seed's three presets, LoRA settings, and a custom JSON form.

The presets are exactly seed 002's (``efficient``, ``balanced``, ``high_quality``); their
learning rates are small for LoRA (adapters usually train at 1e-4..2e-4), so a job that must
learn a lot from a few examples overrides them in the JSON form::

    {"preset": "efficient", "learning_rate": 2e-4, "lora_r": 16}

A JSON object without ``preset`` starts from ``balanced``. Every value is checked before
anything runs: an unknown key, a wrong type or a value out of range is an
:class:`~neurons.errors.InvalidRequestError` that names the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from neurons.errors import InvalidRequestError

__all__ = ["DEFAULT_PRESET", "PRESETS", "Hyperparameters", "parse_hyperparameters"]

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SCHEDULERS = ("linear", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Hyperparameters:
    """One job's training settings. Build with :meth:`from_dict` (validates) or a preset."""

    learning_rate: float = 1e-5
    batch_size: int = 4
    epochs: int = 3
    warmup_steps: int = 100
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    max_seq_length: int = 512
    max_steps: int | None = None  # a cap on optimizer steps, over all epochs
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = LORA_TARGETS
    eval_fraction: float = 0.1  # held out for the evaluation loss before and after
    seed: int = 42
    checkpoint_steps: int = 20  # optimizer steps between checkpoints (resume points)
    device: str = "auto"  # auto: a CUDA GPU when torch sees one, else the CPU
    preset: str | None = None  # the preset these values started from, for the record

    def __post_init__(self) -> None:
        self._check()

    # -- validation ---------------------------------------------------------------------------

    def _check(self) -> None:
        def bad(name: str, why: str) -> InvalidRequestError:
            return InvalidRequestError(f"hyperparameters: {name} {why}")

        if not (math.isfinite(self.learning_rate) and 0 < self.learning_rate <= 1):
            raise bad("learning_rate", f"must be in (0, 1], got {self.learning_rate}")
        for name, low, high in (
            ("batch_size", 1, 1024),
            ("epochs", 1, 1000),
            ("warmup_steps", 0, 1_000_000),
            ("gradient_accumulation_steps", 1, 1024),
            ("max_seq_length", 16, 131_072),
            ("lora_r", 1, 1024),
            ("seed", 0, 2**32 - 1),
            ("checkpoint_steps", 1, 1_000_000),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise bad(name, f"must be between {low} and {high}, got {value}")
        if self.max_steps is not None and self.max_steps < 1:
            raise bad("max_steps", f"must be at least 1, got {self.max_steps}")
        if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise bad("lora_alpha", f"must be positive, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise bad("lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        if not (math.isfinite(self.weight_decay) and 0 <= self.weight_decay <= 1):
            raise bad("weight_decay", f"must be in [0, 1], got {self.weight_decay}")
        if not 0 <= self.eval_fraction < 0.5:
            raise bad("eval_fraction", f"must be in [0, 0.5), got {self.eval_fraction}")
        if self.lr_scheduler not in SCHEDULERS:
            raise bad("lr_scheduler", f"must be one of {', '.join(SCHEDULERS)}")
        if self.device not in DEVICES:
            raise bad("device", f"must be one of {', '.join(DEVICES)}")
        if not self.target_modules:
            raise bad("target_modules", "must name at least one module")
        unknown = [m for m in self.target_modules if m not in LORA_TARGETS]
        if unknown:
            raise bad("target_modules", f"unknown {unknown}; choose from {list(LORA_TARGETS)}")

    # -- round trip ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hyperparameters:
        """Values over a preset (``data["preset"]``, default ``balanced``); validated."""
        if not isinstance(data, Mapping):
            raise InvalidRequestError("hyperparameters must be a JSON object or a preset name")
        values = dict(data)
        preset = values.pop("preset", None) or DEFAULT_PRESET
        if preset not in PRESETS:
            raise InvalidRequestError(
                f"hyperparameters: unknown preset {preset!r}; choose from {', '.join(PRESETS)}"
            )
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InvalidRequestError(f"hyperparameters: unknown field(s) {', '.join(unknown)}")
        typed: dict[str, Any] = {}
        for name, value in values.items():
            typed[name] = _coerce(name, known[name].type, value)
        return replace(PRESETS[preset], **typed)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Hyperparameters:
        return parse_hyperparameters(text)

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha / self.lora_r


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    """``value`` as the field's type; bools are not numbers and floats are not ints."""
    kind = str(annotation)

    def wrong(expected: str) -> InvalidRequestError:
        return InvalidRequestError(f"hyperparameters: {name} must be {expected}, got {value!r}")

    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number")
        return float(value)
    if kind in ("int", "int | None"):
        if value is None and kind == "int | None":
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if kind in ("str", "str | None"):
        if value is None and kind == "str | None":
            return None
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    if kind == "tuple[str, ...]":
        if value == "all-linear":
            return LORA_TARGETS
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of module names or 'all-linear'")
        return tuple(value)
    raise AssertionError(f"no coercion for {name}: {kind}")  # a new field needs a case here


PRESETS: dict[str, Hyperparameters] = {
    "efficient": Hyperparameters(
        learning_rate=2e-5, batch_size=2, epochs=2, warmup_steps=50, preset="efficient"
    ),
    "balanced": Hyperparameters(
        learning_rate=1e-5, batch_size=4, epochs=3, warmup_steps=100, preset="balanced"
    ),
    "high_quality": Hyperparameters(
        learning_rate=5e-6, batch_size=8, epochs=5, warmup_steps=200, preset="high_quality"
    ),
}
DEFAULT_PRESET = "balanced"
# "high-quality" as the seed's prose spells it
_ALIASES = {"high-quality": "high_quality"}


def parse_hyperparameters(text: str | None) -> Hyperparameters:
    """The form field: a preset name, or a JSON object (see the module docstring)."""
    raw = (text or "").strip()
    if not raw:
        return PRESETS[DEFAULT_PRESET]
    name = _ALIASES.get(raw, raw)
    if name in PRESETS:
        return PRESETS[name]
    if not raw.startswith("{"):
        raise InvalidRequestError(
            f"hyperparameters: {raw!r} is neither a preset ({', '.join(PRESETS)}) nor JSON"
        )
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"hyperparameters: invalid JSON ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("preset"), str):
        data["preset"] = _ALIASES.get(data["preset"], data["preset"])
    return Hyperparameters.from_dict(data)
