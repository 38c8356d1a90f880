"""``neurons serve-node``: one embedded neuron serving the Ollama REST API."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from neurons.config import Settings

__all__ = ["serve_node"]


def serve_node(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 11435,
    home: Annotated[
        Path | None, typer.Option(help="State directory (default $NEURONS_HOME or ~/.neurons).")
    ] = None,
    models: Annotated[
        Path | None, typer.Option(help="Ollama-layout models directory (default HOME/models).")
    ] = None,
    max_queue: Annotated[int | None, typer.Option(help="Pending requests before 503.")] = None,
    parallel: Annotated[
        int | None,
        typer.Option(help="Requests served at once, batched per model (default 4).", min=1),
    ] = None,
    no_default_models: Annotated[
        bool, typer.Option("--no-default-models", help="Do not import the offline defaults.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            help="Refuse every request without this token (Bearer or X-API-Key); "
            "NEURONS_NODE_TOKEN sets it without showing it in the process list."
        ),
    ] = None,
    mock: Annotated[
        bool,
        typer.Option(
            "--mock",
            help="Simulate the model: deterministic made-up tokens, no model file, no "
            "llama.cpp, Ollama's wire format (for demos, UI work and client tests). Serves "
            "mock:latest, mock-embed:latest and the default model from HOME/mock-models.",
        ),
    ] = False,
    mock_model: Annotated[
        list[str] | None,
        typer.Option(
            "--mock-model",
            help="With --mock: also simulate a generation model of this name (repeatable).",
        ),
    ] = None,
) -> None:
    """Serve the Ollama REST API on llama.cpp from a models directory."""
    from neurons.neuron.app import create_neuron_app
    from neurons.neuron.mock import BANNER, MockSpec

    overrides: dict[str, object] = {}
    if home is not None:
        overrides["home"] = home
    if models is not None:
        overrides["models_dir"] = models
    if max_queue is not None:
        overrides["max_queue"] = max_queue
    if parallel is not None:
        overrides["num_parallel"] = parallel
    if no_default_models:
        overrides["import_default_models"] = False
    if token is not None:
        overrides["node_token"] = token
    if mock_model and not mock:
        raise typer.BadParameter("--mock-model needs --mock", param_hint="--mock-model")
    settings = Settings(**overrides)  # type: ignore[arg-type]
    spec: MockSpec | None = None
    if mock:
        # A store of its own: mock models never land among the real ones, nor the reverse.
        if models is None:
            settings = settings.model_copy(update={"models_dir": settings.home / "mock-models"})
        spec = MockSpec(models=(settings.default_model, *(mock_model or [])))
        rule = "=" * len(BANNER)
        typer.echo(
            f"{rule}\n{BANNER}\n  models: {', '.join(spec.names)}\n"
            "  every answer is made up; no language model runs here\n"
            f"{rule}",
            err=True,
        )
    app = create_neuron_app(settings, mock=spec)
    from neurons.system import stop_on_sigterm

    guarded = " (node token required)" if settings.node_token is not None else ""
    mode = " MOCK MODE" if mock else ""
    typer.echo(
        f"neuron listening on http://{host}:{port}{guarded}{mode} "
        f"(models: {settings.resolved_models_dir})"
    )
    # SIGTERM ends like Ctrl-C: graceful shutdown (models unloaded), then exit code 0.
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, ws="none")
    except KeyboardInterrupt:
        pass
