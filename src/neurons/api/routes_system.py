"""``/api/ai/system``: the components of this control plane (seed 003's
``BackendIntegrationSystem``), each with its state, health and metrics. Read scope."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from neurons.api.responses import errors
from neurons.system.core import BackendIntegrationSystem, ComponentState

__all__ = ["ComponentView", "ComponentsResponse", "router"]

router = APIRouter(prefix="/api/ai/system", tags=["system"])

Name = Annotated[str, Path(max_length=64, description="A component's name, e.g. gateway.")]


class ComponentView(BaseModel):
    name: str
    state: ComponentState = Field(description="Where it is in its lifecycle.")
    depends_on: list[str] = Field(description="Started before it, stopped after it.")
    started_at: str | None = Field(description="When it reached running (ISO 8601, UTC).")
    stopped_at: str | None = Field(description="When its stop ended (ISO 8601, UTC).")
    error: str | None = Field(description="Why it failed to start or to stop.")
    health: dict[str, Any] = Field(
        description="ok (true only while running and well), with details."
    )
    metrics: dict[str, Any] = Field(
        description="Its counters and gauges, and start_s / stop_s: how long those took."
    )


class ComponentsResponse(BaseModel):
    success: Literal[True] = True
    ok: bool = Field(description="Every component running and healthy.")
    mock: bool = Field(description="The neurons are simulated (neurons up --mock).")
    components: list[ComponentView] = Field(description="In start order.")


class ComponentResponse(BaseModel):
    success: Literal[True] = True
    component: ComponentView


def _system(request: Request) -> BackendIntegrationSystem:
    system: BackendIntegrationSystem = request.app.state.system
    return system


@router.get("/components", response_model=ComponentsResponse)
async def components(request: Request) -> dict[str, Any]:
    """Every component in start order (stop order is the reverse): state, health, metrics,
    when it started and stopped, and why it failed if it did."""
    return {"success": True, **_system(request).describe()}


@router.get("/components/{name}", response_model=ComponentResponse, responses=errors(404))
async def component(request: Request, name: Name) -> dict[str, Any]:
    """One component, by name."""
    return {"success": True, "component": _system(request).component(name)}
