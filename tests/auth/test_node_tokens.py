"""Node tokens: a neuron started with one refuses every request without it, the control plane
that registered it with the token still reaches it (health, gateway, the official ollama
client through the gateway), and the token is kept sealed: never in the database, never in
an answer."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.auth.node_tokens import NodeTokens, origin
from neurons.auth.sealing import Sealer
from neurons.config import Settings
from neurons.errors import ConfigError
from neurons.neuron.process import NeuronProcess
from tests.conftest import free_port

TOKEN = "node-token-for-the-tests-9f8e7d6c5b4a"
SMOL = "smollm2:135m"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NeuronProcess]:
    home = tmp_path_factory.mktemp("guarded") / "home"
    process = NeuronProcess(
        home=home, port=free_port(), token=TOKEN, log_path=home.parent / "neuron.log"
    ).start()
    try:
        yield process
    finally:
        process.stop()


def _db_bytes(home: Path) -> bytes:
    # Read by another process: closing a file this process opened would drop the POSIX locks
    # a control plane's SQLite connections (in this process) hold on it.
    files = [str(p) for p in home.glob("neurons.db*")]
    return subprocess.run(["cat", *files], capture_output=True, check=True).stdout


def test_sealing_round_trips_and_keeps_its_key_private(tmp_path: Path) -> None:
    sealer = Sealer(tmp_path / "secret.key")
    sealed = sealer.seal(TOKEN)
    assert TOKEN not in sealed and sealer.unseal(sealed) == TOKEN
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600
    assert Sealer(tmp_path / "secret.key").unseal(sealed) == TOKEN  # the key file persists
    with pytest.raises(ConfigError, match="another key"):
        Sealer(tmp_path / "other.key").unseal(
            Sealer(tmp_path / "other.key").seal("x")[:-4] + "AAAA"
        )
    with pytest.raises(ConfigError, match="missing"):
        Sealer(tmp_path / "absent.key").unseal(sealed)


def test_tokens_are_matched_by_origin() -> None:
    tokens = NodeTokens({"http://Node-A:11434/": "a"})
    assert origin("http://node-a:11434/api/tags") == "http://node-a:11434"
    assert tokens.token("http://node-a:11434/api/chat") == "a"
    assert tokens.token("http://node-b:11434") is None
    assert tokens.headers("http://node-a:11434")["authorization"] == "Bearer a"
    assert "authorization" not in tokens.headers("http://node-b:11434")
    tokens.set("http://node-a:11434", None)
    assert tokens.token("http://node-a:11434") is None


def test_a_neuron_with_a_token_refuses_requests_without_it(guarded: NeuronProcess) -> None:
    for path in ("/", "/api/version", "/api/tags"):
        refused = httpx.get(guarded.url + path)
        assert refused.status_code == 401
        assert refused.json() == {"error": "this neuron requires its node token"}
    wrong = httpx.post(
        guarded.url + "/api/generate",
        json={"model": SMOL, "prompt": "Hi"},
        headers={"Authorization": "Bearer nope"},
    )
    assert wrong.status_code == 401 and TOKEN not in wrong.text
    with pytest.raises(ollama.ResponseError) as refused_client:
        ollama.Client(host=guarded.url).list()
    assert refused_client.value.status_code == 401
    client = ollama.Client(host=guarded.url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert SMOL in [m.model for m in client.list().models]
    keyed = httpx.get(guarded.url + "/api/tags", headers={"X-API-Key": TOKEN})
    assert keyed.status_code == 200


def test_the_token_reaches_the_neuron_by_environment_not_argv(guarded: NeuronProcess) -> None:
    assert guarded.process is not None
    argv = Path(f"/proc/{guarded.process.pid}/cmdline").read_bytes()
    assert TOKEN.encode() not in argv  # ps shows argv to every user
    log = guarded.log_path.read_bytes() if guarded.log_path else b""
    assert TOKEN.encode() not in log


def test_the_control_plane_reaches_a_guarded_neuron(guarded: NeuronProcess, tmp_path: Path) -> None:
    home = tmp_path / "plane"
    settings = Settings(home=home, ollama_base_url="", import_default_models=False)
    spec = NodeSpec("guarded", guarded.url, "embedded", token=TOKEN)
    with ServerThread(create_control_plane(settings, [spec]), port=free_port()) as plane:
        status = httpx.get(plane.url + "/api/ai/network/status").json()
        (node,) = status["nodes"]
        assert node["state"] == "online" and node["has_token"] is True
        assert TOKEN not in json.dumps(status)
        client = ollama.Client(host=plane.url)  # the gateway adds the node's token
        answer = client.generate(SMOL, "Hi", options={"num_predict": 2})
        assert answer.done
        assert SMOL in [m.model for m in client.list().models]
        streamed = list(
            client.chat(
                SMOL, [{"role": "user", "content": "Hi"}], stream=True, options={"num_predict": 2}
            )
        )
        assert streamed[-1].done
        copied = client.copy(SMOL, "guarded-copy:x")  # a model operation (httpx path)
        assert copied.status == "success"
        on_disk = _db_bytes(home)
    assert on_disk and TOKEN.encode() not in on_disk


def test_a_wrong_token_shows_as_a_clear_health_reason(
    guarded: NeuronProcess, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, ollama_base_url="", import_default_models=False)
    spec = NodeSpec("wrong", guarded.url, "embedded", token="not-the-token")
    with ServerThread(create_control_plane(settings, [spec]), port=free_port()) as plane:
        (node,) = httpx.get(plane.url + "/api/ai/network/status").json()["nodes"]
        assert node["state"] not in ("online", "degraded")
        assert "401" in node["last_error"] and "node token" in node["last_error"]
        assert "not-the-token" not in node["last_error"]


def test_node_add_with_a_token_over_rest(guarded: NeuronProcess, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, ollama_base_url="", import_default_models=False)
    with ServerThread(create_control_plane(settings, []), port=free_port()) as plane:
        body = {"url": guarded.url, "name": "g", "token": TOKEN}
        added = httpx.post(plane.url + "/api/ai/network/nodes", json=body, timeout=60)
        assert added.status_code == 201, added.text
        assert added.json()["node"]["has_token"] is True and TOKEN not in added.text
        listed = httpx.get(plane.url + "/api/ai/network/nodes")
        (node,) = listed.json()["nodes"]
        assert node["state"] == "online" and node["has_token"] is True
        assert TOKEN not in listed.text
        tags = ollama.Client(host=plane.url).list()  # the gateway sends the stored token
        assert SMOL in [m.model for m in tags.models]
        on_disk = _db_bytes(tmp_path)
    assert on_disk and TOKEN.encode() not in on_disk


def test_node_add_with_a_token_from_the_cli(guarded: NeuronProcess, tmp_path: Path) -> None:
    env = {**os.environ, "NEURONS_HOME": str(tmp_path), "OLLAMA_BASE_URL": ""}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "neurons", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    added = cli("node", "add", guarded.url, "--name", "g", "--token", TOKEN, "--json")
    assert added.returncode == 0, added.stderr
    node = json.loads(added.stdout)["node"]
    assert node["state"] == "online" and node["has_token"] is True
    assert TOKEN not in added.stdout
    listed = json.loads(cli("node", "ls", "--json").stdout)
    assert [n["has_token"] for n in listed["nodes"]] == [True]
    assert TOKEN.encode() not in _db_bytes(tmp_path)
    # The library's in-process view reaches the node with its token too.
    models = cli("models", "list", "--json")
    assert models.returncode == 0, models.stderr
    assert SMOL in models.stdout
