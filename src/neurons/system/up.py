"""``neurons up``: the control plane's components with an embedded neuron among them, served
by uvicorn. The components start in dependency order (store, ..., the neuron and its model,
the network, ..., the job services) before the port opens, and stop in reverse after it
closes, whatever stopped us (Ctrl-C, SIGTERM, an error)."""

from __future__ import annotations

import logging
import math
import signal
import socket
from collections.abc import Callable
from types import FrameType

import typer
import uvicorn
from fastapi import FastAPI

from neurons.api.routes_events import end_event_streams
from neurons.config import Settings
from neurons.neuron.mock import BANNER
from neurons.system.core import BackendIntegrationSystem
from neurons.system.neuron import EmbeddedNeuron
from neurons.system.signals import stop_on_sigterm

__all__ = ["MOCK_BANNER", "DrainingServer", "mock_settings", "run_up", "server_config"]

MOCK_BANNER = f"{BANNER}; not for real use"


def mock_settings(settings: Settings) -> Settings:
    """Mock mode's settings: state of its own (``HOME/mock``: database, snapshots, the
    neuron's models), and no real Ollama joining, so simulated answers never mix with real
    nodes or land in the real registry."""
    return settings.model_copy(
        update={
            "home": settings.home / "mock",
            "database_url": None,
            "snapshot_path": None,
            "fine_tuning_path": None,
            "ollama_base_url": None,
        }
    )


log = logging.getLogger(__name__)


def run_up(settings: Settings, *, mock: bool = False) -> None:
    """Serve until Ctrl-C or SIGTERM; a component that fails to start raises its
    :class:`~neurons.errors.ComponentError` here, after the others have stopped. With
    ``mock`` the neuron is simulated (give it :func:`mock_settings`), and that is said
    loudly."""
    # Imported here: the control plane's app imports this package's components.
    from neurons.api.app import create_control_plane

    # uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown; turning SIGTERM into
    # KeyboardInterrupt (like Ctrl-C) lets us end with exit code 0 instead of dying.
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    logging.getLogger().setLevel(settings.log_level.upper())
    settings.home.mkdir(parents=True, exist_ok=True)
    if mock:
        typer.echo(_loud(MOCK_BANNER))
    neuron = EmbeddedNeuron(settings, mock=mock, say=typer.echo)
    app = create_control_plane(settings, [neuron.spec], neurons=[neuron], mock=mock)
    server = _Server(
        server_config(app, settings),
        ready=lambda: typer.echo(_ready_message(settings, neuron, mock)),
        draining=lambda: typer.echo(
            f"stopping: no new connections; requests in flight get up to "
            f"{settings.drain_deadline_s:g}s, then the components stop in reverse order"
        ),
        # A signal before the port opens (say, during a long model load): the neuron's start
        # is cut short, the components already started stop, and we end as for a stop.
        interrupt=neuron.interrupt,
    )
    quiet = _QuietStartupFailure(app)
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(quiet)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        uvicorn_log.removeFilter(quiet)
    failure = _failure(app)
    if failure is not None and not server.interrupted:
        raise failure
    typer.echo("stopped before it was up; bye" if server.interrupted else "bye")


def server_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """How the control plane is served. On SIGTERM or Ctrl-C uvicorn closes the port, lets
    the requests in flight finish for up to ``drain_deadline_s`` (cancelling what is left
    then) and only then runs the lifespan's shutdown, which stops the components."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        ws="none",
        timeout_graceful_shutdown=math.ceil(settings.drain_deadline_s),  # whole seconds
    )


class DrainingServer(uvicorn.Server):
    """uvicorn's server, ending the control plane's event streams as a signal starts the
    drain (an SSE client never hangs up by itself)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            end_event_streams(self.config.app)
        super().handle_exit(sig, frame)


class _Server(DrainingServer):
    """uvicorn's server, saying when it listens (after every component started) and when a
    signal starts the drain, and passing a signal that arrives before it listens to
    ``interrupt``: uvicorn itself only looks at signals once the start-up is over."""

    def __init__(
        self,
        config: uvicorn.Config,
        ready: Callable[[], None],
        draining: Callable[[], None],
        interrupt: Callable[[], None],
    ) -> None:
        super().__init__(config)
        self._ready = ready
        self._draining = draining
        self._interrupt = interrupt
        self.interrupted = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._ready()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.should_exit
        super().handle_exit(sig, frame)
        if not self.started:
            if not self.interrupted:
                self.interrupted = True
                self._interrupt()
        elif first:
            self._draining()


class _QuietStartupFailure(logging.Filter):
    """Drops uvicorn's traceback of a failed lifespan when a component failed to start:
    ``run_up`` raises that failure, which the CLI prints as one line naming it."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__()
        self.app = app

    def filter(self, record: logging.LogRecord) -> bool:
        return _failure(self.app) is None


def _failure(app: FastAPI) -> Exception | None:
    system: BackendIntegrationSystem | None = getattr(app.state, "system", None)
    return None if system is None else system.failure


def _loud(text: str) -> str:
    rule = "=" * len(text)
    return f"{rule}\n{text}\n{rule}"


def _ready_message(settings: Settings, neuron: EmbeddedNeuron, mock: bool) -> str:
    base = f"http://{settings.host}:{settings.port}"
    model = f"model {settings.default_model}" + (" (simulated)" if mock else "")
    lines = [
        "neurons is up:",
        f"  control plane  {base}   (health: {base}/api/health)",
        f"  Ollama API     {base}/api/...  (e.g. OLLAMA_HOST={base} ollama-python)",
        f"  OpenAI API     {base}/v1/...   (base_url={base}/v1)",
        f"  network        {base}/api/ai/network/status  (neurons node add URL)",
        f"  model library  {base}/api/ai/ollama/models/library  (docs: {base}/docs)",
        f"  components     {base}/api/ai/system/components",
        f"  neuron-1       {neuron.url}   {model} (only the control plane holds its node token)",
        f"  state          {settings.home}",
        "Press Ctrl-C to stop.",
    ]
    if mock:
        lines = [_loud(MOCK_BANNER), *lines[:-1], _loud(MOCK_BANNER), lines[-1]]
    return "\n".join(lines)
