"""``neurons up``: store → neuron subprocess → default model → control plane. Shutdown runs
in reverse whatever stopped us (Ctrl-C, SIGTERM, an error)."""

from __future__ import annotations

import logging
import secrets
import signal

import httpx
import typer
import uvicorn

from neurons.api.app import NodeSpec, create_control_plane
from neurons.config import Settings
from neurons.errors import NodeError
from neurons.neuron.process import NeuronProcess
from neurons.system.signals import stop_on_sigterm

__all__ = ["run_up"]

log = logging.getLogger(__name__)


def run_up(settings: Settings) -> None:
    # uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown; turning SIGTERM into
    # KeyboardInterrupt (like Ctrl-C) lets the neuron be stopped below instead of dying with us.
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    settings.home.mkdir(parents=True, exist_ok=True)
    neuron = NeuronProcess(
        home=settings.home,
        host=settings.node_host,
        port=settings.node_port,
        log_path=settings.home / "neuron.log",
        # A fresh token each start: only this control plane may call its neuron.
        token=secrets.token_urlsafe(32),
    )
    typer.echo(f"starting embedded neuron on {neuron.url} (log: {neuron.log_path})")
    neuron.start()
    try:
        typer.echo(f"loading {settings.default_model} ...")
        _preload(neuron.url, settings.default_model, neuron.headers)
        spec = NodeSpec("neuron-1", neuron.url, "embedded", token=neuron.token)
        app = create_control_plane(settings, [spec])
        base = f"http://{settings.host}:{settings.port}"
        typer.echo(
            "\n".join(
                [
                    "neurons is up:",
                    f"  control plane  {base}   (health: {base}/api/health)",
                    f"  Ollama API     {base}/api/...  (e.g. OLLAMA_HOST={base} ollama-python)",
                    f"  OpenAI API     {base}/v1/...   (base_url={base}/v1)",
                    f"  network        {base}/api/ai/network/status  (neurons node add URL)",
                    f"  model library  {base}/api/ai/ollama/models/library  (docs: {base}/docs)",
                    f"  neuron-1       {neuron.url}   model {settings.default_model} "
                    "(only the control plane holds its node token)",
                    f"  state          {settings.home}",
                    "Press Ctrl-C to stop.",
                ]
            )
        )
        server = uvicorn.Server(
            uvicorn.Config(
                app, host=settings.host, port=settings.port, log_level="warning", ws="none"
            )
        )
        try:
            server.run()
        except KeyboardInterrupt:
            pass
    finally:
        code = neuron.stop()
        typer.echo(f"embedded neuron stopped (exit {code}); bye")


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
