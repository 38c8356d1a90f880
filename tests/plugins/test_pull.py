"""pull_models_with_validation: injected pulls, and the default pull over real HTTP."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from neurons.neuron.defaults import DEFAULT_MODELS
from neurons.plugins import OllamaModelManager, PluginHost, http_pull, pull_models_with_validation
from tests.conftest import free_port

SMOL, GEMMA = "smollm2:135m", "gemma3:270m"


def _pulls(results: dict[str, bool | Exception]) -> tuple[Callable[[str], bool], list[str]]:
    calls: list[str] = []

    def pull(model: str) -> bool:
        calls.append(model)
        result = results[model]
        if isinstance(result, Exception):
            raise result
        return result

    return pull, calls


@pytest.mark.parametrize(
    ("pulled", "with_manager", "expected"),
    [
        ({SMOL: True, GEMMA: True}, False, {SMOL: True, GEMMA: True}),
        ({SMOL: True, GEMMA: False}, False, {SMOL: True, GEMMA: False}),
        # gemma3 has no plugin: with a manager it cannot be validated.
        ({SMOL: True, GEMMA: True}, True, {SMOL: True, GEMMA: False}),
        ({SMOL: False, GEMMA: True}, True, {SMOL: False, GEMMA: False}),
        ({SMOL: OSError("disk full"), GEMMA: True}, False, {SMOL: False, GEMMA: True}),
    ],
)
def test_status_is_pull_and_plugin_validation(
    host: PluginHost,
    pulled: dict[str, bool | Exception],
    with_manager: bool,
    expected: dict[str, bool],
) -> None:
    pull, calls = _pulls(pulled)
    manager = OllamaModelManager(plugin_manager=host) if with_manager else None
    assert pull_models_with_validation([SMOL, GEMMA], manager, pull=pull) == expected
    assert calls == [SMOL, GEMMA]


def test_models_default_to_the_offline_defaults() -> None:
    pull, calls = _pulls(dict.fromkeys([d.name for d in DEFAULT_MODELS], True))
    assert pull_models_with_validation(pull=pull) == dict.fromkeys(calls, True)
    assert calls == [d.name for d in DEFAULT_MODELS]


class _Refusing:
    """A model plugin manager stand-in whose plugins refuse or fail on ``{}``."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    def plugin_for(self, model: str) -> Any:
        behaviour = self.behaviour

        class Plugin:
            def validate_ollama_configuration(self, config: dict[str, Any]) -> bool:
                if behaviour == "raise":
                    raise ValueError("plugin bug")
                return False

        return Plugin()


@pytest.mark.parametrize(
    ("behaviour", "logged"),
    [("refuse", "the default configuration is refused"), ("raise", "plugin bug")],
)
def test_a_refusing_or_failing_plugin_is_false_and_logged(
    behaviour: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    manager: Any = _Refusing(behaviour)
    with caplog.at_level(logging.WARNING, logger="neurons.plugins.models"):
        status = pull_models_with_validation([SMOL], manager, pull=lambda model: True)
    assert status == {SMOL: False}
    assert f"plugin validation failed for {SMOL}" in caplog.text
    assert logged in caplog.text


class _PullHandler(BaseHTTPRequestHandler):
    """The control plane's ``/api/pull`` as far as a non-streamed pull sees it."""

    bodies: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append({"path": self.path, **body})
        answers = {
            SMOL: (200, {"status": "success"}),
            GEMMA: (200, {"error": "no node could pull gemma3:270m"}),
        }
        status, answer = answers.get(
            body["model"], (404, {"error": "pull model manifest: file does not exist"})
        )
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def control_plane() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []
    handler = type("Handler", (_PullHandler,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_default_pull_posts_to_the_control_plane(
    control_plane: tuple[int, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    host: PluginHost,
) -> None:
    port, bodies = control_plane
    monkeypatch.setenv("NEURONS_HOST", "127.0.0.1")
    monkeypatch.setenv("NEURONS_PORT", str(port))

    status = pull_models_with_validation(
        [SMOL, GEMMA, "nope:1b"], OllamaModelManager(plugin_manager=host)
    )

    assert status == {SMOL: True, GEMMA: False, "nope:1b": False}
    assert bodies == [
        {"path": "/api/pull", "model": model, "stream": False} for model in (SMOL, GEMMA, "nope:1b")
    ]


def test_an_unreachable_control_plane_is_false_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pull = http_pull(f"http://127.0.0.1:{free_port()}", timeout=2)
    with caplog.at_level(logging.WARNING, logger="neurons.plugins.models"):
        assert pull_models_with_validation([SMOL], pull=pull) == {SMOL: False}
    assert "error pulling model smollm2:135m: ConnectError" in caplog.text
