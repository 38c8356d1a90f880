"""The control plane's HTTP API (FastAPI)."""

from __future__ import annotations
