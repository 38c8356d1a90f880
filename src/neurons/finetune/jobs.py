"""What a fine-tuning job is: its validated configuration, its status machine and its phases.

A job's status moves along :mod:`neurons.lifecycle`'s table.

A failed or cancelled job can be started again: training resumes from its last checkpoint.
A completed job is final (its model is deployed; start a new job to train again).

While ``running``, a job is in one of seed 002's phases, in this order::

    validating → preparing → training → evaluating → exporting → deploying

``progress`` (0–1) is the job's place along the phases, each weighted by its usual share of the
time (:data:`PHASE_WEIGHTS`); within ``training`` it advances with the optimizer steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from neurons import lifecycle
from neurons.errors import InvalidRequestError, JobStateError
from neurons.finetune.data import DATA_TYPES
from neurons.finetune.presets import Hyperparameters
from neurons.lifecycle import Event, Status
from neurons.ollama.names import ModelName

__all__ = [
    "PHASES",
    "PHASE_WEIGHTS",
    "JobConfig",
    "confine",
    "next_status",
    "overall_progress",
]


def next_status(status: Status | str, event: Event | str) -> Status:
    """The status after ``event``; :class:`JobStateError` (409) where the table has no move."""
    return lifecycle.next_status(
        status, event, lambda s, e: JobStateError(f"cannot {e} a job that is {s}")
    )


PHASES: tuple[str, ...] = (
    "validating",
    "preparing",
    "training",
    "evaluating",
    "exporting",
    "deploying",
)
# Shares of a typical CPU run (SmolLM2-135M, a few hundred examples): training dominates;
# preparing includes converting the GGUF once, deploying an upload of a few MB.
PHASE_WEIGHTS: dict[str, float] = {
    "validating": 0.02,
    "preparing": 0.08,
    "training": 0.78,
    "evaluating": 0.04,
    "exporting": 0.03,
    "deploying": 0.05,
}


def overall_progress(phase: str, fraction: float = 0.0) -> float:
    """The job's progress when ``fraction`` (0–1) of ``phase`` is done."""
    if phase not in PHASE_WEIGHTS:
        raise ValueError(f"unknown phase {phase!r}")
    done = sum(PHASE_WEIGHTS[p] for p in PHASES[: PHASES.index(phase)])
    value = done + PHASE_WEIGHTS[phase] * min(max(fraction, 0.0), 1.0)
    return round(min(value, 1.0), 4)


def confine(root: Path, relative: str | PurePosixPath) -> Path:
    """``root / relative`` when it is a file inside ``root``; otherwise
    :class:`InvalidRequestError`. Symlinks are resolved first, so a link pointing out of
    ``root`` is refused as well as ``..`` and absolute paths."""
    text = str(relative).strip()
    if not text:
        raise InvalidRequestError("training_data_path is empty")
    if "\x00" in text:
        raise InvalidRequestError("training_data_path contains a NUL byte")
    base = root.resolve()
    candidate = Path(text)
    if not candidate.is_absolute():
        candidate = base / candidate
    resolved = candidate.resolve()  # follows symlinks, all of them
    if not resolved.is_relative_to(base):
        raise InvalidRequestError(
            f"training_data_path must be inside the fine-tuning data directory ({base}); "
            f"'{text}' is not"
        )
    if not resolved.is_file():
        raise InvalidRequestError(f"training data '{text}' does not exist in {base}")
    return resolved


def _string_list(name: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidRequestError(f"{name} must be a list of strings, not {value!r}")
    return tuple(v.strip() for v in value if v.strip())


@dataclass(frozen=True)
class JobConfig:
    """A job as asked for, validated. ``training_data`` is relative to the fine-tuning data
    directory (``FINE_TUNING_PATH/data``); ``nodes`` are the neurons to deploy to (empty: every
    healthy node holding the base model); ``column_mapping`` is for csv data."""

    base_model: str
    target_model_name: str
    training_data: str
    data_type: str
    hyperparameters: Hyperparameters
    target_capabilities: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    column_mapping: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        *,
        base_model: str,
        target_model_name: str,
        training_data: str,
        data_type: str,
        hyperparameters: Hyperparameters,
        target_capabilities: Sequence[str] | None = None,
        nodes: Sequence[str] | None = None,
        column_mapping: Mapping[str, str] | None = None,
    ) -> JobConfig:
        base = ModelName.parse(base_model).display  # InvalidModelNameError (400)
        target = ModelName.parse(target_model_name).display
        if ModelName.parse(base) == ModelName.parse(target):
            raise InvalidRequestError("target_model_name must differ from base_model")
        if data_type not in DATA_TYPES:
            raise InvalidRequestError(
                f"unknown data_type '{data_type}'; valid: {', '.join(DATA_TYPES)}"
            )
        mapping = dict(column_mapping or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
            raise InvalidRequestError("column_mapping must map field names to column names")
        return cls(
            base_model=base,
            target_model_name=target,
            training_data=str(training_data),
            data_type=data_type,
            hyperparameters=hyperparameters,
            target_capabilities=_string_list(
                "target_capabilities", list(target_capabilities or [])
            ),
            nodes=_string_list("nodes", list(nodes or [])),
            column_mapping=mapping,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_model": self.base_model,
            "target_model_name": self.target_model_name,
            "training_data": self.training_data,
            "data_type": self.data_type,
            "hyperparameters": self.hyperparameters.to_dict(),
            "target_capabilities": list(self.target_capabilities),
            "nodes": list(self.nodes),
            "column_mapping": dict(self.column_mapping),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobConfig:
        return cls.create(
            base_model=data["base_model"],
            target_model_name=data["target_model_name"],
            training_data=data["training_data"],
            data_type=data["data_type"],
            hyperparameters=Hyperparameters.from_dict(data["hyperparameters"]),
            target_capabilities=data.get("target_capabilities"),
            nodes=data.get("nodes"),
            column_mapping=data.get("column_mapping"),
        )
