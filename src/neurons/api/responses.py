"""What the management API answers besides success, declared in its OpenAPI so clients (and
schemathesis) know every status a route can return.

- :func:`errors` gives a route's own statuses (``responses=errors(404, 409)``), each with the
  seed envelope's schema;
- :func:`document` makes the app's schema declare, on every operation but ``/api/health``,
  the statuses the layers in front of every route can answer: 401 and 403 (keys), 429 with
  ``Retry-After`` (limits), 422 (validation); where there is a body, 413 (the body cap) and
  400 (a body that does not parse); and 404 wherever the path has a parameter: it names
  something that may not exist, and a whole-path parameter (``{name:path}``) with a line
  break matches no route at all.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from neurons.auth.scopes import OPEN_ROUTES

__all__ = ["ErrorEnvelope", "document", "errors"]


class ErrorEnvelope(BaseModel):
    """Seed 002's error shape."""

    success: Literal[False] = False
    error: str = Field(description="What went wrong, for a person.")
    error_code: str = Field(description="Stable and machine-readable, e.g. node_not_found.")
    timestamp: str = Field(description="When, ISO 8601 in UTC.")


_DESCRIPTIONS = {
    400: "The request is not valid (a body that does not parse, a bad name, option or value).",
    401: "No valid API key: missing, unknown, revoked or expired.",
    403: "The API key's scope or models do not allow this.",
    404: "Something the request names does not exist.",
    409: "The request conflicts with the current state (a name taken, a finished job).",
    413: "The body is larger than the control plane accepts (NEURONS_MAX_BODY_BYTES).",
    422: "The request does not match the route's schema.",
    429: "The API key is past one of its limits; retry after Retry-After seconds.",
    500: "The control plane failed.",
    502: "A node failed or could not be reached.",
    503: "No node can take the request now.",
}
_REF = "#/components/schemas/ErrorEnvelope"


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that can answer ``codes`` (in the envelope)."""
    return {code: {"model": ErrorEnvelope, "description": _DESCRIPTIONS[code]} for code in codes}


def _response(code: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": _REF}}},
    }
    if code == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "Whole seconds until the limit frees up.",
                "schema": {"type": "integer"},
            }
        }
    return response


def document(app: FastAPI) -> None:
    """Build the app's OpenAPI once, with the statuses every guarded operation can answer."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorEnvelope"] = ErrorEnvelope.model_json_schema()
        for path, operations in schema.get("paths", {}).items():
            if path in OPEN_ROUTES:
                continue
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                common = [401, 403, 422, 429]
                if "requestBody" in operation:
                    common += [400, 413]
                if "{" in path:
                    common.append(404)
                for code in common:
                    responses.setdefault(str(code), _response(code))
                # FastAPI declares its own 422 shape; ours answers in the envelope.
                if "422" in responses:
                    responses["422"] = _response(422)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
