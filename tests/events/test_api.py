"""``GET /api/ai/events`` on a real control plane (uvicorn on a free port, keys on, one node
that is not there): JSON pages with after/kind/limit and their cursor, the envelope for bad
input, an SSE stream that resumes from Last-Event-ID, sends keep-alives and lets go of its
subscription when the client hangs up; a read key may follow it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from neurons.api import routes_events
from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.events import EventBus
from tests.api.envelope import error, ok
from tests.conftest import free_port, wait_for
from tests.events.sse import SSEReader, ids

MASTER = "mk-events-tests-master-key"
EVENTS = "/api/ai/events"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        ollama_base_url="",
        import_default_models=False,
        master_key=MASTER,
        health_interval_s=60,
    )


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    dead = f"http://127.0.0.1:{free_port()}"
    return create_control_plane(settings, [NodeSpec("alpha", dead, "embedded")])


@pytest.fixture
def plane(app: FastAPI) -> Iterator[ServerThread]:
    server = ServerThread(app, port=free_port()).start(ready_path="/api/health")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(plane: ServerThread) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {MASTER}"}
    with httpx.Client(base_url=plane.url, headers=headers, timeout=30) as http:
        yield http


def bus(app: FastAPI) -> EventBus:
    events: EventBus = app.state.events
    return events


def page(client: httpx.Client, **params: Any) -> dict[str, Any]:
    return ok(client.get(EVENTS, params=params))


def test_json_pages_with_after_kind_and_limit(client: httpx.Client, app: FastAPI) -> None:
    start = page(client)
    # The dead node went offline at start-up: announced like any other.
    assert [(e["kind"], e["subject"]) for e in start["events"]] == [("node.down", "alpha")]
    assert start["events"][0]["payload"]["to"] == "offline"
    mark = start["last_id"]
    assert mark == start["events"][-1]["id"]
    for i in range(3):
        bus(app).publish("test.a", f"a{i}", n=i)
        bus(app).publish("test.b", f"b{i}", n=i)

    everything = page(client, after=mark)
    assert [e["subject"] for e in everything["events"]] == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert ids(everything["events"]) == list(range(mark + 1, mark + 7))
    assert everything["last_id"] == mark + 6
    first = everything["events"][0]
    assert set(first) == {"id", "at", "kind", "subject", "payload"} and first["payload"] == {"n": 0}

    two = page(client, after=mark, limit=2)
    assert [e["subject"] for e in two["events"]] == ["a0", "b0"] and two["last_id"] == mark + 2
    only_b = page(client, after=mark, kind="test.b")
    assert [e["subject"] for e in only_b["events"]] == ["b0", "b1", "b2"]
    # The cursor passes the a-events after the last b: nothing is read twice.
    assert only_b["last_id"] == mark + 6
    both = ok(client.get(EVENTS, params=[("kind", "test.a, node.down"), ("kind", "test.b")]))
    assert len(both["events"]) == 7
    nothing = page(client, after=mark + 6, kind="test.a")
    assert nothing == {"events": [], "last_id": mark + 6}


def test_bad_input_answers_in_the_envelope(client: httpx.Client) -> None:
    for limit in (0, 5001):
        message = error(client.get(EVENTS, params={"limit": limit}), 400, "invalid_request")
        assert "limit must be 1-5000" in message
    assert "Last-Event-ID" in error(
        client.get(EVENTS, headers={"Last-Event-ID": "12x"}), 400, "invalid_request"
    )
    error(client.get(EVENTS, params={"after": -1}), 422, "validation_error")
    error(client.get(EVENTS, params={"limit": "many"}), 422, "validation_error")
    # An SSE request is checked before the stream starts: an answer, not a hanging stream.
    bad = client.get(EVENTS, params={"limit": 0}, headers={"Accept": "text/event-stream"})
    error(bad, 400, "invalid_request")
    error(httpx.get(client.base_url.join(EVENTS)), 401, "unauthorized")


def test_sse_resumes_after_last_event_id_and_lets_go_on_hang_up(
    plane: ServerThread, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes_events, "KEEP_ALIVE_S", 0.3)
    published = []
    for i in range(4):
        bus(app).publish("test.resume", f"r{i}", n=i)
        published.append(bus(app).latest_id())
    auth = {"Authorization": f"Bearer {MASTER}"}
    # after=0 in the URL (a reconnecting EventSource keeps its first URL): the header wins.
    reader = SSEReader(
        f"{plane.url}{EVENTS}?after=0&kind=test.resume,test.live",
        until=lambda events: len(events) == 4,
        headers={**auth, "Last-Event-ID": str(published[1])},
    )
    reader.start()
    assert reader.connected.wait(10)
    wait_for(lambda: len(reader.events) == 2, 10)  # the backlog after published[1]
    wait_for(lambda: bool(reader.comments), 10)  # idle: a keep-alive comment
    bus(app).publish("test.other", "filtered out")
    bus(app).publish("test.live", "l0")
    bus(app).publish("test.live", "l1")
    events = reader.finish()
    assert reader.status == 200 and reader.content_type.startswith("text/event-stream")
    assert [e["subject"] for e in events] == ["r2", "r3", "l0", "l1"]
    assert ids(events[:2]) == published[2:]
    assert all(e["wire"] == {"id": str(e["id"]), "event": e["kind"]} for e in events)
    assert reader.fields[0] == "retry" and ": keep-alive" in reader.comments
    # The client hung up: its subscription is gone (Starlette cancelled the stream).
    wait_for(lambda: bus(app).subscribers == 0, 10)


def test_a_read_key_follows_the_stream(client: httpx.Client, plane: ServerThread) -> None:
    created = ok(client.post("/api/ai/keys", json={"name": "watcher", "scope": "read"}), 201)
    key = created["secret"]
    reader = SSEReader(
        f"{plane.url}{EVENTS}",
        until=lambda events: any(e["kind"] == "node.down" for e in events),
        headers={"Authorization": f"Bearer {key}"},
    )
    reader.start()
    assert [e["subject"] for e in reader.finish()] == ["alpha"]
