"""Worker events → a job's phase, progress, logs, metrics and ETA; the event file tail."""

from __future__ import annotations

import json
from pathlib import Path

from neurons.finetune.jobs import overall_progress
from neurons.finetune.progress import EventTail, ProgressTracker, Update


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
