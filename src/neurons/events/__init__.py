"""The event bus (seed 003's BackendIntegrationSystem, issue 20): node, model, job and
snapshot events in one ordered log, published by the services that cause them and read over
``/api/ai/events`` (JSON pages, or Server-Sent Events)."""

from __future__ import annotations

from neurons.events.bus import REDACTED, EventBus, Publish
from neurons.events.kinds import KINDS

__all__ = ["KINDS", "REDACTED", "EventBus", "Publish"]
