"""``neurons state`` as real subprocesses against a real state directory, and the crash loop:
a process saving snapshots in a loop, kill -9'd at random moments 30 times, after which every
listed version verifies, nothing partial is listed, and restoring the newest brings the
registry back exactly."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neurons.config import Settings
from neurons.store import Store, open_store
from tests.persistence.conftest import registry

# Saves in a loop, changing the registry before each one, and pruning to 4 versions after
# each (so kills also land in prunes).
SAVER = """
import sys
from neurons.config import Settings
from neurons.persistence import PersistenceService
from neurons.store import open_store

settings = Settings()
store = open_store(settings.resolved_database_url)
service = PersistenceService(store, settings)
i = int(sys.argv[1]) * 1000
print("ready", flush=True)
while True:
    i += 1
    store.nodes.upsert(f"n{i % 7}", f"http://10.0.{i % 200}.1:11434", "ollama",
                       {"round": str(i)}, i % 5)
    if i % 3 == 0:
        try:
            store.nodes.remove(f"n{(i + 3) % 7}")
        except Exception:
            pass
    store.placements.set(f"model{i % 4}", replicas=1 + i % 3)
    service.save("crash-test")
"""


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEURONS_", "OLLAMA_"))}
    env.update(NEURONS_HOME=str(home), OLLAMA_BASE_URL="", **extra)
    return env


def state(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neurons", "state", *args],
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )


def state_json(home: Path, *args: str) -> dict[str, Any]:
    done = state(home, *args, "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    assert data.pop("success") is True
    return data


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings(home=home, ollama_base_url="", import_default_models=False)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = open_store(settings.resolved_database_url)
    try:
        yield opened
    finally:
        opened.close()


def test_the_commands_round_trip(home: Path, store: Store, settings: Settings) -> None:
    store.nodes.add("alpha", "http://10.0.0.1:11434", "ollama", {"zone": "a"}, 2)
    store.nodes.add("beta", "http://10.0.0.2:11434", "ollama")
    store.placements.set("llama3", replicas=1)
    saved = state_json(home, "save")["snapshot"]
    assert saved["version"] == 1 and saved["reason"] == "manual"
    store.nodes.remove("beta")
    store.nodes.add("gamma", "http://10.0.0.3:11434", "embedded")
    done = state(home, "save", "--reason", "before-upgrade")
    assert done.returncode == 0, done.stderr
    assert "saved state snapshot v000002 (9 components" in done.stdout

    versions = state_json(home, "ls")["versions"]
    assert [(v["version"], v["reason"], v["status"]) for v in versions] == [
        (2, "before-upgrade", "complete"),
        (1, "manual", "complete"),
    ]
    listing = state(home, "ls").stdout
    assert "v000002" in listing and "before-upgrade" in listing

    nodes = state_json(home, "show", "v1", "nodes")["data"]
    assert [n["name"] for n in nodes] == ["alpha", "beta"]
    summary = state(home, "show", "1").stdout
    assert "nodes" in summary and "placements" in summary
    assert json.loads(state(home, "show", "v000001", "placements").stdout) == [
        {"model": "llama3:latest", "labels": {}, "replicas": 1}
    ]

    changes = state_json(home, "diff", "1", "2")["components"]["nodes"]
    assert (changes["added"], changes["removed"]) == (["gamma"], ["beta"])
    text = state(home, "diff", "1", "2").stdout
    assert "nodes: + gamma" in text and "nodes: - beta" in text

    verified = state(home, "verify")
    assert verified.returncode == 0 and "v000001 ok" in verified.stdout

    restored = state_json(home, "restore", "1")
    assert restored["restored"] == 1 and restored["pre_restore_version"] == 3
    assert [n.name for n in store.nodes.list()] == ["alpha", "beta"]
    assert restored["changes"]["nodes"] == {
        "added": ["beta"],
        "removed": ["gamma"],
        "changed": {},
    }

    pruned = state_json(home, "prune", "--keep", "1")
    assert pruned["removed"] == [1, 2] and pruned["kept"] == 1
    assert [v["version"] for v in state_json(home, "ls")["versions"]] == [3]

    bad = state(home, "show", "1")
    assert bad.returncode == 1 and "no state snapshot version 1" in bad.stderr
    assert "a snapshot version is a number" in state(home, "show", "x1").stderr


def test_verify_names_a_flipped_byte_and_restore_refuses_it(
    home: Path, store: Store, settings: Settings
) -> None:
    store.nodes.add("alpha", "http://10.0.0.1:11434", "ollama")
    state_json(home, "save")
    store.nodes.add("beta", "http://10.0.0.2:11434", "ollama")
    state_json(home, "save")
    bad = settings.resolved_snapshot_path / "v000002" / "nodes.json"
    data = bytearray(bad.read_bytes())
    data[10] ^= 0x20
    bad.write_bytes(bytes(data))

    verified = state(home, "verify")
    assert verified.returncode == 1
    assert f"v000002 CORRUPT {bad}: sha256" in verified.stdout
    assert "v000001 ok" in verified.stdout
    as_json = state(home, "verify", "2", "--json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["versions"][0]["problems"][0]["file"] == str(bad)

    refused = state(home, "restore", "2")
    assert refused.returncode == 1
    assert f"snapshot v2 is corrupt: {bad}" in refused.stderr
    assert "the last good version is v1" in refused.stderr
    assert sorted(n.name for n in store.nodes.list()) == ["alpha", "beta"]


@pytest.mark.slow
def test_kill_9_at_random_moments_never_lists_a_partial_version(
    home: Path, store: Store, settings: Settings
) -> None:
    rng = random.Random(2003)
    env = clean_env(home, NEURONS_SNAPSHOT_MAX_VERSIONS="4")
    started = time.monotonic()
    for run in range(30):
        with subprocess.Popen(
            [sys.executable, "-c", SAVER, str(run)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        ) as saver:
            assert saver.stdout is not None
            assert saver.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.25))
            saver.send_signal(signal.SIGKILL)
            assert saver.wait(timeout=30) == -signal.SIGKILL
    elapsed = time.monotonic() - started
    assert elapsed < 90, f"the crash loop took {elapsed:.0f}s"

    root = settings.resolved_snapshot_path
    listed = state_json(home, "ls")["versions"]
    assert listed, "no save finished in 30 runs"
    assert len(listed) <= 4 + 1  # pruned after every save (one kill may land before a prune)
    verified = state_json(home, "verify")
    assert verified["ok"] is True
    assert [v["version"] for v in verified["versions"]] == [v["version"] for v in listed]
    for version in listed:
        folder = root / f"v{version['version']:06d}"
        # Every listed version holds exactly its files, whole: nothing partial is listed.
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            f"{name}.json" for name in version["components"]
        )
        for name, meta in version["components"].items():
            assert (folder / f"{name}.json").stat().st_size == meta["bytes"]

    newest = listed[0]["version"]
    wanted_nodes = state_json(home, "show", str(newest), "nodes")["data"]
    wanted_placements = state_json(home, "show", str(newest), "placements")["data"]
    store.nodes.add("intruder", "http://10.9.9.9:11434", "ollama")  # surely different now
    restored = state_json(home, "restore", str(newest))
    assert restored["restored"] == newest
    assert registry(store, settings) == (wanted_nodes, wanted_placements)

    # Leftovers of the kills (temporary or unlisted directories) are swept by prune.
    state_json(home, "prune")
    remaining = {v["version"] for v in state_json(home, "ls")["versions"]}
    assert sorted(p.name for p in root.iterdir()) == sorted(f"v{v:06d}" for v in remaining)
