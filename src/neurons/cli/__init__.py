"""The ``neurons`` command line (Typer): one module per command group."""

from __future__ import annotations
