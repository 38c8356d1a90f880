"""The jobs runtime's conformance kit over optimization sessions: real trials on the test
session's embedded neuron, ``neurons optimize start`` in the foreground of its own process,
``neurons optimize cancel`` from another, control planes played here with short leases."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from neurons.config import Settings
from neurons.jobs import JobRuntime
from neurons.network.manager import NetworkManager
from neurons.neuron.process import NeuronProcess
from neurons.optimize.evalsets import EvalCase, EvalSet
from neurons.optimize.runner import OptimizationKind, session_leases
from neurons.optimize.sessions import SessionConfig
from neurons.store import Store, open_store
from tests.jobs import kit

LEASE_S = 2.0
# Two four-token answers a trial: many trials, each a fraction of a second on an idle
# machine, so a session runs for several seconds and stops soon after it is asked to.
CASES = EvalSet(
    "kit",
    "general",
    (
        EvalCase("sky", "What color is the sky on a clear day?", "blue", max_tokens=4),
        EvalCase("france", "What is the capital of France?", "Paris", max_tokens=4),
    ),
)
TRIALS = 24


class ControlPlane(JobRuntime):
    """A control plane's runtime over its own network, closed with it."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.network = NetworkManager(store, settings)
        super().__init__(
            OptimizationKind(store, settings, self.network), lease_s=LEASE_S, poll_s=0.1
        )

    async def aclose(self, deadline_s: float = 60.0) -> None:
        await super().aclose(deadline_s)
        await self.network.aclose()


@pytest.fixture
def made() -> list[str]:
    """The sessions the harness made, for checks beyond the kit's."""
    return []


@pytest.fixture
def harness(tmp_path: Path, neuron: NeuronProcess, made: list[str]) -> Iterator[kit.Harness]:
    home = tmp_path / "home"
    settings = Settings(home=home, ollama_base_url="", optimization_lease_s=LEASE_S)
    store = open_store(settings.resolved_database_url)
    store.nodes.upsert("n1", neuron.url, "embedded")

    def new_job() -> str:
        config = SessionConfig.create(
            model_name="smollm2:135m",
            objective="maximize_quality",
            strategy="random_search",
            parameters=["temperature", "top_k"],
            max_iterations=TRIALS,
            seed=7,
            similarity=False,
            eval_set=CASES,
        )
        made.append(store.optimization.create(config.to_dict()).session_id)
        return made[-1]

    cli = [sys.executable, "-m", "neurons", "optimize"]
    try:
        yield kit.Harness(
            new_job=new_job,
            runtime=lambda: ControlPlane(store, settings),
            run_argv=lambda job: [*cli, "start", job],
            cancel_argv=lambda job: [*cli, "cancel", job],
            lease=session_leases(store).lease,
            env={"NEURONS_HOME": str(home), "NEURONS_OLLAMA_BASE_URL": ""},
            stop_s=15.0,  # the prompt under way ends first: seconds on a loaded machine
            end_s=240.0,
            log=tmp_path / "optimize.log",
        )
    finally:
        store.close()


def test_cancel_from_another_process(harness: kit.Harness) -> None:
    kit.check_cancel_from_another_process(harness)


@pytest.mark.slow  # the adopted session runs its 24 trials: 6 s idle, 45 s on a loaded box
def test_kill_9_is_adopted_once_and_resumed(harness: kit.Harness, made: list[str]) -> None:
    kit.check_kill_9(harness)
    # Nothing about a session fails it here: it must end resumed, every trial counted.
    (session,) = made
    lease = harness.lease(session)
    assert (lease.status, lease.error) == ("completed", None), lease


def test_start_race(harness: kit.Harness) -> None:
    kit.check_start_race(harness)
