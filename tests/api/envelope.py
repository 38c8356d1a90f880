"""Reading management-API answers in tests: ``{"success": true, ...}`` or the seed's error
envelope ``{"success": false, "error", "error_code", "timestamp"}``."""

from __future__ import annotations

from typing import Any, Protocol


class Answer(Protocol):
    """What the helpers read of a TestClient response (httpx or httpx2, whichever it uses)."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


def ok(response: Answer, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    data: dict[str, Any] = response.json()
    assert data.pop("success") is True
    return data


def error(response: Answer, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "error", "error_code", "timestamp"}
    assert (body["success"], body["error_code"]) == (False, code)
    message: str = body["error"]
    return message
