"""What the control plane's access middleware leaves in a request's state for the routes
behind it: who is calling (:func:`principal_of`) and the tokens the request spends
(:func:`usage_of`). Both are ``None`` where the middleware did not run (an app built without
it, ``/api/health``)."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from neurons.auth.service import Principal

__all__ = ["Usage", "check_model", "principal_of", "usage_of", "visible_models"]


@dataclass
class Usage:
    """Tokens one request spent, added up by whoever reads the node's answer. ``charge``
    passes them on at once (to the key's tokens per minute): a client may send its next
    request as soon as it has read the last token, before the response is quite over."""

    tokens: int = 0
    charge: Callable[[int], None] | None = None

    def add(self, prompt: int, completion: int) -> None:
        spent = max(0, prompt) + max(0, completion)
        self.tokens += spent
        if spent and self.charge is not None:
            self.charge(spent)


def principal_of(scope: MutableMapping[str, Any]) -> Principal | None:
    state = scope.get("state")
    return None if state is None else state.get("principal")


def usage_of(scope: MutableMapping[str, Any]) -> Usage | None:
    state = scope.get("state")
    return None if state is None else state.get("usage")


def check_model(scope: MutableMapping[str, Any], model: str) -> None:
    """PermissionDeniedError when the caller's key lists models and ``model`` is not one."""
    principal = principal_of(scope)
    if principal is not None and principal.models:
        principal.check_model(model)


def visible_models(
    scope: MutableMapping[str, Any], entries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The entries of a model listing (``/api/tags``, ``/api/ps``, ``/v1/models``) the
    caller's key may use: all of them for a key that lists no models."""
    principal = principal_of(scope)
    if principal is None or not principal.models:
        return entries
    return [
        e
        for e in entries
        if principal.allows_model(str(e.get("name") or e.get("model") or e.get("id") or ""))
    ]
