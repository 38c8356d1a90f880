"""From the training worker's events to what a job shows: phase, progress, logs, metrics, ETA.

The worker appends one JSON object per line to ``events.jsonl`` (see
:mod:`neurons.finetune.worker`); :class:`EventTail` reads the lines added since it last looked
(a line still being written waits for its newline), and :class:`ProgressTracker` folds each
event into the job's view. Kept apart from the service so the mapping is a pure function of
the events, tested without a subprocess.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurons.finetune.jobs import overall_progress

__all__ = ["CURVE_POINTS", "EventTail", "ProgressTracker", "Update"]

# The loss curve kept in a job's metrics (``loss_curve``: ``[step, loss]`` pairs, for the
# dashboard): past this many points every other one is dropped, so a long run keeps its whole
# shape in a row of bounded size.
CURVE_POINTS = 300


class EventTail:
    """The complete JSON lines appended to ``path`` since the last :meth:`read`."""

    def __init__(self, path: Path, *, offset: int | None = None) -> None:
        self.path = path
        # Start at the end: events of an earlier attempt were already folded in.
        self.offset = (
            offset if offset is not None else (path.stat().st_size if path.exists() else 0)
        )

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        events = []
        for line in data[: end + 1].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a torn line from a killed worker; the next attempt rewrites state
            if isinstance(event, dict):
                events.append(event)
        return events


@dataclass
class Update:
    """What changed: the job row's new values (None: unchanged) and new log lines."""

    phase: str | None = None
    progress: float | None = None
    eta_s: float | None = None
    logs: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: Update) -> None:
        self.phase = other.phase or self.phase
        self.progress = other.progress if other.progress is not None else self.progress
        self.eta_s = other.eta_s if other.eta_s is not None else self.eta_s
        self.logs.extend(other.logs)
        self.metrics.update(other.metrics)

    def __bool__(self) -> bool:
        return bool(
            self.phase or self.progress is not None or self.eta_s is not None or self.logs
        ) or bool(self.metrics)


class ProgressTracker:
    """Folds worker events into :class:`Update` s. The ETA is the remaining optimizer steps at
    the mean step time of this attempt (steps done before a resume do not skew it), plus the
    usual share of the phases still to come."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        phase: str | None = None,
        curve: Sequence[Sequence[float]] | None = None,
    ) -> None:
        self._clock = clock
        # An earlier attempt's curve goes on: a resumed job's steps continue it.
        self.curve: list[list[float]] = [
            [float(p[0]), float(p[1])] for p in curve or () if len(p) == 2
        ]
        self._first_step: tuple[int, float] | None = None  # (step, time) at this attempt's start
        self.phase = phase  # the phase the job is in already (not logged again)
        self.done: dict[str, Any] | None = None
        self.error: str | None = None

    @property
    def stepped(self) -> bool:
        """Whether this attempt took an optimizer step: before one, a stopping worker has
        nothing to checkpoint that the job lacks."""
        return self._first_step is not None

    def feed(self, event: Mapping[str, Any]) -> Update:
        kind = event.get("type")
        handler = getattr(self, f"_on_{kind}", None)
        return handler(event) if handler is not None else Update()

    def _on_phase(self, event: Mapping[str, Any]) -> Update:
        phase = str(event.get("phase"))
        if phase == self.phase:
            return Update()
        self.phase = phase
        try:
            progress = overall_progress(phase)
        except ValueError:
            return Update()
        return Update(phase=phase, progress=progress, logs=[f"Phase: {phase}"])

    def _on_step(self, event: Mapping[str, Any]) -> Update:
        step, total = int(event.get("step", 0)), max(1, int(event.get("total_steps", 1)))
        now = self._clock()
        if self._first_step is None:
            self._first_step = (step, now)
        loss = event.get("loss")
        update = Update(
            phase="training" if self.phase != "training" else None,
            progress=overall_progress("training", step / total),
            metrics={"step": step, "total_steps": total, "loss": loss},
        )
        if isinstance(loss, int | float) and (not self.curve or step > self.curve[-1][0]):
            self.curve.append([float(step), float(loss)])
            if len(self.curve) > CURVE_POINTS:  # thin the middle, keep the newest point
                self.curve = self.curve[-1::-2][::-1]
            update.metrics["loss_curve"] = [list(p) for p in self.curve]
        self.phase = "training"
        first, started = self._first_step
        if step > first:
            per_step = (now - started) / (step - first)
            # Evaluating, exporting and deploying take about this share of a training step
            # budget on CPU; small next to training, but never nothing.
            update.eta_s = per_step * (total - step) * 1.1
        return update

    def _on_epoch(self, event: Mapping[str, Any]) -> Update:
        epoch, epochs = event.get("epoch"), event.get("epochs")
        loss = event.get("loss")
        line = f"Epoch {epoch}/{epochs} completed. Loss: {_fmt(loss)}"
        if event.get("eval_loss") is not None:
            line += f", Eval loss: {_fmt(event['eval_loss'])}"
        return Update(logs=[line], metrics={"epoch": epoch, "epochs": epochs, "train_loss": loss})

    def _on_eval(self, event: Mapping[str, Any]) -> Update:
        when = str(event.get("when"))
        loss = event.get("eval_loss")
        text = "before training" if when == "before" else "after training"
        return Update(
            logs=[f"Evaluation loss {text}: {_fmt(loss)}"], metrics={f"eval_loss_{when}": loss}
        )

    def _on_checkpoint(self, event: Mapping[str, Any]) -> Update:
        return Update(metrics={"checkpoint_step": event.get("step")})

    def _on_resumed(self, event: Mapping[str, Any]) -> Update:
        return Update(logs=[f"Resumed from the checkpoint at step {event.get('step')}"])

    def _on_stopped(self, event: Mapping[str, Any]) -> Update:
        return Update(logs=[f"Training stopped at step {event.get('step')} (checkpoint saved)"])

    def _on_done(self, event: Mapping[str, Any]) -> Update:
        self.done = dict(event)
        metrics = dict(event.get("metrics") or {})
        return Update(
            progress=overall_progress("exporting", 1.0),
            metrics=metrics,
            logs=["Training finished; adapter exported"],
        )

    def _on_error(self, event: Mapping[str, Any]) -> Update:
        self.error = str(event.get("message") or "the training worker failed")
        return Update(logs=[f"Error: {self.error}"])

    def _on_log(self, event: Mapping[str, Any]) -> Update:
        return Update(logs=[str(event.get("message"))])


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else str(value)
