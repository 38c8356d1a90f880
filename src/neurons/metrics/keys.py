"""Per API key: requests by status, tokens spent and rate-limit refusals, recorded by the
access middleware (:mod:`neurons.api.access`) where it settles a request. Keys are labelled
by name (unique in the store, and never the secret); the master key and open access are not
keys and are not counted here."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["KeyMetrics"]


class KeyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "neurons:key_requests",
            "Requests admitted for an API key, by the status they ended with.",
            ["key", "status"],
            registry=registry,
        )
        self.tokens = Counter(
            "neurons:key_tokens",
            "Prompt and generated tokens an API key spent.",
            ["key"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "neurons:key_rate_limited",
            "Requests refused with 429 because an API key was past one of its limits.",
            ["key"],
            registry=registry,
        )

    def request(self, key: str, status: int, tokens: int) -> None:
        self.requests.labels(key, str(status)).inc()
        if tokens > 0:
            self.tokens.labels(key).inc(tokens)

    def refused(self, key: str) -> None:
        self.rate_limited.labels(key).inc()
