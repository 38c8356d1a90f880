"""``neurons up``: control plane + one embedded neuron with the default model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neurons.config import Settings

__all__ = ["up"]


def up(
    host: Annotated[str | None, typer.Option(help="Control-plane address.")] = None,
    port: Annotated[int | None, typer.Option(help="Control-plane port (default 8000).")] = None,
    node_port: Annotated[
        int | None, typer.Option(help="Embedded neuron port (default 11435).")
    ] = None,
    home: Annotated[Path | None, typer.Option(help="State directory.")] = None,
    model: Annotated[str | None, typer.Option(help="Model to load (default smollm2:135m).")] = None,
) -> None:
    """Start the control plane and one embedded neuron; Ctrl-C stops both."""
    from neurons.system import run_up

    overrides: dict[str, object] = {
        key: value
        for key, value in {
            "host": host,
            "port": port,
            "node_port": node_port,
            "home": home,
            "default_model": model,
        }.items()
        if value is not None
    }
    run_up(Settings(**overrides))  # type: ignore[arg-type]
