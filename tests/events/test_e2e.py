"""The event bus end to end: two real neurons behind a control plane, two SSE clients
following ``/api/ai/events`` at once, and real causes only: a state snapshot, a sync that
copies a model onto the bare neuron, a copy fanned out to both nodes, a create streamed from
both, a delete on one, and a neuron stopped. Both clients get the same events in the same
order, the same the JSON listing gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.envelope import ok
from tests.events.sse import SSEReader, ids
from tests.network.conftest import Cluster, cluster

SMOL = "smollm2:135m"
EVENTS = "/api/ai/events"


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Cluster]:
    with cluster(tmp_path, ["a", "b"], bare=("b",), snapshot_interval_s=0) as running:
        yield running


def b_went_down(events: list[dict[str, Any]]) -> bool:
    return any((e["kind"], e["subject"]) == ("node.down", "b") for e in events)


def test_two_sse_clients_see_the_same_real_events_in_the_same_order(net: Cluster) -> None:
    http = net.client()
    start = ok(http.get(EVENTS))
    ups = {(e["subject"], e["payload"]["to"]) for e in start["events"] if e["kind"] == "node.up"}
    assert ups == {("a", "online"), ("b", "online")}
    mark = start["last_id"]

    readers = [SSEReader(f"{net.url}{EVENTS}?after={mark}", until=b_went_down) for _ in range(2)]
    for reader in readers:
        reader.start()
        assert reader.connected.wait(10) and reader.status == 200

    ok(http.post("/api/ai/state", json={"reason": "events-test"}), 201)
    ok(http.put(f"/api/ai/network/placements/{SMOL}", json={"replicas": 2}))
    report = ok(http.post("/api/ai/network/sync"))["report"]
    assert [(t["source"], t["target"]) for t in report["transfers"]] == [("a", "b")]
    ok(http.post("/api/ai/network/check"))  # b's inventory now lists the copy
    copied = http.post("/api/copy", json={"source": SMOL, "destination": "events-copy"})
    assert copied.status_code == 200, copied.text  # fanned out to both holders
    with http.stream("POST", "/api/create", json={"model": "events-made", "from": SMOL}) as made:
        assert made.status_code == 200 and '"success"' in made.read().decode()
    deleted = http.request(
        "DELETE", "/api/delete", json={"model": "events-copy"}, headers={"X-Neurons-Node": "a"}
    )
    assert deleted.status_code == 200, deleted.text
    net.neurons["b"].stop()

    first, second = (reader.finish(60) for reader in readers)
    assert ids(first) == ids(second) and first == second
    assert ids(first) == sorted(set(ids(first))) and ids(first)[0] > mark
    listed = ok(http.get(EVENTS, params={"after": mark}))["events"]
    assert [e["id"] for e in listed][: len(first)] == ids(first)

    seen = [(e["kind"], e["subject"]) for e in first]
    assert seen == [
        ("snapshot.saved", "v1"),
        ("model.synced", SMOL),
        ("model.created", "events-copy:latest"),
        ("model.created", "events-made:latest"),
        ("model.deleted", "events-copy:latest"),
        ("node.down", "b"),
    ], seen
    snapshot, synced, copy, create, delete, down = (e["payload"] for e in first)
    assert snapshot["version"] == 1 and snapshot["reason"] == "events-test"
    assert (synced["source"], synced["target"]) == ("a", "b") and synced["bytes_copied"] > 0
    assert copy == {"operation": "copy", "source": SMOL, "nodes": ["a", "b"]}
    assert create == {"operation": "create", "nodes": ["a", "b"]}
    assert delete == {"nodes": ["a"]}
    assert (down["from"], down["to"]) == ("degraded", "offline")
    assert all("token" not in str(e["payload"]) for e in first)
    http.close()
