"""``/api/ai/keys`` and ``/api/ai/audit`` (admin scope): API keys and the audit trail. Thin:
each route calls one :class:`~neurons.auth.service.AuthService` method. A secret appears in
exactly two answers, the creation and the rotation of its key, and nowhere else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from neurons.api.responses import errors
from neurons.auth.keys import KeySpec, parse_expiry, parse_since
from neurons.auth.scopes import Scope
from neurons.auth.service import AuthService

__all__ = ["KeyCreateRequest", "router"]

router = APIRouter(prefix="/api/ai", tags=["keys and audit"])


class KeyCreateRequest(BaseModel):
    """A new key: ``neurons keys create``'s options as JSON."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    scope: Literal["read", "inference", "manage", "admin"] = "inference"
    models: list[str] = Field(default_factory=list, max_length=256)
    rpm: int | None = Field(default=None, ge=1, le=10**9)
    tpm: int | None = Field(default=None, ge=1, le=10**12)
    max_parallel: int | None = Field(default=None, ge=1, le=10**6)
    expires: str | None = Field(
        default=None, max_length=32, description="How long the key lives: 30d, 12h, 90m, 2w."
    )

    def spec(self, now: datetime) -> KeySpec:
        return KeySpec(
            name=self.name,
            scope=Scope.parse(self.scope),
            models=tuple(self.models),
            rpm=self.rpm,
            tpm=self.tpm,
            max_parallel=self.max_parallel,
            expires_at=None if self.expires is None else now + parse_expiry(self.expires),
        )


def _auth(request: Request) -> AuthService:
    service: AuthService = request.app.state.auth
    return service


@router.get("/keys")
def list_keys(request: Request) -> dict[str, Any]:
    """Every key with its scope, models, limits, state and usage; never a secret."""
    now = datetime.now(UTC)
    return {"success": True, "keys": [k.to_dict(now) for k in _auth(request).list_keys()]}


@router.post("/keys", status_code=201, responses=errors(400, 409))
def create_key(request: Request, body: KeyCreateRequest) -> JSONResponse:
    """Create a key. The answer holds its secret, shown this once: only a hash is kept."""
    now = datetime.now(UTC)
    key, secret = _auth(request).create_key(body.spec(now))
    return JSONResponse({"success": True, "key": key.to_dict(now), "secret": secret}, 201)


@router.delete("/keys/{ref}", responses=errors(400, 404))
def revoke_key(request: Request, ref: str) -> dict[str, Any]:
    """Revoke a key by id, name or display prefix; its next request is refused."""
    key = _auth(request).revoke_key(ref)
    return {"success": True, "key": key.to_dict(datetime.now(UTC))}


@router.post("/keys/{ref}/rotate", responses=errors(400, 404, 409))
def rotate_key(request: Request, ref: str) -> dict[str, Any]:
    """A new secret for a live key (shown this once); the old one stops working now."""
    key, secret = _auth(request).rotate_key(ref)
    return {"success": True, "key": key.to_dict(datetime.now(UTC)), "secret": secret}


@router.get("/audit", responses=errors(400))
def audit(
    request: Request,
    since: Annotated[
        str | None, Query(max_length=64, description="An ISO time or a span: 1h, 7d.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    actor: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Mutating calls, oldest first: who (a key's name), what, target, result, when."""
    start = parse_since(since, datetime.now(UTC))
    events = _auth(request).audit_events(since=start, limit=limit, actor=actor)
    return {"success": True, "events": [e.to_dict() for e in events]}
