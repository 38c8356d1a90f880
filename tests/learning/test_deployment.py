"""The Flower deployment: command builders, the FAB's config, and one real loopback run."""

from __future__ import annotations

import importlib
import io
import os
import threading
import tomllib
import warnings
import zipfile
from dataclasses import fields
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk
from flwr.common.config import parse_config_args

from neurons.errors import InvalidRequestError, LearningStateError
from neurons.learning.deployment import (
    FAB_DIR,
    FlowerDeployment,
    pid_alive,
    run_config_arg,
    superlink_command,
    supernode_command,
)
from neurons.learning.federated import FederatedSettings, flower_identity, run_federated
from neurons.learning.flower_app import LocalGrid

ROOT = Path(__file__).resolve().parents[2]
LINK_FLAGS = ["--isolation", "subprocess", "--disable-runtime-dependency-installation"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {},
            ["flower-superlink", "--insecure", *LINK_FLAGS, "--host", "0.0.0.0", "--port", "8000"]
            + ["--database", ":flwr-in-memory:"],
        ),
        (
            {"port": 9100, "host": "127.0.0.1", "database": "/var/flwr/state.db"},
            ["flower-superlink", "--insecure", *LINK_FLAGS, "--host", "127.0.0.1"]
            + ["--port", "9100", "--database", "/var/flwr/state.db"],
        ),
        (
            {"insecure": False, "bin_dir": Path("/opt/venv/bin")},
            ["/opt/venv/bin/flower-superlink", *LINK_FLAGS, "--host", "0.0.0.0", "--port", "8000"]
            + ["--database", ":flwr-in-memory:"],
        ),
    ],
)
def test_superlink_command(kwargs: dict[str, object], expected: list[str]) -> None:
    assert superlink_command(**kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (
            ("10.0.0.5:8000", 0, 3),
            {},
            ["flower-supernode", "--insecure", "--superlink", "10.0.0.5:8000"]
            + ["--isolation", "subprocess", "--host", "127.0.0.1", "--port", "9094"]
            + ["--node-config", "partition-id=0 num-partitions=3"],
        ),
        (
            ("server.lan:9092", 2, 3),
            {"port": 9200, "insecure": False, "bin_dir": Path("/v/bin")},
            ["/v/bin/flower-supernode", "--superlink", "server.lan:9092"]
            + ["--isolation", "subprocess", "--host", "127.0.0.1", "--port", "9200"]
            + ["--node-config", "partition-id=2 num-partitions=3"],
        ),
    ],
)
def test_supernode_command(
    args: tuple[str, int, int], kwargs: dict[str, object], expected: list[str]
) -> None:
    assert supernode_command(*args, **kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: superlink_command(0), "port"),
        (lambda: superlink_command(70000), "port"),
        (lambda: supernode_command("h:1", 3, 3), "partition-id 3"),
        (lambda: supernode_command("h:1", -1, 3), "partition-id -1"),
        (lambda: supernode_command("h", 0, 3), "HOST:PORT"),
        (lambda: supernode_command("h:1", 0, 3, port=0), "port"),
        (lambda: run_config_arg({"out-path": 'a"b'}), "quotes"),
    ],
)
def test_builders_reject_bad_input(call: object, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    "config",
    [
        dict(FederatedSettings().to_run_config()),
        {**FederatedSettings(learning_rate=1e-5, mode="fedprox").to_run_config(), "out-path": ""},
        {"flag": True, "off": False, "n": -3, "x": 2.0, "path": "/tmp/a dir/r.jsonl"},
    ],
)
def test_run_config_arg_round_trips_through_flower(config: dict[str, object]) -> None:
    text = run_config_arg(config)  # type: ignore[arg-type]
    parsed = parse_config_args([text])
    assert parsed == config
    assert [type(v) for v in parsed.values()] == [type(v) for v in config.values()]


def test_run_config_arg_formats_toml() -> None:
    assert run_config_arg({"a": "x", "b": True, "c": False, "d": 3, "e": 0.5}) == (
        'a="x" b=true c=false d=3 e=0.5'
    )


def test_fab_config_matches_federated_settings() -> None:
    project = tomllib.loads((FAB_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    config = project["tool"]["flwr"]["app"]["config"]
    defaults = FederatedSettings().to_run_config()
    assert set(config) == {f.name.replace("_", "-") for f in fields(FederatedSettings)} | {
        "out-path"
    }
    assert config == {**defaults, "out-path": ""}
    assert {k: type(v) for k, v in config.items() if k != "out-path"} == {
        k: type(v) for k, v in defaults.items()
    }


def test_fab_is_only_a_pyproject_and_names_importable_apps() -> None:
    assert sorted(p.name for p in FAB_DIR.iterdir()) == ["pyproject.toml"]
    with warnings.catch_warnings():  # flwr 1.41 uses pathspec's deprecated gitwildmatch
        warnings.simplefilter("ignore", DeprecationWarning)
        fab = build_fab_from_disk(FAB_DIR)
    names = zipfile.ZipFile(io.BytesIO(fab)).namelist()
    assert [n for n in names if not n.startswith(".info/")] == ["pyproject.toml"]
    project = tomllib.loads((FAB_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["dependencies"] == []
    assert project["tool"]["flwr"]["app"]["publisher"] == "neurons"
    for ref in project["tool"]["flwr"]["app"]["components"].values():
        module, _, attr = ref.partition(":")
        assert getattr(importlib.import_module(module), attr) is not None


def test_fab_is_package_data() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert (
        "learning/flower_fab/pyproject.toml"
        in project["tool"]["setuptools"]["package-data"]["neurons"]
    )


def test_deployment_refuses_before_start(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError):
        FlowerDeployment(0, tmp_path)
    deployment = FlowerDeployment(3, tmp_path)
    with pytest.raises(LearningStateError, match="not started"):
        deployment.run(FederatedSettings(num_nodes=3))
    deployment.close()  # closing a deployment that never started is harmless


def flower_left(pid: int) -> list[int]:
    """Live processes under ``pid`` whose command line names Flower."""
    from neurons.learning.deployment import _descendants

    found = []
    for kid in _descendants(pid):
        try:
            cmdline = Path(f"/proc/{kid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if pid_alive(kid) and ("flwr" in cmdline or "flower" in cmdline):
            found.append(kid)
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_loopback_deployment_matches_in_process_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = FederatedSettings(
        mode="fedavg", num_nodes=3, rounds=2, local_steps=5, partition="iid"
    )
    seen: set[int] = set()
    done = threading.Event()

    def sample(deployment: FlowerDeployment) -> None:
        while not done.wait(0.5):
            seen.update(deployment.pids)

    with FlowerDeployment(3, tmp_path) as deployment:
        seen.update(deployment.pids)
        sampler = threading.Thread(target=sample, args=(deployment,), daemon=True)
        sampler.start()
        try:
            rounds = deployment.run(settings, timeout=600)
            # A second run on the same deployment whose ServerApp fails at once (rounds=0 is
            # refused by FederatedSettings): flwr run exits 0, but run() reads the status.
            valid = FederatedSettings.to_run_config
            monkeypatch.setattr(
                FederatedSettings, "to_run_config", lambda self: {**valid(self), "rounds": 0}
            )
            with pytest.raises(LearningStateError, match="finished:failed.*rounds must be"):
                deployment.run(settings, timeout=300)
        finally:
            done.set()
            sampler.join()
        seen.update(deployment.pids)
    assert len(seen) > 4  # the SuperLink, 3 SuperNodes, and the superexecs they started
    assert [pid for pid in seen if pid_alive(pid)] == []
    assert flower_left(os.getpid()) == []

    assert [r["round"] for r in rounds] == [1, 2]
    # lr 1e-3 and 5 local steps learn slowly: 0.13 then 0.325 on digits (chance is 0.1)
    assert rounds[1]["test_accuracy"] > max(0.2, rounds[0]["test_accuracy"]), rounds

    monkeypatch.undo()
    local: list[dict[str, float]] = []
    with flower_identity():
        run_federated(
            settings,
            LocalGrid(settings),
            lambda server_round, _, metrics: local.append({"round": server_round, **metrics}),
        )
    assert [r["round"] for r in local] == [1, 2]
    # Same seeds, same messages, same client code: the two agree to the last bit (the
    # tolerance only guards against summation order in aggregation, should Flower change it).
    for remote, here in zip(rounds, local, strict=True):
        for key in ("val_accuracy", "test_accuracy"):
            assert abs(remote[key] - here[key]) <= 1e-6, (key, rounds, local)
