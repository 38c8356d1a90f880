"""``/api/ai/state`` on a real control plane (uvicorn on a free port, keys on): save, list,
show, diff, verify, restore (the running plane routes to the restored registry at once), a
corrupt version refused with 409, prune, scopes, and the snapshot taken at shutdown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.store import open_store
from tests.api.envelope import error, ok
from tests.conftest import free_port
from tests.persistence.conftest import snapshot_text

MASTER = "mk-state-tests-master-key"
STATE = "/api/ai/state"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        ollama_base_url="",
        import_default_models=False,
        master_key=MASTER,
        health_interval_s=60,
        snapshot_interval_s=3600,  # on, so the shutdown snapshot is taken; no timed one
    )


@pytest.fixture
def plane(settings: Settings) -> Iterator[ServerThread]:
    dead = f"http://127.0.0.1:{free_port()}"
    app = create_control_plane(settings, [NodeSpec("alpha", dead, "embedded", token="tok-A1")])
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


def node_names(client: httpx.Client) -> list[str]:
    return sorted(n["name"] for n in ok(client.get("/api/ai/network/nodes"))["nodes"])


def test_the_state_routes_round_trip_and_restore_reaches_the_running_plane(
    client: httpx.Client, plane: ServerThread, settings: Settings
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    added = client.post(
        "/api/ai/network/nodes",
        json={"url": dead, "name": "beta", "kind": "ollama", "labels": {"zone": "b"},
              "token": "tok-BETA-secret"},
    )  # fmt: skip
    ok(added, 201)
    ok(client.put("/api/ai/network/placements/llama3", json={"replicas": 1}))
    first = ok(client.post(STATE), 201)["snapshot"]
    assert first["version"] == 1 and first["reason"] == "manual"

    ok(client.delete("/api/ai/network/nodes/beta"))
    ok(
        client.post("/api/ai/network/nodes", json={"url": dead, "name": "gamma", "kind": "ollama"}),
        201,
    )
    second = ok(client.post(STATE, json={"reason": "after-change"}), 201)["snapshot"]
    assert second["version"] == 2
    assert [v["version"] for v in ok(client.get(STATE))["versions"]] == [2, 1]

    shown = ok(client.get(f"{STATE}/1"))
    assert shown["entries"]["nodes"] == 2 and shown["snapshot"]["status"] == "complete"
    nodes = ok(client.get(f"{STATE}/1/nodes"))["data"]
    assert [(n["name"], n["has_token"]) for n in nodes] == [("alpha", True), ("beta", True)]
    changes = ok(client.get(f"{STATE}/1/diff/2"))["components"]
    assert (changes["nodes"]["added"], changes["nodes"]["removed"]) == (["gamma"], ["beta"])
    verified = ok(client.post(f"{STATE}/verify"))
    assert verified["ok"] is True and len(verified["versions"]) == 2

    assert node_names(client) == ["alpha", "gamma"]
    restored = ok(client.post(f"{STATE}/1/restore"))
    assert restored["restored"] == 1 and restored["pre_restore_version"] == 3
    assert restored["tokens_missing"] == ["beta"]  # its token went with it: never restored
    assert node_names(client) == ["alpha", "beta"]  # no health interval waited for

    # A flipped byte: verify names the file, restore refuses and names the last good one.
    bad = settings.resolved_snapshot_path / "v000002" / "nodes.json"
    data = bytearray(bad.read_bytes())
    data[-3] ^= 0x01
    bad.write_bytes(bytes(data))
    checked = ok(client.post(f"{STATE}/2/verify"))
    assert checked["ok"] is False and checked["problems"][0]["file"] == str(bad)
    message = error(client.post(f"{STATE}/2/restore"), 409, "snapshot_corrupt")
    assert str(bad) in message and "the last good version is v3" in message
    assert node_names(client) == ["alpha", "beta"]

    error(client.get(f"{STATE}/99"), 404, "snapshot_not_found")
    error(client.get(f"{STATE}/1/models"), 404, "snapshot_not_found")
    error(client.post(f"{STATE}/99/restore"), 404, "snapshot_not_found")
    assert client.post(STATE, json={"reason": "Bad Reason"}).status_code == 422
    assert client.get(f"{STATE}/0").status_code == 422

    pruned = ok(client.post(f"{STATE}/prune", json={"keep": 1}))
    assert pruned["removed"] == [1, 2] and pruned["kept"] == 1

    on_disk = snapshot_text(settings)
    assert "tok-BETA-secret" not in on_disk and "tok-A1" not in on_disk
    assert MASTER not in on_disk


def test_the_keys_component_is_for_admin_keys_and_saving_needs_manage(
    client: httpx.Client, settings: Settings
) -> None:
    created = ok(client.post("/api/ai/keys", json={"name": "reader", "scope": "read"}), 201)
    reader = {"Authorization": f"Bearer {created['secret']}"}
    ok(client.post(STATE), 201)
    ok(client.post(STATE), 201)

    assert ok(client.get(f"{STATE}/1/api_keys"))["data"][0]["name"] == "reader"
    error(client.get(f"{STATE}/1/api_keys", headers=reader), 403, "forbidden")
    assert ok(client.get(f"{STATE}/1/nodes", headers=reader))["data"]
    assert "api_keys" not in ok(client.get(f"{STATE}/1/diff/2", headers=reader))["components"]
    assert "api_keys" in ok(client.get(f"{STATE}/1/diff/2"))["components"]
    error(client.post(STATE, headers=reader), 403, "forbidden")
    error(client.post(f"{STATE}/1/restore", headers=reader), 403, "forbidden")
    assert created["secret"] not in snapshot_text(settings)


def test_shutdown_takes_a_snapshot(settings: Settings) -> None:
    app = create_control_plane(settings, [NodeSpec("alpha", "http://127.0.0.1:9", "embedded")])
    server = ServerThread(app, port=free_port()).start(ready_path="/api/health")
    server.stop()
    store = open_store(settings.resolved_database_url)
    try:
        versions = store.snapshots.list()
    finally:
        store.close()
    assert [v.reason for v in versions] == ["shutdown"]
