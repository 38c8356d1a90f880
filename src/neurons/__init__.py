"""neurons: run local LLMs across one or many machines as one managed network."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
