"""Seed 003's "dynamic learning rates" and "adaptive batch sizes": per-node schedules that a
:class:`~neurons.learning.system.DistributedLearningSystem` consults at every evaluation.

The contract (:class:`Schedule`): at each evaluation the system hands a schedule a node's id,
its measured knowledge level (validation accuracy) and the value in use (a learning rate or a
batch size); the schedule answers the value to use from now on (the same one for no change).
A schedule keeps its own per-node memory, which :meth:`Schedule.state` and
:meth:`Schedule.restore` carry through a checkpoint. Every change becomes an event
(``lr_changed``, ``batch_changed``) with the level that caused it.

- :class:`Constant`: never changes anything; the smallest schedule, and the default.
- :class:`PlateauLR`: halves the rate once the level has not improved by ``min_delta`` for
  ``patience`` evaluations, down to ``floor`` times where it started (Keras's and torch's
  ReduceLROnPlateau).
- :class:`AdaptiveBatch`: on the same plateau doubles the batch size instead, up to
  ``ceiling``: Smith et al. 2018 ("Don't decay the learning rate, increase the batch size")
  show the larger batch cuts gradient noise as a smaller rate would, in fewer steps' time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from neurons.errors import InvalidRequestError

__all__ = ["AdaptiveBatch", "Constant", "PlateauLR", "Schedule", "make_schedule"]


class Schedule(ABC):
    """What a node's learning rate or batch size becomes after an evaluation."""

    @abstractmethod
    def next_value(self, node_id: str, level: float, current: float) -> float:
        """The value ``node_id`` uses from now on, given its fresh ``level``."""

    def state(self) -> dict[str, Any]:
        """This schedule's per-node memory, JSON-ready (for checkpoints)."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state` returned."""
        return None  # a schedule without memory has nothing to take back

    def forget(self, node_id: str) -> None:
        """Drop ``node_id``'s memory (the node left the system)."""
        return None


class Constant(Schedule):
    def next_value(self, node_id: str, level: float, current: float) -> float:
        return current


@dataclass
class _Plateau:
    best: float = -1.0
    waited: int = 0
    start: float = 0.0


class _PlateauSchedule(Schedule):
    """Counts evaluations without a gain of ``min_delta``; :meth:`on_plateau` says what a
    plateau of ``patience`` evaluations does to the value."""

    def __init__(self, patience: int = 1, min_delta: float = 0.005) -> None:
        if patience < 1 or min_delta < 0:
            raise InvalidRequestError("patience must be at least 1 and min_delta not negative")
        self.patience, self.min_delta = patience, min_delta
        self._seen: dict[str, _Plateau] = {}

    @abstractmethod
    def on_plateau(self, start: float, current: float) -> float:
        """The value after a plateau, given where the node started and where it is."""

    def next_value(self, node_id: str, level: float, current: float) -> float:
        seen = self._seen.setdefault(node_id, _Plateau(start=current))
        if level >= seen.best + self.min_delta:
            seen.best, seen.waited = level, 0
            return current
        seen.waited += 1
        if seen.waited < self.patience:
            return current
        seen.waited = 0
        return self.on_plateau(seen.start, current)

    def state(self) -> dict[str, Any]:
        return {k: [v.best, v.waited, v.start] for k, v in self._seen.items()}

    def restore(self, state: dict[str, Any]) -> None:
        self._seen = {k: _Plateau(float(b), int(w), float(s)) for k, (b, w, s) in state.items()}

    def forget(self, node_id: str) -> None:
        self._seen.pop(node_id, None)


class PlateauLR(_PlateauSchedule):
    def __init__(
        self,
        patience: int = 1,
        min_delta: float = 0.005,
        factor: float = 0.5,
        floor: float = 1 / 64,
    ) -> None:
        super().__init__(patience, min_delta)
        if not 0 < factor < 1 or not 0 < floor <= 1:
            raise InvalidRequestError("factor must be in (0, 1) and floor in (0, 1]")
        self.factor, self.floor = factor, floor

    def on_plateau(self, start: float, current: float) -> float:
        return max(current * self.factor, start * self.floor)


class AdaptiveBatch(_PlateauSchedule):
    def __init__(self, patience: int = 1, min_delta: float = 0.005, ceiling: int = 512) -> None:
        super().__init__(patience, min_delta)
        if ceiling < 1:
            raise InvalidRequestError("ceiling must be at least 1")
        self.ceiling = ceiling

    def on_plateau(self, start: float, current: float) -> float:
        return float(min(int(current) * 2, max(self.ceiling, int(start))))


def make_schedule(name: str, what: str, min_delta: float = 0.005) -> Schedule:
    """The schedule a config names: ``lr`` takes constant|plateau, ``batch``
    constant|adaptive; a gain below ``min_delta`` counts as none."""
    choices: dict[str, type[Schedule]] = {"constant": Constant}
    choices["plateau" if what == "lr" else "adaptive"] = (
        PlateauLR if what == "lr" else AdaptiveBatch
    )
    if name not in choices:
        raise InvalidRequestError(f"{what}_schedule must be one of {', '.join(choices)}")
    chosen = choices[name]
    if chosen is Constant:
        return Constant()
    return PlateauLR(min_delta=min_delta) if what == "lr" else AdaptiveBatch(min_delta=min_delta)
