"""The convergence PNG, drawn from hand-built ``details`` answers (no neuron, no study)."""

from __future__ import annotations

import struct
import threading
from pathlib import Path
from typing import Any

import pytest

from neurons.errors import InvalidRequestError
from neurons.optimize.plot import plot_convergence

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def metrics(quality: float, tokens_per_s: float, total_ms: float = 500.0) -> dict[str, Any]:
    return {
        "quality": quality,
        "ttft_ms": 50.0,
        "total_ms": total_ms,
        "tokens_per_s": tokens_per_s,
        "memory_bytes": 192_734_272,
    }


def row(number: int, state: str = "complete", **extra: Any) -> dict[str, Any]:
    return {
        "trial": number,
        "state": state,
        "parameters": {"temperature": 0.1 * number, "top_k": 10 + number},
        "node": "n1",
        "baseline": number == 0,
        **extra,
    }


def details(objective: str, trials: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    history = []
    best = float("-inf")
    for t in trials:
        if t["state"] == "complete":
            best = max(best, t["overall_score"])
            history.append({"trial": t["trial"], "overall_score": t["overall_score"], "best": best})
    return {
        "session_id": "7",
        "model_name": "smollm2:135m",
        "objective": objective,
        "strategy": "bayesian_optimization",
        "status": "completed",
        "trials": trials,
        "convergence": history,
        "best": None,
        **extra,
    }


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def single_objective() -> dict[str, Any]:
    trials = [
        row(0, overall_score=0.5, metrics=metrics(0.6, 80)),
        row(1, overall_score=0.62, metrics=metrics(0.6, 90, 300)),
        row(2, "pruned", pruned_reason="does not fit: needs 9 GiB"),
        row(3, overall_score=0.41, metrics=metrics(0.5, 70, 700)),
        row(4, "fail"),
        row(5, overall_score=0.7, metrics=metrics(0.6, 95, 250)),
    ]
    return details("minimize_latency", trials, best={**trials[5], "trial": 5})


def balanced() -> dict[str, Any]:
    trials = [
        row(0, overall_score=0.55, metrics=metrics(0.57, 60)),
        row(1, overall_score=0.70, metrics=metrics(0.60, 75)),
        row(2, overall_score=0.36, metrics=metrics(0.10, 120)),
        row(3, "pruned"),
        row(4, overall_score=0.62, metrics=metrics(0.70, 30)),
        row(5, overall_score=0.30, metrics=metrics(0.20, 40)),
    ]
    front = [trials[4], trials[1], trials[2]]
    best = {**trials[1], "pareto_front": front}
    return details("balance_quality_speed", trials, best=best)


def test_single_objective_png(tmp_path: Path) -> None:
    out = plot_convergence(single_objective(), tmp_path / "deep" / "er" / "session-7.png")
    assert out == tmp_path / "deep" / "er" / "session-7.png"
    assert png_size(out) == (800, 500)
    assert out.stat().st_size > 10_000  # axes, points, a line and text: not a blank canvas


def test_balance_gets_a_pareto_panel(tmp_path: Path) -> None:
    one = plot_convergence(single_objective(), tmp_path / "one.png")
    two = plot_convergence(balanced(), tmp_path / "two.png")
    assert png_size(two) == (1300, 500)  # the second panel widens the figure
    assert two.stat().st_size > one.stat().st_size


def test_drawing_is_deterministic_and_thread_safe(tmp_path: Path) -> None:
    """No pyplot state: figures drawn at once in threads come out as drawn alone."""
    alone = plot_convergence(balanced(), tmp_path / "alone.png").read_bytes()
    errors: list[BaseException] = []

    def draw(i: int) -> None:
        try:
            plot_convergence(balanced(), tmp_path / f"t{i}.png")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all((tmp_path / f"t{i}.png").read_bytes() == alone for i in range(4))


@pytest.mark.parametrize("objective", ["maximize_quality", "balance_quality_speed"])
def test_no_completed_trial_still_draws(tmp_path: Path, objective: str) -> None:
    empty = details(objective, [])
    assert png_size(plot_convergence(empty, tmp_path / "empty.png"))[1] == 500
    pruned_only = details(objective, [row(0, "fail"), row(1, "pruned")])
    assert plot_convergence(pruned_only, tmp_path / "pruned.png").stat().st_size > 5_000


def test_uppercase_suffix_is_a_png(tmp_path: Path) -> None:
    assert png_size(plot_convergence(single_objective(), tmp_path / "PLOT.PNG"))[0] == 800


@pytest.mark.parametrize("name", ["plot.svg", "plot", "plot.png.txt", "png"])
def test_refuses_a_path_not_ending_in_png(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidRequestError, match=r"ending in \.png"):
        plot_convergence(single_objective(), tmp_path / "sub" / name)
    assert not (tmp_path / "sub").exists()  # refused before anything was made
