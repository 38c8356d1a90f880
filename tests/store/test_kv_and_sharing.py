"""KeyValueRepository, and several engines or processes sharing one database file."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import neurons
from neurons.errors import InvalidRequestError, StoreError
from neurons.store import Store, create_engine_for, open_store


def test_kv_round_trips_json(store: Store) -> None:
    assert store.kv.get("missing") is None
    assert store.kv.get("missing", {"d": 1}) == {"d": 1}
    store.kv.set("config", {"a": [1, 2, None], "b": "x"})
    assert store.kv.get("config") == {"a": [1, 2, None], "b": "x"}
    store.kv.set("config", 3)
    assert store.kv.get("config") == 3
    store.kv.set("nothing", None)
    assert store.kv.get("nothing", "default") is None
    store.kv.delete("config")
    assert store.kv.get("config") is None
    store.kv.delete("config")  # deleting a missing key is fine


def test_kv_items_by_prefix(store: Store) -> None:
    for key in ("node/a", "node/b_%", "node", "nodes/x", "other"):
        store.kv.set(key, key.upper())
    assert store.kv.items("node/") == {"node/a": "NODE/A", "node/b_%": "NODE/B_%"}
    assert store.kv.items("zzz") == {}
    with pytest.raises(InvalidRequestError):
        store.kv.items("")


def test_kv_refuses_values_json_cannot_hold(store: Store) -> None:
    with pytest.raises(InvalidRequestError):
        store.kv.set("bad", {1, 2})
    assert store.kv.get("bad") is None


def test_two_engines_see_each_others_writes(db_url: str) -> None:
    first = open_store(db_url)
    second = open_store(db_url)
    try:
        node = first.nodes.add("shared", "http://s", "ollama")
        assert second.nodes.get("shared") == node
        second.nodes.set_status("shared", "healthy")
        assert first.nodes.get(node.id).status == "healthy"
        second.kv.set("leader", "second")
        assert first.kv.get("leader") == "second"
        first.nodes.remove("shared")
        assert second.nodes.list() == []
    finally:
        first.close()
        second.close()


def test_concurrent_writers_on_two_engines_all_succeed(db_url: str) -> None:
    stores = [open_store(db_url), open_store(db_url)]
    errors: list[BaseException] = []

    def work(store: Store, tag: str) -> None:
        try:
            for i in range(25):
                store.nodes.upsert(f"{tag}-{i % 5}", f"http://{tag}/{i}", "ollama", priority=i)
                store.kv.set("counter", i)
                store.nodes.record_event(f"{tag}-{i % 5}", "tick", {"i": i})
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s, f"t{n}")) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert len(stores[0].nodes.list()) == 10
        assert sum(len(stores[1].nodes.events(n.id)) for n in stores[1].nodes.list()) == 50
    finally:
        for store in stores:
            store.close()


def test_another_process_sees_writes(db_url: str) -> None:
    store = open_store(db_url)
    try:
        store.nodes.add("from-parent", "http://p", "embedded")
        src = str(Path(neurons.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
        script = (
            "import sys; from neurons.store import open_store\n"
            "s = open_store(sys.argv[1])\n"
            "assert s.nodes.get('from-parent').kind == 'embedded'\n"
            "s.nodes.add('from-child', 'http://c', 'ollama')\n"
            "s.kv.set('child', {'pid': 1})\n"
        )
        subprocess.run([sys.executable, "-c", script, db_url], env=env, check=True, timeout=60)
        assert store.nodes.get("from-child").kind == "ollama"
        assert store.kv.get("child") == {"pid": 1}
    finally:
        store.close()


def test_bad_urls_are_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        create_engine_for("not a url")
    with pytest.raises(StoreError):
        create_engine_for("nosuchdialect://x")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError):
        create_engine_for(f"sqlite:///{blocker / 'sub' / 'neurons.db'}")
