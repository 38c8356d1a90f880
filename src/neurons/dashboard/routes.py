"""``/dashboard``: the page, its static files, and who the page's key belongs to.

The three routes are open (:mod:`neurons.auth.scopes`): the page must load before anyone has
typed a key into it. What it shows comes from the API calls it then makes with that key, and
those are checked as any other client's are.

- ``GET /dashboard`` (and ``/dashboard/``): ``index.html``.
- ``GET /dashboard/static/{path}``: a file under ``static/``; a path that resolves outside it
  (``..``, a symlink) is a 404, as a missing file is.
- ``GET /dashboard/session``: whether keys are on and, for the key the page sends, its name and
  scope (the page hides what the scope cannot do). Always 200: a browser logs every 4xx to the
  console, and "no valid key" is an answer here, not an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from neurons.auth.keys import presented_secret
from neurons.auth.service import AuthService
from neurons.errors import NeuronsError

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR = Path(__file__).parent / "static"

# Explicit, not mimetypes: that one reads /etc/mime.types, and a browser refuses to run an ES
# module served as text/plain, which some systems' tables say .js is.
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
# Revalidate every time (cheap: FileResponse answers If-None-Match with a 304), so an upgraded
# control plane never runs yesterday's modules against today's API.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(include_in_schema=False)


@router.get("/dashboard")
@router.get("/dashboard/")
async def index() -> FileResponse:
    return _file(STATIC_DIR / "index.html")


@router.get("/dashboard/static/{path:path}")
async def static(path: str) -> FileResponse:
    root = STATIC_DIR.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(404, f"no such file: {path}")
    return _file(target)


@router.get("/dashboard/session")
async def session(request: Request) -> dict[str, Any]:
    auth: AuthService | None = getattr(request.app.state, "auth", None)
    if auth is None or not auth.enabled:
        return {"auth": False, "name": None, "scope": "admin", "error": None}
    shown = presented_secret(request.scope["headers"])
    try:
        principal = auth.authenticate(None if shown is None else shown.decode("latin-1"))
    except NeuronsError as exc:
        return {"auth": True, "name": None, "scope": None, "error": exc.message}
    return {"auth": True, "name": principal.name, "scope": str(principal.scope), "error": None}


def _file(path: Path) -> FileResponse:
    media_type = _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return FileResponse(path, media_type=media_type, headers=_HEADERS)
