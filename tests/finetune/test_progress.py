"""Worker events → a job's phase, progress, logs, metrics and ETA; the event file tail."""

from __future__ import annotations

import json
from pathlib import Path

from neurons.finetune.jobs import overall_progress
from neurons.finetune.progress import CURVE_POINTS, EventTail, ProgressTracker, Update


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_events_fold_into_logs_metrics_progress_and_eta() -> None:
    clock = Clock()
    tracker = ProgressTracker(clock)
    update = Update()
    events: list[dict[str, object]] = [
        {"type": "phase", "phase": "training"},
        {"type": "eval", "when": "before", "eval_loss": 2.5},
        {"type": "step", "step": 1, "total_steps": 10, "loss": 2.4},
    ]
    for event in events:
        update.merge(tracker.feed(event))
    clock.now += 20.0
    update.merge(tracker.feed({"type": "step", "step": 5, "total_steps": 10, "loss": 1.0}))
    update.merge(tracker.feed({"type": "epoch", "epoch": 2, "epochs": 3, "loss": 0.3}))
    update.merge(tracker.feed({"type": "unknown-kind"}))
    assert update.phase == "training"
    assert update.progress == overall_progress("training", 0.5)
    assert update.eta_s is not None and 20.0 < update.eta_s < 30.0  # 5 s/step, 5 steps left
    assert "Epoch 2/3 completed. Loss: 0.3000" in update.logs
    assert "Evaluation loss before training: 2.5000" in update.logs
    assert update.metrics["eval_loss_before"] == 2.5 and update.metrics["step"] == 5


def test_done_and_error_are_remembered() -> None:
    tracker = ProgressTracker()
    tracker.feed({"type": "done", "adapter": "a.gguf", "metrics": {"eval_loss_after": 1.0}})
    assert tracker.done is not None and tracker.done["adapter"] == "a.gguf"
    update = tracker.feed({"type": "error", "message": "out of memory"})
    assert tracker.error == "out of memory" and update.logs == ["Error: out of memory"]
    assert not Update()


def test_tail_reads_only_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"type": "old"}) + "\n")
    tail = EventTail(path)  # starts at the end: the old attempt's events are skipped
    assert tail.read() == []
    with path.open("a") as handle:
        handle.write(json.dumps({"type": "a"}) + "\n" + '{"type": "b"')
    assert tail.read() == [{"type": "a"}]
    with path.open("a") as handle:
        handle.write("}\nnot json\n[1]\n")
    assert tail.read() == [{"type": "b"}]
    assert EventTail(tmp_path / "missing.jsonl").read() == []


def test_the_phase_the_job_is_in_is_not_logged_twice() -> None:
    tracker = ProgressTracker(phase="preparing")
    assert not tracker.feed({"type": "phase", "phase": "preparing"})
    assert tracker.feed({"type": "phase", "phase": "training"}).logs == ["Phase: training"]


def test_the_loss_curve_is_kept_bounded_and_goes_on_after_a_resume() -> None:
    tracker = ProgressTracker()
    update = Update()
    for step in range(1, 1001):
        update.merge(tracker.feed({"type": "step", "step": step, "total_steps": 1000,
                                   "loss": 3.0 - step / 1000}))  # fmt: skip
    curve = update.metrics["loss_curve"]
    assert CURVE_POINTS // 2 <= len(curve) <= CURVE_POINTS
    assert curve[-1] == [1000.0, 2.0]  # the newest point always stays
    steps = [point[0] for point in curve]
    assert steps == sorted(set(steps)) and steps[0] <= 10  # in order, the start still there
    # A resumed attempt starts from the job's curve; steps it repeats are not added twice.
    resumed = ProgressTracker(curve=[[1.0, 3.0], [2.0, 2.5]])
    again = resumed.feed({"type": "step", "step": 2, "total_steps": 4, "loss": 2.4})
    assert "loss_curve" not in again.metrics
    later = resumed.feed({"type": "step", "step": 3, "total_steps": 4, "loss": 2.0})
    assert later.metrics["loss_curve"] == [[1.0, 3.0], [2.0, 2.5], [3.0, 2.0]]
    # A step without a loss leaves the curve alone.
    assert "loss_curve" not in resumed.feed({"type": "step", "step": 4, "total_steps": 4}).metrics
