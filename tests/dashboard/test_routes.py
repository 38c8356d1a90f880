"""The dashboard's routes over HTTP, no browser: the page and its files are served with the
content types a browser insists on (an ES module as text/plain does not run), open with keys
on, nothing outside the static folder is reachable, and ``/dashboard/session`` tells the page
whose key it holds."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from neurons.dashboard import STATIC_DIR
from neurons.neuron.process import NeuronProcess
from tests.dashboard.conftest import control_plane

MASTER = "dashboard-routes-master-key-0123456789"
IMPORT = re.compile(r"""(?:import|from)\s*\(?\s*["'](\.{1,2}/[^"'$]+)["']""")


@pytest.fixture(scope="module")
def plane(neuron: NeuronProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with control_plane(tmp_path_factory.mktemp("dash") / "home", neuron, master_key=MASTER) as url:
        yield url


def raw_get(url: str, path: str) -> int:
    """The status of a GET sent with ``path`` exactly as written: httpx would resolve the dot
    segments before sending, and the server must be the one to refuse them."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/"])
def test_the_page_is_open_with_keys_on(plane: str, path: str) -> None:
    response = httpx.get(plane + path, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/dashboard/static/js/app.js">' in response.text
    # The API behind it is not opened with it.
    assert httpx.get(plane + "/api/ai/keys", timeout=10).status_code == 401


def test_static_files_and_their_content_types(plane: str) -> None:
    expected = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert {"app.js", "api.js", "chart.js", "dashboard.css", "overview.js"} <= {
        p.name for p in files
    }
    for file in files:
        response = httpx.get(f"{plane}/dashboard/static/{file.relative_to(STATIC_DIR)}")
        assert response.status_code == 200, file
        assert response.headers["content-type"].startswith(expected[file.suffix]), file
        assert response.content == file.read_bytes()
        assert response.headers["cache-control"] == "no-cache"


def test_every_module_import_resolves() -> None:
    """The modules import each other by relative path; a typo would only show in a browser."""
    for module in (STATIC_DIR / "js").rglob("*.js"):
        if module.name.startswith("jobs"):
            continue  # the jobs view is written separately; the browser tests load it
        for target in IMPORT.findall(module.read_text()):
            if Path(target).name.startswith("jobs"):
                continue
            assert (module.parent / target).resolve().is_file(), f"{module.name} imports {target}"


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/static/../routes.py",
        "/dashboard/static/%2e%2e/routes.py",
        "/dashboard/static/js/..%2f..%2f__init__.py",
        "/dashboard/static//etc/passwd",
        "/dashboard/static/%2Fetc%2Fpasswd",
        "/dashboard/static/js",
        "/dashboard/static/no-such-file.js",
    ],
)
def test_nothing_outside_the_static_folder(plane: str, path: str) -> None:
    assert raw_get(plane, path) == 404


def test_the_routes_stay_out_of_the_schema(plane: str) -> None:
    headers = {"Authorization": f"Bearer {MASTER}"}
    paths = httpx.get(plane + "/openapi.json", headers=headers, timeout=10).json()["paths"]
    assert not [p for p in paths if p.startswith("/dashboard")]


def test_session_names_the_key_the_page_holds(plane: str) -> None:
    def session(key: str | None) -> dict[str, object]:
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        response = httpx.get(plane + "/dashboard/session", headers=headers, timeout=10)
        assert response.status_code == 200  # a browser would log a 401 as an error
        body: dict[str, object] = response.json()
        return body

    anonymous = session(None)
    assert (anonymous["auth"], anonymous["name"], anonymous["scope"]) == (True, None, None)
    assert "missing API key" in str(anonymous["error"])
    assert session("nk-wrong")["error"] == "invalid API key"
    assert session(MASTER) == {"auth": True, "name": "master", "scope": "admin", "error": None}
    created = httpx.post(
        plane + "/api/ai/keys",
        json={"name": "dash-reader", "scope": "read"},
        headers={"Authorization": f"Bearer {MASTER}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    reader = session(created.json()["secret"])
    assert (reader["name"], reader["scope"]) == ("dash-reader", "read")
