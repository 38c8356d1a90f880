"""The four scopes, each including the ones before it, and the scope each route needs.

    read        GETs: listings, status, docs
    inference   generate, chat, embed, show, tags, ps, and the OpenAI API (/v1/*);
                language memory's writes (/api/ai/memory)
    manage      everything else that changes state: models, nodes, placements, sync,
                optimization, fine-tuning, learning
    admin       keys and the audit trail

``/api/health`` needs no key (load balancers and ``neurons up``'s own checks use it), nor does
``/dashboard`` and its files: the page asks for a key, and its API calls are checked.

>>> required_scope("GET", "/api/ai/network/status")
<Scope.READ: 1>
>>> required_scope("POST", "/api/chat")
<Scope.INFERENCE: 2>
>>> required_scope("DELETE", "/api/delete")
<Scope.MANAGE: 3>
>>> required_scope("DELETE", "/api/ai/memory/7")
<Scope.INFERENCE: 2>
>>> required_scope("GET", "/api/ai/keys")
<Scope.ADMIN: 4>
>>> required_scope("GET", "/api/health") is None
True
>>> required_scope("GET", "/dashboard/static/js/app.js") is None
True
>>> Scope.MANAGE.allows(Scope.INFERENCE), Scope.READ.allows(Scope.INFERENCE)
(True, False)
"""

from __future__ import annotations

from enum import IntEnum

from neurons.errors import InvalidRequestError

__all__ = ["INFERENCE_ROUTES", "OPEN_ROUTES", "Scope", "is_mutating", "required_scope"]


class Scope(IntEnum):
    """Ordered: a key of one scope may do what every lower scope may."""

    READ = 1
    INFERENCE = 2
    MANAGE = 3
    ADMIN = 4

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, word: str) -> Scope:
        try:
            return cls[word.strip().upper()]
        except KeyError:
            names = ", ".join(str(s) for s in cls)
            raise InvalidRequestError(f"unknown scope {word!r}; one of {names}") from None

    def allows(self, needed: Scope) -> bool:
        return self >= needed


OPEN_ROUTES = frozenset({"/api/health", "/dashboard"})
_OPEN_PREFIXES = ("/dashboard/",)
# POSTs that only read a model's answer: the Ollama API's inference and /api/show.
INFERENCE_ROUTES = frozenset(
    {
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/api/show",
        "/api/v1/model/inference",  # seed 001's embedding module
    }
)
_ADMIN_ROUTES = frozenset({"/api/ai/keys", "/api/ai/audit"})
_ADMIN_PREFIXES = ("/api/ai/keys/", "/api/ai/audit/")
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Language memory's writes (add, remove, synthesize) are a use of the models, not management
# of the network: a key that may embed and generate may keep its own memory.
_MEMORY = "/api/ai/memory"
_INFERENCE_PREFIXES = ("/v1/", _MEMORY + "/")


def required_scope(method: str, path: str) -> Scope | None:
    """The scope a request needs; ``None`` for the routes open to anyone."""
    if path in OPEN_ROUTES or path.startswith(_OPEN_PREFIXES):
        return None
    if path in _ADMIN_ROUTES or path.startswith(_ADMIN_PREFIXES):
        return Scope.ADMIN
    if method in _READ_METHODS:
        return Scope.READ
    if path in INFERENCE_ROUTES or path == _MEMORY or path.startswith(_INFERENCE_PREFIXES):
        return Scope.INFERENCE
    return Scope.MANAGE


def is_mutating(method: str, path: str) -> bool:
    """Whether a call changes state, and so belongs in the audit trail."""
    scope = required_scope(method, path)
    return scope is not None and scope >= Scope.MANAGE and method not in _READ_METHODS
