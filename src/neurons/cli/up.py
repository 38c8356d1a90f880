"""``neurons up``: control plane + one embedded neuron with the default model; ``neurons serve``:
the control plane alone, for registered nodes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from neurons.config import Settings

__all__ = ["check_exposure", "load_settings", "serve", "up"]

InsecureFlag = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Serve without API keys on an address other than loopback (a trusted network).",
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A YAML file with seed 003's sections (system, persistence, database, model, "
        "distributed_learning, learning_system); flags and environment variables override it.",
    ),
]


def load_settings(config: Path | None, flags: dict[str, object]) -> Settings:
    """Settings from the flags given, the environment, the config file (if any) and the
    defaults, in that order; says which file it read and what it did not take from it."""
    if config is None:
        return Settings(**flags)  # type: ignore[arg-type]
    from neurons.system.config_file import load_config

    loaded = load_config(config)
    for line in loaded.report(flags):
        typer.echo(line)
    return loaded.settings(**flags)


def check_exposure(settings: Settings) -> None:
    """Refuse, before anything starts, to serve without keys beyond loopback (ConfigError,
    which the CLI prints as one clear line)."""
    from neurons.auth.service import AuthService
    from neurons.store import open_store

    store = open_store(settings.resolved_database_url)
    try:
        AuthService(store, settings.resolved_master_key).check_exposure(
            settings.host, settings.insecure
        )
    finally:
        store.close()


def up(
    host: Annotated[str | None, typer.Option(help="Control-plane address.")] = None,
    port: Annotated[int | None, typer.Option(help="Control-plane port (default 8000).")] = None,
    node_port: Annotated[
        int | None, typer.Option(help="Embedded neuron port (default 11435).")
    ] = None,
    home: Annotated[Path | None, typer.Option(help="State directory.")] = None,
    model: Annotated[str | None, typer.Option(help="Model to load (default smollm2:135m).")] = None,
    insecure: InsecureFlag = False,
    config: ConfigOption = None,
    mock: Annotated[
        bool,
        typer.Option(
            "--mock",
            help="Simulate the neuron: no model, deterministic made-up tokens, Ollama's wire "
            "format (demos, UI work, client tests). State of its own under HOME/mock; no real "
            "Ollama joins. Not for real use.",
        ),
    ] = False,
) -> None:
    """Start the control plane and one embedded neuron; Ctrl-C stops both."""
    from neurons.system.up import mock_settings, run_up

    overrides: dict[str, object] = {
        key: value
        for key, value in {
            "host": host,
            "port": port,
            "node_port": node_port,
            "home": home,
            "default_model": model,
            "insecure": insecure or None,
        }.items()
        if value is not None
    }
    settings = load_settings(config, overrides)
    if mock:
        settings = mock_settings(settings)
    check_exposure(settings)
    run_up(settings, mock=mock)


def serve(
    host: Annotated[str | None, typer.Option(help="Control-plane address.")] = None,
    port: Annotated[int | None, typer.Option(help="Control-plane port (default 8000).")] = None,
    home: Annotated[Path | None, typer.Option(help="State directory.")] = None,
    insecure: InsecureFlag = False,
    config: ConfigOption = None,
) -> None:
    """Start only the control plane and gateway, for the nodes in the registry
    (``neurons node add``); no embedded neuron is started."""

    from neurons.api.app import create_control_plane
    from neurons.system.up import DrainingServer, server_config

    overrides: dict[str, object] = {
        k: v
        for k, v in {"host": host, "port": port, "home": home, "insecure": insecure}.items()
        if v
    }
    settings = load_settings(config, overrides)
    settings.home.mkdir(parents=True, exist_ok=True)
    logging.getLogger().setLevel(settings.log_level.upper())
    check_exposure(settings)
    app = create_control_plane(settings, [])
    base = f"http://{settings.host}:{settings.port}"
    typer.echo(f"gateway on {base} (Ollama API {base}/api, OpenAI API {base}/v1); Ctrl-C stops")
    # SIGTERM or Ctrl-C: the port closes, requests in flight get drain_deadline_s to finish.
    DrainingServer(server_config(app, settings)).run()
