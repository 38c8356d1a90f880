"""Learning runs end to end: every mode on digits, events, checkpoints and resuming."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neurons.errors import InvalidRequestError
from neurons.learning.runs import MODES, RunConfig, RunStopped, execute
from neurons.learning.training import abandoning
from tests.learning import one_torch_thread  # noqa: F401  (autouse)

# Small and quick: a 16-unit MLP, 10 steps per node per round.
QUICK: dict[str, Any] = {"rounds": 3, "nodes": 3, "local_steps": 10, "hidden_size": 16}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.append((kind, payload))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [payload for k, payload in self.events if k == kind]


def _weights(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "weights.npz") as saved:
        return {key: saved[key] for key in saved.files}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"dataset": "mnist"}, "dataset"),
        ({"mode": "fedsgd"}, "mode"),
        ({"partition": "dirichlet"}, "partition"),
        ({"model_type": "cnn"}, "model_type"),
        ({"nodes": 1}, "nodes"),
        ({"nodes": 33}, "nodes"),
        ({"rounds": 0}, "rounds"),
        ({"rounds": 1001}, "rounds"),
        ({"local_steps": 0}, "local_steps"),
        ({"batch_size": 5000}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"labelled_fraction": 0.0}, "labelled_fraction"),
        ({"labelled_fraction": 1.5}, "labelled_fraction"),
        ({"proximal_mu": -0.1}, "proximal_mu"),
        ({"hidden_size": -1}, "hidden_size"),
    ],
)
def test_run_config_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        RunConfig(**fields)


def test_run_config_json_round_trip() -> None:
    config = RunConfig(mode="distill", nodes=5, partition="skewed", labelled_fraction=0.1, seed=3)
    assert RunConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(InvalidRequestError, match="unknown learning run fields: epochs"):
        RunConfig.from_dict({"mode": "fedavg", "epochs": 3})
    settings = RunConfig(mode="fedprox", nodes=6, proximal_mu=0.4).federated()
    assert (settings.mode, settings.num_nodes, settings.proximal_mu) == ("fedprox", 6, 0.4)
    node = RunConfig(local_steps=7, hidden_size=9).node_config("n", seed=4)
    assert (node.teach_interval, node.hidden_size, node.seed) == (7, 9, 4)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_runs(mode: str) -> None:
    config = RunConfig(mode=mode, **QUICK)
    record = Recorder()
    summary = execute(config, record)
    rounds = record.of("round")
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["test_accuracy"] == rounds[-1]["test_accuracy"]
    assert summary["test_accuracy"] > 0.5  # digits is learned a good way in three rounds
    if mode in ("fedavg", "fedprox", "fedmedian", "fedtrimmedavg"):
        assert len(record.of("update")) == 3 * config.nodes
        assert {u["num_examples"] for u in record.of("update")} == {419}
    if mode == "distill":
        assert {"student_accuracy", "scratch_accuracy", "pairs", "knowledge"} <= set(summary)
    if mode == "ensemble":
        assert summary["ensemble_accuracy"] == summary["test_accuracy"]
        assert set(summary["members"]) == {"node-0", "node-1", "node-2"}
        assert set(summary["cross_validation"]["node-0"]) == set(summary["members"])
        assert summary["best_member_accuracy"] == max(summary["members"].values())


def test_federated_runs_on_skewed_partitions() -> None:
    record = Recorder()
    execute(RunConfig(mode="fedavg", partition="skewed", **QUICK), record)
    assert len(record.of("round")) == 3


def test_distilled_student_beats_its_scratch_twin() -> None:
    config = RunConfig(mode="distill", rounds=3, nodes=4, local_steps=20, hidden_size=32)
    record = Recorder()
    summary = execute(config, record)
    assert summary["student_accuracy"] > summary["scratch_accuracy"] + 0.05
    assert summary["teaching_events"] > 0 and record.of("taught")
    # node-0 holds all its labels, so it is the one that reaches the threshold and teaches
    assert ["node-0", "node-1"] in summary["pairs"]
    assert set(summary["students"]) == set(summary["scratch"]) == {"node-1", "node-2", "node-3"}


def test_stop_and_resume_federated_is_exact(tmp_path: Path) -> None:
    config = RunConfig(mode="fedmedian", **QUICK)
    whole = execute(config, Recorder(), checkpoint=tmp_path / "whole")
    stop = threading.Event()
    stop.set()
    first = Recorder()
    with pytest.raises(RunStopped, match="after round 1"):
        execute(config, first, checkpoint=tmp_path / "cut", stop=stop)
    assert [r["round"] for r in first.of("round")] == [1]
    second = Recorder()
    resumed = execute(config, second, checkpoint=tmp_path / "cut")
    assert second.of("resumed") == [{"round": 1}]
    assert [r["round"] for r in second.of("round")] == [2, 3]
    assert resumed == whole
    before, after = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert before.keys() == after.keys()
    for key in before:
        assert np.array_equal(before[key], after[key]), key


@pytest.mark.parametrize("mode", ["fedavg", "fedprox"])
def test_stop_and_resume_weighted_modes(tmp_path: Path, mode: str) -> None:
    """FedAvg/FedProx resume to the same model up to float rounding: Flower samples the
    nodes with ``random.sample``, so the replies (and the order of the weighted sum) vary
    from run to run, even between two uninterrupted runs."""
    config = RunConfig(mode=mode, **QUICK)
    whole = execute(config, Recorder(), checkpoint=tmp_path / "whole")
    stop = threading.Event()
    stop.set()
    with pytest.raises(RunStopped):
        execute(config, Recorder(), checkpoint=tmp_path / "cut", stop=stop)
    resumed = execute(config, Recorder(), checkpoint=tmp_path / "cut")
    assert resumed == pytest.approx(whole, abs=2 / 360)  # one test example either way at most
    before, after = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_allclose(before[key], after[key], rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["centralized", "distill", "ensemble"])
def test_stop_and_resume_other_modes_is_exact(tmp_path: Path, mode: str) -> None:
    config = RunConfig(mode=mode, **QUICK)
    whole = execute(config, Recorder(), checkpoint=tmp_path / "whole")
    stop = threading.Event()
    stop.set()
    with pytest.raises(RunStopped):
        execute(config, Recorder(), checkpoint=tmp_path / "cut", stop=stop)
    record = Recorder()
    assert execute(config, record, checkpoint=tmp_path / "cut") == whole
    assert [r["round"] for r in record.of("round")] == [2, 3]
    before, after = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[key], after[key]) for key in before)


@pytest.mark.parametrize("mode", ["fedavg", "centralized", "ensemble"])
def test_a_finished_run_returns_its_summary(tmp_path: Path, mode: str) -> None:
    config = RunConfig(mode=mode, **{**QUICK, "rounds": 2})
    summary = execute(config, Recorder(), checkpoint=tmp_path)
    record = Recorder()
    assert execute(config, record, checkpoint=tmp_path) == summary
    assert record.of("resumed") == [{"round": 2}] and not record.of("round")


def test_stop_on_the_last_round_finishes(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    config = RunConfig(mode="fedavg", **{**QUICK, "rounds": 1})
    summary = execute(config, Recorder(), checkpoint=tmp_path, stop=stop)
    assert "test_accuracy" in summary and (tmp_path / "state.json").exists()


@pytest.mark.parametrize("mode", ["fedmedian", "centralized", "distill"])
def test_abandon_drops_the_round_in_progress_and_keeps_the_last_checkpoint(
    tmp_path: Path, mode: str
) -> None:
    """A cancelled run stops within a training step (every mode trains through the same
    loop), not at the end of its round; resuming redoes that round from the checkpoint."""
    config = RunConfig(mode=mode, **QUICK)
    whole = execute(config, Recorder(), checkpoint=tmp_path / "whole")
    first, steps = Recorder(), itertools.count()

    def abandon() -> bool:  # five steps into round 2
        return bool(first.of("round")) and next(steps) >= 5

    with pytest.raises(RunStopped, match="dropped"):
        execute(config, first, checkpoint=tmp_path / "cut", abandon=abandon)
    assert next(steps) == 6  # asked once per step: it stopped at the first True
    assert abandoning.get() is None  # this thread's trainings are not abandoned any more
    assert [r["round"] for r in first.of("round")] == [1]
    state = json.loads((tmp_path / "cut" / "state.json").read_text(encoding="utf-8"))
    assert state["round"] == 1
    second = Recorder()
    assert execute(config, second, checkpoint=tmp_path / "cut") == whole
    assert [r["round"] for r in second.of("round")] == [2, 3]
