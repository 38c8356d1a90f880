"""``neurons up``'s embedded neuron as a component: a ``neurons serve-node`` child process
with the default model loaded (kept loaded: Ollama's ``keep_alive`` -1), or, in mock mode,
``serve-node --mock`` simulating it (nothing to load)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
from collections.abc import Callable
from typing import Any

import httpx
import psutil

from neurons.config import Settings
from neurons.errors import NodeError
from neurons.neuron.process import NeuronProcess
from neurons.system.components import NodeSpec
from neurons.system.core import Component

__all__ = ["EmbeddedNeuron"]

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 300.0


class EmbeddedNeuron(Component):
    """One neuron in a child process, reachable only with a token made fresh at each start
    (only this control plane holds it, and not in the child's argv). ``say`` tells the person
    at the terminal what is happening (a start can take a while). With ``mock`` the neuron
    simulates its models (``serve-node --mock``), the default model among them."""

    name = "neuron"

    def __init__(
        self,
        settings: Settings,
        *,
        node_name: str = "neuron-1",
        mock: bool = False,
        say: Callable[[str], None] = log.info,
    ) -> None:
        self.settings = settings
        self.mock = mock
        self.node_name = node_name
        self.say = say
        self.process = NeuronProcess(
            home=settings.home,
            host=settings.node_host,
            port=settings.node_port,
            log_path=settings.home / "neuron.log",
            extra_args=["--mock", "--mock-model", settings.default_model] if mock else [],
            token=secrets.token_urlsafe(32),
            # Ctrl-C reaches the control plane only: the neuron keeps serving the requests
            # being drained and is stopped after them, as a component.
            own_session=True,
        )
        self.exit_code: int | None = None
        self.interrupted = False

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def spec(self) -> NodeSpec:
        """How the control plane registers this neuron."""
        return NodeSpec(self.node_name, self.url, "embedded", token=self.process.token)

    async def start(self) -> None:
        process = self.process
        self.say(f"starting embedded neuron on {process.url} (log: {process.log_path})")
        # Spawned on the event loop's thread, which outlives the child (see spawn).
        process.spawn()
        try:
            await asyncio.to_thread(process.wait_ready, READY_TIMEOUT_S)
            if not self.mock:  # a simulated model has nothing to load
                model = self.settings.default_model
                self.say(f"loading {model} ...")
                await asyncio.to_thread(_preload, process.url, model, process.headers)
        except BaseException as exc:
            await asyncio.to_thread(process.stop)  # a failed start leaves nothing running
            if self.interrupted:
                raise NodeError("interrupted while starting") from exc
            raise

    def interrupt(self) -> None:
        """Cut a start short (from a signal handler: it only sends a signal). The child
        exits, so the start fails at once instead of after the model load."""
        self.interrupted = True
        child = self.process.process
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    async def stop(self) -> None:
        self.exit_code = await asyncio.to_thread(self.process.stop)
        self.say(f"embedded neuron stopped (exit {self.exit_code})")

    def health(self) -> dict[str, Any]:
        child = self.process.process
        alive = child is not None and child.poll() is None
        return {"ok": alive, "url": self.url, "mock": self.mock}

    def metrics(self) -> dict[str, Any]:
        child = self.process.process
        metrics: dict[str, Any] = {
            "node": self.node_name,
            "url": self.url,
            "model": self.settings.default_model,
            "mock": self.mock,
            "pid": None if child is None else child.pid,
            "exit_code": self.exit_code,
        }
        if child is not None and child.poll() is None:
            try:
                metrics["rss_bytes"] = psutil.Process(child.pid).memory_info().rss
            except psutil.Error:
                pass  # it just exited
        return metrics


def _preload(url: str, model: str, headers: dict[str, str]) -> None:
    """Load the default model and keep it loaded (Ollama's keep_alive -1)."""
    try:
        response = httpx.post(
            url + "/api/generate",
            headers=headers,
            json={"model": model, "prompt": "", "keep_alive": -1, "stream": False},
            timeout=300.0,
        )
    except httpx.HTTPError as exc:
        raise NodeError(f"could not load {model}: {exc}") from exc
    if response.status_code != 200:
        raise NodeError(f"could not load {model}: {response.text}")
