"""The HTTP edge of :mod:`neurons.metrics`: every request counted by its route's template and
timed until its response ends (streams included)."""

from __future__ import annotations

import time

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neurons.metrics.service import MetricsService

__all__ = ["OTHER_ROUTE", "RequestMetricsMiddleware"]

# Label for a request no route matched: raw paths as labels would grow without bound.
OTHER_ROUTE = "other"


class RequestMetricsMiddleware:
    """Counts each request by its route's template and times it until its response ends."""

    def __init__(self, app: ASGIApp, metrics: MetricsService) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before a response

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = _route_template(scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    """The matched route's path template: the router leaves the route in the scope."""
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", OTHER_ROUTE))
    # Refused before routing (no key, a body too large): find the route it was meant for.
    # Only refusals and unknown paths come here, so the walk costs nothing on the usual path.
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches(scope)
        if match is not Match.NONE:
            return str(getattr(candidate, "path", OTHER_ROUTE))
    return OTHER_ROUTE
