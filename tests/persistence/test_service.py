"""PersistenceService against a real SQLite file and a real snapshot directory: round trips
of save, ls, show, diff, verify, restore and prune; the registry restored exactly; corrupt
files named and refused; no secret on disk; the crash windows of a save, each forced; and
the automatic saves."""

from __future__ import annotations

import asyncio
import doctest
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from neurons.auth.keys import KeySpec
from neurons.auth.scopes import Scope
from neurons.auth.sealing import Sealer
from neurons.auth.service import AuthService
from neurons.config import Settings
from neurons.errors import (
    InvalidRequestError,
    SnapshotCorruptError,
    SnapshotNotFoundError,
    StoreError,
)
from neurons.persistence import COMPONENTS, PersistenceService
from neurons.persistence import service as service_module
from neurons.store import Store
from tests.persistence.conftest import registry, snapshot_text


def populate(store: Store, settings: Settings) -> None:
    sealer = Sealer(settings.resolved_secret_key_file)
    store.nodes.add(
        "alpha", "http://10.0.0.1:11434", "ollama", {"zone": "a", "gpu": "yes"}, 5,
        token_sealed=sealer.seal("alpha-node-token-TEXT"),
    )  # fmt: skip
    store.nodes.add("beta", "http://10.0.0.2:11434", "ollama", {"zone": "b"}, 1)
    store.nodes.add("gamma", "http://10.0.0.3:11435", "embedded")
    store.nodes.set_status("gamma", "draining")
    store.nodes.set_status("beta", "online")
    store.placements.set("llama3", {"zone": "a"})
    store.placements.set("smollm2:135m", replicas=2)


def files_of(settings: Settings, version: int) -> list[str]:
    folder = settings.resolved_snapshot_path / f"v{version:06d}"
    return sorted(p.name for p in folder.iterdir())


def test_doctests() -> None:
    for name in ("neurons.persistence.diff", "neurons.persistence.files"):
        result = doctest.testmod(importlib.import_module(name))
        assert result.failed == 0 and result.attempted > 0, name


def test_save_ls_show_and_verify_round_trip(
    service: PersistenceService, store: Store, settings: Settings
) -> None:
    populate(store, settings)
    first = service.save()
    second = service.save("nightly")
    assert (first.version, second.version) == (1, 2)
    assert [r.version for r in service.list()] == [2, 1]
    assert service.list()[0].reason == "nightly"
    names = sorted(c.name for c in COMPONENTS)
    assert sorted(first.components) == names
    assert files_of(settings, 1) == [f"{n}.json" for n in names]
    shown = service.show(1)
    assert shown["entries"]["nodes"] == 3 and shown["entries"]["placements"] == 2
    nodes = service.show(1, "nodes")["data"]
    assert [n["name"] for n in nodes] == ["alpha", "beta", "gamma"]
    alpha = nodes[0]
    assert alpha["labels"] == {"gpu": "yes", "zone": "a"} and alpha["priority"] == 5
    assert alpha["has_token"] is True and "token_sealed" not in alpha
    assert [n["draining"] for n in nodes] == [False, False, True]
    placements = service.show(1, "placements")["data"]
    assert placements == [
        {"model": "llama3:latest", "labels": {"zone": "a"}, "replicas": None},
        {"model": "smollm2:135m", "labels": {}, "replicas": 2},
    ]
    assert service.verify() == [
        {"version": 2, "ok": True, "problems": []},
        {"version": 1, "ok": True, "problems": []},
    ]
    with pytest.raises(SnapshotNotFoundError, match="no component 'models'"):
        service.show(1, "models")
    with pytest.raises(SnapshotNotFoundError, match="version 9"):
        service.show(9)
    with pytest.raises(SnapshotNotFoundError):
        service.show(2**70)
    with pytest.raises(InvalidRequestError, match="reason"):
        service.save("Not A Word")


def test_every_file_carries_its_recorded_sha256_and_size(
    service: PersistenceService, store: Store, settings: Settings
) -> None:
    import hashlib

    populate(store, settings)
    record = service.save()
    folder = settings.resolved_snapshot_path / "v000001"
    for name, meta in record.components.items():
        data = (folder / f"{name}.json").read_bytes()
        assert hashlib.sha256(data).hexdigest() == meta.sha256
        assert len(data) == meta.bytes
        document = json.loads(data)
        assert (document["component"], document["format"]) == (name, 1)


def test_diff_names_added_removed_and_changed_entries(
    service: PersistenceService, store: Store, settings: Settings
) -> None:
    populate(store, settings)
    service.save()
    store.nodes.remove("beta")
    store.nodes.add("delta", "http://10.0.0.4:11434", "ollama")
    store.nodes.upsert("alpha", "http://10.0.0.9:11434", "ollama", {"zone": "a"}, 5)
    store.placements.remove("llama3")
    store.placements.set("smollm2:135m", replicas=3)
    service.save()
    result = service.diff(1, 2)
    assert (result["from"], result["to"]) == (1, 2)
    nodes = result["components"]["nodes"]
    assert nodes["added"] == ["delta"] and nodes["removed"] == ["beta"]
    # The token is not part of a node's entry; upsert without one drops it: has_token moves.
    assert nodes["changed"] == {
        "alpha": {
            "has_token": [True, False],
            "labels": [{"gpu": "yes", "zone": "a"}, {"zone": "a"}],
            "url": ["http://10.0.0.1:11434", "http://10.0.0.9:11434"],
        }
    }
    placements = result["components"]["placements"]
    assert placements == {
        "added": [],
        "removed": ["llama3:latest"],
        "changed": {"smollm2:135m": {"replicas": [2, 3]}},
    }
    assert result["components"]["settings"] == {"added": [], "removed": [], "changed": {}}
    assert service.diff(2, 1)["components"]["nodes"]["added"] == ["beta"]
    only = service.diff(1, 2, components=["placements"])
    assert list(only["components"]) == ["placements"]


def test_restore_brings_the_registry_back_exactly(
    service: PersistenceService, store: Store, settings: Settings
) -> None:
    populate(store, settings)
    sealer = Sealer(settings.resolved_secret_key_file)
    store.nodes.add("epsilon", "http://10.0.0.5:11434", "ollama", token_sealed=sealer.seal("e"))
    store.nodes.record_event("beta", "health", {"ok": True})
    saved = service.save()
    wanted = registry(store, settings)
    alpha_sealed = store.nodes.get("alpha").token_sealed

    # Every kind of change: removed, added, changed, names swapped between two nodes,
    # drained and undrained, a token-bearing node removed and added back under a new id.
    store.nodes.remove("epsilon")
    store.nodes.add("delta", "http://10.0.0.4:11434", "ollama", {"new": "1"})
    store.nodes.upsert("beta", "http://10.0.0.22:11434", "embedded", {"zone": "z"}, 9)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE nodes SET name = 'tmp' WHERE name = 'alpha'"))
        conn.execute(text("UPDATE nodes SET name = 'alpha' WHERE name = 'gamma'"))
        conn.execute(text("UPDATE nodes SET name = 'gamma' WHERE name = 'tmp'"))
    store.nodes.set_status("alpha", "online")  # the old gamma: no longer draining
    store.nodes.set_status("beta", "draining")
    store.nodes.add("epsilon", "http://10.0.0.5:11434", "ollama", token_sealed=sealer.seal("e2"))
    new_epsilon_sealed = store.nodes.get("epsilon").token_sealed
    store.placements.remove("llama3")
    store.placements.set("smollm2:135m", {"zone": "q"}, 1)
    store.placements.set("qwen3", replicas=1)
    assert registry(store, settings) != wanted

    result = service.restore(saved.version)

    assert registry(store, settings) == wanted
    assert result["restored"] == 1 and result["pre_restore_version"] == 2
    assert service.list()[0].reason == "pre-restore"
    assert result["changes"]["nodes"]["removed"] == ["delta"]
    assert result["tokens_missing"] == []
    assert result["not_restored"] == [
        "api_keys", "fine_tuning_jobs", "learning_runs", "node_models", "optimization_sessions",
        "settings",
    ]  # fmt: skip
    # Tokens were never restored: alpha kept its own, epsilon took the one its name holds.
    assert store.nodes.get("alpha").token_sealed == alpha_sealed
    assert store.nodes.get("epsilon").token_sealed == new_epsilon_sealed
    # Health is measured again; a kept node kept its history.
    assert store.nodes.get("beta").status == "unknown"
    assert store.nodes.get("gamma").status == "draining"
    assert store.nodes.events("beta")[0]["detail"] == {"ok": True}
    # Restoring the pre-restore version undoes it.
    service.restore(result["pre_restore_version"])
    assert {n.name for n in store.nodes.list()} == {"alpha", "beta", "gamma", "delta", "epsilon"}


def test_restore_reports_nodes_whose_token_is_gone(
    service: PersistenceService, store: Store, settings: Settings
) -> None:
    populate(store, settings)
    service.save()
    store.nodes.remove("alpha")
    result = service.restore(1)
    assert result["tokens_missing"] == ["alpha"]
    alpha = store.nodes.get("alpha")
    assert alpha.token_sealed is None
    nodes, _ = registry(store, settings)
    saved = service.show(1, "nodes")["data"]
    # Exact but for has_token, which only a new token can bring back.
    assert [dict(n, has_token=None) for n in nodes] == [dict(n, has_token=None) for n in saved]


def test_a_flipped_byte_is_named_by_verify_and_refused_by_restore(
    service: PersistenceService, store: Store, settings: Settings
) -> None:
    populate(store, settings)
    service.save()
    store.nodes.remove("beta")
    service.save()
    bad = settings.resolved_snapshot_path / "v000002" / "nodes.json"
    original = bad.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    before = registry(store, settings)

    results = {r["version"]: r for r in service.verify()}
    assert results[1]["ok"] is True
    assert results[2]["ok"] is False
    assert [p["file"] for p in results[2]["problems"]] == [str(bad)]
    assert "does not match the recorded" in results[2]["problems"][0]["problem"]
    assert [r.status for r in service.list()] == ["corrupt", "complete"]

    with pytest.raises(SnapshotCorruptError) as refused:
        service.restore(2)
    message = str(refused.value)
    assert str(bad) in message and "the last good version is v1" in message
    assert refused.value.http_status == 409
    assert registry(store, settings) == before  # nothing restored, nothing saved
    assert [r.version for r in service.list()] == [2, 1]
    with pytest.raises(SnapshotCorruptError, match="last good version is v1"):
        service.show(2, "nodes")
    assert "nodes" in service.diff(1, 1)["components"]

    # A missing file, and no good version left.
    (settings.resolved_snapshot_path / "v000001" / "placements.json").unlink()
    with pytest.raises(SnapshotCorruptError, match="placements.json: missing; no listed"):
        service.restore(1)
    # Repaired, verify records it complete again.
    bad.write_bytes(original)
    assert service.verify(2) == [{"version": 2, "ok": True, "problems": []}]
    assert service.list()[0].status == "complete"


def test_no_secret_is_ever_written(tmp_path: Path) -> None:
    from neurons.store import open_store

    settings = Settings(
        home=tmp_path / "home",
        ollama_base_url="",
        import_default_models=False,
        master_key="mk-MASTER-secret-value",
        node_token="node-token-of-this-neuron",
        database_url="postgresql://neurons:db-password@db.example/neurons",
    )
    store = open_store(f"sqlite:///{tmp_path / 'home' / 'neurons.db'}")
    try:
        populate(store, settings)
        auth = AuthService(store)
        key, secret = auth.create_key(KeySpec(name="ci", scope=Scope.MANAGE, rpm=60))
        sealed = [n.token_sealed for n in store.nodes.list() if n.token_sealed]
        service = PersistenceService(store, settings)
        service.save()
        keys = service.show(1, "api_keys")["data"]
        assert [(k["name"], k["scope"], k["rpm"], k["state"]) for k in keys] == [
            ("ci", "manage", 60, "active")
        ]
        assert keys[0]["prefix"] == key.prefix
        on_disk = snapshot_text(settings)
        secrets = [
            secret,
            key.secret_hash,
            "alpha-node-token-TEXT",
            *sealed,
            "mk-MASTER-secret-value",
            "node-token-of-this-neuron",
            "db-password",
            Sealer(settings.resolved_secret_key_file).key_file.read_text().strip(),
        ]
        for value in secrets:
            assert value and value not in on_disk
        assert "secret_hash" not in on_disk and "token_sealed" not in on_disk
    finally:
        store.close()


def test_a_failed_rename_lists_nothing_and_leaves_nothing(
    service: PersistenceService, store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(store, settings)

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(service_module.os, "rename", refuse)
    with pytest.raises(StoreError, match="No space left"):
        service.save()
    monkeypatch.undo()
    assert service.list() == []
    assert list(settings.resolved_snapshot_path.iterdir()) == []
    assert service.save().version == 1


def test_a_save_that_dies_between_placing_and_committing_is_never_listed(
    service: PersistenceService, store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst moment: the directory is renamed into place, the row not yet committed."""
    populate(store, settings)
    root = settings.resolved_snapshot_path

    def die(path: Path) -> None:
        raise OSError(5, "simulated crash before the commit")

    monkeypatch.setattr(service_module, "fsync_dir", die)
    with pytest.raises(StoreError):
        service.save()
    monkeypatch.undo()
    assert service.list() == []
    assert [p.name for p in root.iterdir()] == ["v000001"]  # there, but unlisted

    # The number was not taken: the next save replaces the leftover with its own files.
    store.nodes.remove("beta")
    record = service.save()
    assert record.version == 1
    assert service.verify() == [{"version": 1, "ok": True, "problems": []}]
    assert [n["name"] for n in service.show(1, "nodes")["data"]] == ["alpha", "gamma"]

    # Or prune sweeps a leftover away.
    monkeypatch.setattr(service_module, "fsync_dir", die)
    with pytest.raises(StoreError):
        service.save()
    monkeypatch.undo()
    assert (root / "v000002").is_dir()
    assert service.prune()["swept"] == ["v000002"]
    assert sorted(p.name for p in root.iterdir()) == ["v000001"]


def test_prune_keeps_the_newest_and_sweeps_dead_temporary_directories(
    service: PersistenceService, store: Store, settings: Settings
) -> None:
    for i in range(5):
        store.nodes.upsert(f"n{i}", f"http://10.0.0.{i}:11434", "ollama")
        service.save()
    root = settings.resolved_snapshot_path
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    leftover = root / f".tmp-{int(dead.stdout)}-0123abcd"
    leftover.mkdir()
    (leftover / "nodes.json.part").write_text('{"compo')
    ours = root / f".tmp-{os.getpid()}-beefbeef"  # a save of this process, still writing
    ours.mkdir()
    assert [r.version for r in service.list()] == [5, 4, 3, 2, 1]

    result = service.prune(keep=2)
    assert result == {"removed": [1, 2, 3], "kept": 2, "swept": [leftover.name]}
    assert sorted(p.name for p in root.iterdir()) == [ours.name, "v000004", "v000005"]
    assert [r.version for r in service.list()] == [5, 4]
    with pytest.raises(InvalidRequestError, match="at least 1"):
        service.prune(keep=0)
    # Numbers are never reused once listed.
    assert service.save().version == 6


def test_saves_prune_to_the_configured_maximum(store: Store, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", ollama_base_url="", snapshot_max_versions=3)
    service = PersistenceService(store, settings)
    for _ in range(5):
        service.save()
    assert [r.version for r in service.list()] == [5, 4, 3]
    assert sorted(p.name for p in settings.resolved_snapshot_path.iterdir()) == [
        "v000003", "v000004", "v000005"
    ]  # fmt: skip


def test_save_if_changed_skips_an_unchanged_state(
    service: PersistenceService, store: Store, settings: Settings
) -> None:
    populate(store, settings)
    assert service.save_if_changed() is not None
    assert service.save_if_changed() is None
    store.nodes.set_status("beta", "offline")  # health is not state
    assert service.save_if_changed() is None
    store.nodes.upsert("beta", "http://10.0.0.2:11434", "ollama", {"zone": "c"}, 1)
    changed = service.save_if_changed("shutdown")
    assert changed is not None and changed.reason == "shutdown"
    assert service.save().version == 3  # a manual save always writes


def test_automatic_saves_and_the_one_at_shutdown(store: Store, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", ollama_base_url="", snapshot_interval_s=0.05)
    service = PersistenceService(store, settings)

    async def run() -> None:
        service.start()
        store.nodes.add("one", "http://10.0.0.1:11434", "ollama")
        await asyncio.sleep(0.5)
        store.nodes.add("two", "http://10.0.0.2:11434", "ollama")
        await asyncio.sleep(0.5)
        store.nodes.add("three", "http://10.0.0.3:11434", "ollama")
        await service.aclose()

    asyncio.run(run())
    reasons = [r.reason for r in reversed(service.list())]
    # One automatic save per change (idle intervals write nothing), then the shutdown one.
    assert len(reasons) == 3
    assert reasons[:2] == ["auto", "auto"] and reasons[-1] in ("auto", "shutdown")
    last = service.show(service.list()[0].version, "nodes")["data"]
    assert [n["name"] for n in last] == ["one", "three", "two"]


def test_a_write_landing_between_two_components_reads_does_not_tear_a_version(
    store: Store, tmp_path: Path
) -> None:
    """Each component reads in its own transaction. A node added after "nodes" was read
    but before "node_models" was (what the CI run caught, an autosave racing an add) must
    not leave a version holding half of it: the save reads again until two reads agree."""
    from neurons.persistence.components import Component

    class AddsANodeOnceWhileRead(Component):
        name = "racing_writer"
        key = None
        calls = 0

        def collect(self, store: Store, settings: Settings) -> object:
            type(self).calls += 1
            if type(self).calls == 1:
                store.nodes.add("late", "http://10.0.0.9:11434", "ollama")
            return {}

    settings = Settings(home=tmp_path / "home", ollama_base_url="")
    store.nodes.add("early", "http://10.0.0.1:11434", "ollama")
    service = PersistenceService(store, settings, [*COMPONENTS, AddsANodeOnceWhileRead()])
    saved = service.save()
    names = [n["name"] for n in service.show(saved.version, "nodes")["data"]]
    assert names == ["early", "late"]
    assert service.save_if_changed() is None  # the version held the whole state


def test_an_interval_of_zero_saves_nothing_by_itself(store: Store, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", ollama_base_url="", snapshot_interval_s=0)
    service = PersistenceService(store, settings)

    async def run() -> None:
        service.start()
        store.nodes.add("one", "http://10.0.0.1:11434", "ollama")
        await asyncio.sleep(0.1)
        await service.aclose()

    asyncio.run(run())
    assert service.list() == []
