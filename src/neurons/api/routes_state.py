"""``/api/ai/state``: versioned snapshots of the durable state (seed 003's persistence system).
Thin: each route calls one :class:`~neurons.persistence.PersistenceService` method; reads
need the read scope, everything else manage. The API keys' component (public metadata only)
is shown to admin keys alone, as ``/api/ai/keys`` is."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from neurons.api.responses import errors
from neurons.auth.scopes import Scope
from neurons.errors import PermissionDeniedError
from neurons.network.manager import NetworkManager
from neurons.persistence import PersistenceService

__all__ = ["PruneRequest", "SaveRequest", "router"]

router = APIRouter(prefix="/api/ai/state", tags=["state snapshots"])

# Snapshot versions are SQLite row ids; a bigger number cannot name one.
Version = Annotated[int, Path(ge=1, le=2**63 - 1, description="A snapshot version.")]
_ADMIN_ONLY = frozenset({"api_keys"})


class SaveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        default="manual",
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="Why, kept with the version.",
    )


class PruneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep: int | None = Field(
        default=None,
        ge=1,
        le=10**9,
        description="Versions to keep, newest first (default: the configured maximum).",
    )


def _service(request: Request) -> PersistenceService:
    service: PersistenceService = request.app.state.persistence
    return service


def _is_admin(request: Request) -> bool:
    principal = request.scope.get("state", {}).get("principal")
    return principal is None or bool(principal.scope.allows(Scope.ADMIN))


@router.get("")
def list_versions(request: Request) -> dict[str, Any]:
    """Every listed version, newest first: number, time, reason, status and each file's
    sha256 and size."""
    return {"success": True, "versions": [r.to_dict() for r in _service(request).list()]}


@router.post("", status_code=201, responses=errors(500))
def save(request: Request, body: SaveRequest | None = None) -> JSONResponse:
    """Snapshot the state now, as a new version (versions past the maximum are pruned)."""
    record = _service(request).save((body or SaveRequest()).reason)
    return JSONResponse({"success": True, "snapshot": record.to_dict()}, 201)


@router.post("/verify")
def verify_all(request: Request) -> dict[str, Any]:
    """Recompute every listed version's checksums and record each one's status; ``ok`` is
    false if one is corrupt (its problems name the file)."""
    results = _service(request).verify()
    return {"success": True, "ok": all(r["ok"] for r in results), "versions": results}


@router.post("/prune", responses=errors(400))
def prune(request: Request, body: PruneRequest | None = None) -> dict[str, Any]:
    """Keep the newest versions, delete the rest and what interrupted saves left behind."""
    return {"success": True, **_service(request).prune((body or PruneRequest()).keep)}


@router.get("/{version}", responses=errors(404, 409))
def show(request: Request, version: Version) -> dict[str, Any]:
    """A version's metadata and the number of entries in each component."""
    return {"success": True, **_service(request).show(version)}


@router.get("/{version}/diff/{other}", responses=errors(404, 409))
def diff(request: Request, version: Version, other: Version) -> dict[str, Any]:
    """Per component, the entries added, removed and changed from ``version`` to ``other``."""
    service = _service(request)
    shown = None if _is_admin(request) else set(service.components) - _ADMIN_ONLY
    return {"success": True, **service.diff(version, other, shown)}


@router.get("/{version}/{component}", responses=errors(403, 404, 409))
def show_component(
    request: Request, version: Version, component: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    """One component of a version, as saved."""
    if component in _ADMIN_ONLY and not _is_admin(request):
        raise PermissionDeniedError(f"the {component} component needs an admin key")
    return {"success": True, **_service(request).show(version, component)}


@router.post("/{version}/verify", responses=errors(404))
def verify(request: Request, version: Version) -> dict[str, Any]:
    """Recompute one version's checksums and record its status; ``ok`` is false if it is
    corrupt (its problems name the file)."""
    (result,) = _service(request).verify(version)
    return {"success": True, **result}


@router.post("/{version}/restore", responses=errors(400, 404, 409, 500))
async def restore(request: Request, version: Version) -> dict[str, Any]:
    """Put the node registry and placements back as in ``version`` (verified first: a corrupt
    version is refused with 409, naming the file and the last good version). Node tokens are
    never restored; jobs, sessions, learning runs, keys and settings stay as they are."""
    result = await asyncio.to_thread(_service(request).restore, version)
    network: NetworkManager = request.app.state.network
    await network.monitor.refresh_registry()  # route to the restored nodes at once
    return {"success": True, **result}
