"""Distributed optimization: one session's trials by 1 worker on 1 node, then by 2 workers on
2 nodes.

One run, both measurements on the same two embedded neurons (``neurons serve-node`` on free
loopback ports), through the project's own code paths:

* **1 worker**: a session whose runner (worker ``main``, in this process, on the jobs runtime as
  ``neurons optimize start`` runs it) evaluates every trial on node A;
* **2 workers**: the same session again (same budget, options and sampler seed), its runner on
  node A and ``python -m neurons optimize worker ID --node B`` in its own process on node B,
  sharing the study through the SQLite database (Optuna's distributed mode).

Each kind of session runs ``--repeat`` times, in the order 1, 2, 2, 1, ... (a load that
drifts weighs on both alike); the ratio is of their mean times. Time is the session's wall
time, from ``start`` to ``completed`` (the worker process's start-up included: it is launched
when the session starts), for ``--trials`` trials of ``smollm2:135m``, objective
``maximize_quality``, random search over temperature and top_k (no option that reloads the
model), ``--eval-limit`` prompts of the packaged general set per trial, scored by
token F1. Both nodes answer one request before the clock starts, so no model load is timed.

The **ceiling** is measured first, without Optuna or the database: a trial's prompts (the
same cases, through the same ``TrialEvaluator``, Ollama's default options) on node A alone, then
on A and B at the same time, ``--rounds`` times (medians). Two nodes can at best halve the time
of one, less what they slow each other down: ``ceiling = both at once / (2 x A alone)``.

Each node stands for a one-core machine: its process (every thread) is pinned to its own core
and the model it serves is ``smollm2:135m`` with ``PARAMETER num_thread 1``
(``--no-pin`` leaves both nodes on every core with llama.cpp's default threads: then two
nodes share the machine's cores and cannot be faster than one). The runner and worker
processes themselves are not pinned: scoring, sampling and the database run wherever the
kernel puts them, beside the generations. The target is 2 workers in at most 0.6x the time
of 1.

    .venv/bin/python benchmarks/optimizer_workers.py [--trials 24] [--eval-limit 4]
        [--seed 7] [--rounds 3] [--repeat 2] [--no-pin]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import optuna

from neurons.config import Settings
from neurons.network.manager import NetworkManager
from neurons.neuron.process import NeuronProcess
from neurons.optimize.budget import SURPLUS, worker_of
from neurons.optimize.evalsets import builtin_set
from neurons.optimize.service import OptimizationService, load_study
from neurons.optimize.sessions import SessionConfig
from neurons.optimize.trials import TrialEvaluator
from neurons.store import Store, open_store

BASE = "smollm2:135m"
ONE_CORE = "smollm2-1core:latest"  # BASE with num_thread 1, created on both nodes
TARGET = 0.6
ONE, TWO = "1 worker, 1 node", "2 workers, 2 nodes"


@dataclass(frozen=True)
class Run:
    label: str
    seconds: float
    trials: int
    by_worker: dict[str, int]
    surplus: int
    load: float  # the 1-minute load average when it ended: other work on the machine
    trial_s: float  # a trial's mean duration, start to end
    prompts_s: float  # of which its prompts' generations, as the runner timed them
    joined_s: float | None  # the worker's first trial started this long after the first


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(process: NeuronProcess, core: int) -> None:
    """Every thread of the node on ``core`` (threads started later inherit it)."""
    assert process.process is not None
    for task in Path(f"/proc/{process.process.pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {core})


def prepare(node: NeuronProcess, model: str, one_core: bool) -> None:
    """The session's model on the node (``num_thread 1`` for a one-core machine), loaded."""
    if one_core:
        body = {"model": model, "from": BASE, "parameters": {"num_thread": 1}, "stream": False}
        httpx.post(node.url + "/api/create", json=body, timeout=120).raise_for_status()
    warm = {"model": model, "prompt": "Hello", "stream": False, "options": {"num_predict": 4}}
    httpx.post(node.url + "/api/generate", json=warm, timeout=300).raise_for_status()


def ceiling(urls: list[str], model: str, eval_limit: int, rounds: int) -> tuple[float, float]:
    """Medians of: a trial's prompts on the first node alone, and on every node at once (the
    slowest node's time); seconds."""
    cases = builtin_set("general").take(eval_limit).cases
    options = {"temperature": 0.8, "top_k": 40, "seed": 42}

    async def prompts(http: httpx.AsyncClient, url: str) -> None:
        evaluator = TrialEvaluator(http, url, model)
        for case in cases:
            await evaluator.run_case(case, options)

    async def timed_on(targets: list[str]) -> float:
        async with httpx.AsyncClient(timeout=300) as http:
            started = time.perf_counter()
            await asyncio.gather(*(prompts(http, url) for url in targets))
            return time.perf_counter() - started

    alone, together = [], []
    for _ in range(rounds):
        alone.append(asyncio.run(timed_on(urls[:1])))
        together.append(asyncio.run(timed_on(urls)))
    return statistics.median(alone), statistics.median(together)


def session(store: Store, model: str, args: argparse.Namespace) -> str:
    config = SessionConfig.create(
        model_name=model,
        objective="maximize_quality",
        strategy="random_search",
        parameters=["temperature", "top_k"],
        max_iterations=args.trials,
        eval_limit=args.eval_limit,
        seed=args.seed,
        similarity=False,
        node="A",
    )
    return store.optimization.create(config.to_dict()).session_id


def timed(
    store: Store, settings: Settings, session_id: str, worker_node: str | None, home: Path
) -> float:
    """The session's wall time from start to its end, with a worker process on
    ``worker_node`` when one is named."""

    async def main() -> float:
        network = NetworkManager(store, settings)
        service = OptimizationService(store, settings, network)
        worker: subprocess.Popen[str] | None = None
        try:
            started = time.perf_counter()
            await service.start(session_id)
            if worker_node is not None:
                env = {**os.environ, "NEURONS_HOME": str(home), "NEURONS_OLLAMA_BASE_URL": ""}
                worker = subprocess.Popen(
                    [sys.executable, "-m", "neurons", "optimize", "worker", session_id,
                     "--node", worker_node, "--worker-id", "w2", "--json"],
                    env=env, stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
            record = await service.wait(session_id)
            seconds = time.perf_counter() - started
            assert record.status == "completed", (record.status, record.error)
            if worker is not None:
                out, _ = await asyncio.to_thread(worker.communicate, timeout=120)
                report = json.loads(out)
                assert worker.returncode == 0 and report["success"], out
            return seconds
        finally:
            if worker is not None and worker.poll() is None:
                worker.kill()
            await service.aclose()
            await network.aclose()

    return asyncio.run(main())


def summary(settings: Settings, store: Store, session_id: str, label: str, seconds: float) -> Run:
    record = store.optimization.get(session_id)
    study = load_study(settings, record)
    assert study is not None
    kept = [t for t in study.trials if not t.user_attrs.get(SURPLUS)]
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in kept
        if t.datetime_complete and t.datetime_start
    ]
    prompts = [sum(case["total_ms"] for case in t.user_attrs.get("cases", ())) / 1000 for t in kept]
    starts = {
        worker: min(t.datetime_start for t in kept if worker_of(t) == worker and t.datetime_start)
        for worker in {worker_of(t) for t in kept}
    }
    joined = (
        (starts["w2"] - starts["main"]).total_seconds()
        if "w2" in starts and "main" in starts
        else None
    )
    return Run(
        label,
        seconds,
        record.current_iteration,
        dict(Counter(worker_of(t) for t in kept)),
        len(study.trials) - len(kept),
        os.getloadavg()[0],
        sum(durations) / len(durations),
        sum(prompts) / len(prompts),
        joined,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--eval-limit", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of the ceiling.")
    parser.add_argument("--repeat", type=int, default=2, help="Sessions of each kind.")
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    args = parser.parse_args()
    model = ONE_CORE if args.pin else BASE
    load = os.getloadavg()  # other work on the machine skews both runs
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = work / "control"
        settings = Settings(home=home, ollama_base_url="", max_optimization_iterations=1000)
        nodes = {
            name: NeuronProcess(
                work / name, port=free_port(), log_path=work / f"{name}.log"
            ).start()
            for name in ("A", "B")
        }
        store = open_store(settings.resolved_database_url)
        try:
            for core, (name, node) in enumerate(nodes.items()):
                if args.pin:
                    pin(node, core)
                prepare(node, model, args.pin)
                if args.pin:
                    pin(node, core)  # threads the model load started
                store.nodes.upsert(name, node.url, "embedded")
            urls = [node.url for node in nodes.values()]
            bounds = ceiling(urls, model, args.eval_limit, args.rounds)
            runs = []
            pair = [(ONE, None), (TWO, "B")]
            for turn in range(args.repeat):  # ABBA...: load that drifts hits both alike
                for label, worker_node in pair if turn % 2 == 0 else pair[::-1]:
                    session_id = session(store, model, args)
                    seconds = timed(store, settings, session_id, worker_node, home)
                    runs.append(summary(settings, store, session_id, label, seconds))
                    print(f"{label}: {seconds:.1f} s", file=sys.stderr)
        finally:
            store.close()
            for node in nodes.values():
                node.stop()

    report(runs, bounds, args, load)


def report(
    runs: list[Run],
    bounds: tuple[float, float],
    args: argparse.Namespace,
    load: tuple[float, float, float],
) -> None:
    one = statistics.mean(run.seconds for run in runs if run.label == ONE)
    two = statistics.mean(run.seconds for run in runs if run.label == TWO)
    where = "each node pinned to its own core, num_thread 1" if args.pin else "nodes unpinned"
    print()
    print(
        f"{args.trials} trials of {BASE}, {args.eval_limit} prompts each, random search; "
        f"{os.cpu_count()} CPU cores, {where}; load average before: "
        f"{' '.join(f'{x:.1f}' for x in load)}"
    )
    print(
        "| run | trials | by worker | surplus | worker joined | one trial (mean) "
        "| its prompts | session | vs 1 worker (mean) | load after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        workers = ", ".join(f"{w} {n}" for w, n in sorted(run.by_worker.items()))
        joined = "-" if run.joined_s is None else f"+{run.joined_s:.1f} s"
        print(
            f"| {run.label} | {run.trials} | {workers} | {run.surplus} | {joined} | "
            f"{run.trial_s:.2f} s | {run.prompts_s:.2f} s | {run.seconds:.1f} s | "
            f"{run.seconds / one:.2f}x | {run.load:.1f} |"
        )
    alone, together = bounds
    best = together / (2 * alone)
    print(
        f"\nceiling: a trial's prompts take {alone:.2f} s on A alone, {together:.2f} s on A "
        f"and B at once (median of {args.rounds}): 2 nodes at best {best:.2f}x of 1"
    )
    ratio = two / one
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(
        f"2 workers / 1 worker = {two:.1f} s / {one:.1f} s = {ratio:.2f} (means of "
        f"{args.repeat}; target <= {TARGET}): {verdict}"
    )


if __name__ == "__main__":
    main()
