"""Keys on a real control plane in front of a real neuron, through clients nobody here wrote:
the official ``ollama`` and ``openai`` clients, plus plain HTTP for the management API.

The matrix: each scope (and no key, and a wrong key) against representative routes of the
three surfaces; allowed is 2xx, refused is 401 (no valid key) or 403 (scope too small), in the
surface's own error shape. Then revocation, expiry, the secret's absence from the database,
limits under 20 concurrent requests, tokens per minute, models a key may use, the audit trail
and the CLI beside a running control plane.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.neuron.process import NeuronProcess
from tests.conftest import free_port, wait_for

SMOL = "smollm2:135m"
MASTER = "master-key-for-the-tests-0123456789"
SCOPES = ("read", "inference", "manage", "admin")


@dataclass
class Plane:
    url: str
    home: Path
    secrets: dict[str, str]  # scope name -> secret of a key with that scope

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {MASTER}"}

    def create_key(self, **spec: Any) -> str:
        response = httpx.post(f"{self.url}/api/ai/keys", json=spec, headers=self.admin())
        assert response.status_code == 201, response.text
        secret: str = response.json()["secret"]
        return secret


@pytest.fixture(scope="module")
def plane(neuron: NeuronProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    home = tmp_path_factory.mktemp("auth") / "home"
    settings = Settings(
        home=home, ollama_base_url="", import_default_models=False, master_key=MASTER
    )
    app = create_control_plane(settings, [NodeSpec("n1", neuron.url, "embedded")])
    with ServerThread(app, port=free_port()) as server:
        found = Plane(server.url, home, {})
        for scope in SCOPES:
            found.secrets[scope] = found.create_key(name=f"{scope}-key", scope=scope)
        yield found


# -- the matrix ------------------------------------------------------------------------------


def _status(call: Callable[[], object]) -> int:
    """The HTTP status a client call ended with (200 when it returned)."""
    try:
        call()
    except ollama.ResponseError as exc:
        return exc.status_code
    except openai.APIStatusError as exc:
        return exc.status_code
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code
    return 200


def _ollama(url: str, secret: str | None) -> ollama.Client:
    headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
    return ollama.Client(host=url, headers=headers)


def _openai(url: str, secret: str | None) -> openai.OpenAI:
    # The openai client insists on a key; "none" stands for a caller without one.
    return openai.OpenAI(base_url=f"{url}/v1", api_key=secret or "none", max_retries=0)


def _http(url: str, secret: str | None, method: str, path: str, **kw: Any) -> None:
    headers = {} if secret is None else {"X-API-Key": secret}
    response = httpx.request(method, url + path, headers=headers, timeout=60, **kw)
    response.raise_for_status()


Call = Callable[[str, "str | None"], object]
ROUTES: list[tuple[str, str, Call]] = [
    # (name, scope needed, call)
    ("ollama list", "read", lambda u, s: _ollama(u, s).list()),
    ("ollama ps", "read", lambda u, s: _ollama(u, s).ps()),
    ("ollama show", "inference", lambda u, s: _ollama(u, s).show(SMOL)),
    (
        "ollama generate",
        "inference",
        lambda u, s: _ollama(u, s).generate(SMOL, "Hi", options={"num_predict": 2}),
    ),
    (
        "ollama embed",
        "inference",
        lambda u, s: _ollama(u, s).embed(SMOL, "hello"),
    ),
    ("ollama copy", "manage", lambda u, s: _ollama(u, s).copy(SMOL, f"copy-{os.getpid()}:x")),
    ("openai models", "read", lambda u, s: _openai(u, s).models.list()),
    (
        "openai chat",
        "inference",
        lambda u, s: _openai(u, s).chat.completions.create(
            model=SMOL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        ),
    ),
    ("network status", "read", lambda u, s: _http(u, s, "GET", "/api/ai/network/status")),
    ("network check", "manage", lambda u, s: _http(u, s, "POST", "/api/ai/network/check")),
    ("openapi", "read", lambda u, s: _http(u, s, "GET", "/openapi.json")),
    ("docs", "read", lambda u, s: _http(u, s, "GET", "/docs")),
    ("keys", "admin", lambda u, s: _http(u, s, "GET", "/api/ai/keys")),
    ("audit", "admin", lambda u, s: _http(u, s, "GET", "/api/ai/audit")),
]


@pytest.mark.parametrize(("name", "needed", "call"), ROUTES, ids=[r[0] for r in ROUTES])
def test_scope_matrix(plane: Plane, name: str, needed: str, call: Call) -> None:
    expected: dict[str, int] = {"no key": 401, "wrong key": 401}
    for scope in SCOPES:
        expected[scope] = 200 if SCOPES.index(scope) >= SCOPES.index(needed) else 403
    secrets: dict[str, str | None] = {
        "no key": None,
        "wrong key": "nk-" + "x" * 32,
        **plane.secrets,
    }
    got = {who: _status(lambda s=secret: call(plane.url, s)) for who, secret in secrets.items()}
    assert got == expected


def test_health_stays_open(plane: Plane) -> None:
    assert httpx.get(f"{plane.url}/api/health").status_code == 200


def test_refusals_answer_in_each_surface_shape(plane: Plane) -> None:
    reader = {"Authorization": f"Bearer {plane.secrets['read']}"}
    ollama_api = httpx.post(f"{plane.url}/api/pull", json={"model": SMOL}, headers=reader)
    assert ollama_api.status_code == 403
    assert set(ollama_api.json()) == {"error"}
    management = httpx.delete(f"{plane.url}/api/ai/network/nodes/n1", headers=reader)
    assert management.status_code == 403
    body = management.json()
    assert body["success"] is False and body["error_code"] == "forbidden"
    assert {"error", "timestamp"} <= set(body)
    with pytest.raises(openai.AuthenticationError) as refused:
        _openai(plane.url, "nk-wrong").models.list()
    assert refused.value.code == "invalid_api_key"
    for response in (ollama_api, management):
        assert plane.secrets["read"] not in response.text


# -- revocation, expiry, the database --------------------------------------------------------


def test_a_revoked_key_fails_on_its_next_request(plane: Plane) -> None:
    secret = plane.create_key(name="soon-revoked", scope="inference")
    client = _ollama(plane.url, secret)
    client.list()
    revoked = httpx.delete(f"{plane.url}/api/ai/keys/soon-revoked", headers=plane.admin())
    assert revoked.json()["key"]["state"] == "revoked"
    with pytest.raises(ollama.ResponseError) as refused:
        client.list()
    assert refused.value.status_code == 401 and "revoked" in str(refused.value)


def test_an_expired_key_fails(plane: Plane) -> None:
    secret = plane.create_key(name="brief", scope="read", expires="1s")
    client = _openai(plane.url, secret)
    time.sleep(1.1)
    with pytest.raises(openai.AuthenticationError, match="expired"):
        client.models.list()


def test_the_database_holds_no_secret(plane: Plane) -> None:
    # Read by another process: closing a file this process opened would drop the POSIX locks
    # the control plane's SQLite connections (in this process) hold on it.
    files = [str(p) for p in plane.home.glob("neurons.db*")]
    on_disk = subprocess.run(["cat", *files], capture_output=True, check=True).stdout
    assert on_disk  # the store is there
    for secret in plane.secrets.values():
        assert secret.encode() not in on_disk
    assert MASTER.encode() not in on_disk


# -- limits ----------------------------------------------------------------------------------


def _burst(
    url: str, secret: str, n: int, send: Callable[[httpx.Client], httpx.Response]
) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(lambda _: send(client), range(n)))


def test_rpm_under_20_concurrent_requests(plane: Plane) -> None:
    secret = plane.create_key(name="rpm-5", scope="inference", rpm=5)
    answers = _burst(plane.url, secret, 20, lambda c: c.post("/api/show", json={"model": SMOL}))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 5 + [429] * 15
    for refused in (r for r in answers if r.status_code == 429):
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "requests per minute" in refused.json()["error"]


def test_max_parallel_under_20_concurrent_requests(plane: Plane) -> None:
    secret = plane.create_key(name="parallel-2", scope="inference", max_parallel=2)
    body = {"model": SMOL, "prompt": "Count to ten", "stream": False}
    body["options"] = {"num_predict": 8}
    answers = _burst(plane.url, secret, 20, lambda c: c.post("/api/generate", json=body))
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 429}
    assert 2 <= statuses.count(200) < 20  # never more than two at once, so some are refused
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.headers["Retry-After"] == "1" and "in flight" in refused.json()["error"]


def test_tpm_stops_a_key_that_spent_its_tokens(plane: Plane) -> None:
    secret = plane.create_key(name="tpm-20", scope="inference", tpm=20)
    client = _ollama(plane.url, secret)
    first = client.generate(SMOL, "Tell me a story", options={"num_predict": 16})
    assert (first.prompt_eval_count or 0) + (first.eval_count or 0) >= 20
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(SMOL, "Again", options={"num_predict": 2})
    assert refused.value.status_code == 429 and "tokens" in str(refused.value)
    # OpenAI streams count too: a fresh key spends its tokens through a streamed chat.
    streamer = plane.create_key(name="tpm-20-openai", scope="inference", tpm=20)
    stream = _openai(plane.url, streamer).chat.completions.create(
        model=SMOL,
        messages=[{"role": "user", "content": "Write a poem about the sea"}],
        max_tokens=24,
        stream=True,
    )
    assert list(stream)
    with pytest.raises(openai.RateLimitError):
        _openai(plane.url, streamer).chat.completions.create(
            model=SMOL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )


def test_usage_is_stored_and_listed(plane: Plane) -> None:
    secret = plane.create_key(name="metered", scope="inference")
    client = _ollama(plane.url, secret)
    answers = [client.generate(SMOL, "Hi", options={"num_predict": 3}) for _ in range(2)]
    spent = sum((a.prompt_eval_count or 0) + (a.eval_count or 0) for a in answers)

    def listed() -> dict[str, Any]:
        keys = httpx.get(f"{plane.url}/api/ai/keys", headers=plane.admin()).json()["keys"]
        entry: dict[str, Any] = next(k for k in keys if k["name"] == "metered")
        return entry

    wait_for(lambda: listed()["requests"] == 2, timeout=10)
    entry = listed()
    assert entry["tokens"] == spent and entry["last_used_at"]


# -- models a key may use ---------------------------------------------------------------------


def test_a_key_sees_and_uses_only_its_models(plane: Plane) -> None:
    other = "not-this-one:latest"
    secret = plane.create_key(name="only-other", scope="inference", models=[other])
    client = _ollama(plane.url, secret)
    assert [m.model for m in client.list().models] == []  # the neuron has no such model
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(SMOL, messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.status_code == 403 and SMOL in str(refused.value)
    with pytest.raises(openai.PermissionDeniedError):
        _openai(plane.url, secret).chat.completions.create(
            model=SMOL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
    assert _openai(plane.url, secret).models.list().data == []

    allowed = plane.create_key(name="only-smol", scope="inference", models=["smollm2:135m"])
    names = [m.model for m in _ollama(plane.url, allowed).list().models]
    assert names == [SMOL]
    assert _ollama(plane.url, allowed).generate(SMOL, "Hi", options={"num_predict": 2}).done


# -- the audit trail and the CLI --------------------------------------------------------------


def test_mutating_calls_are_audited_with_who_what_target_result(plane: Plane) -> None:
    manager = _ollama(plane.url, plane.secrets["manage"])
    manager.copy(SMOL, "audited:copy")
    with pytest.raises(ollama.ResponseError):
        _ollama(plane.url, plane.secrets["read"]).delete(SMOL)
    events = httpx.get(
        f"{plane.url}/api/ai/audit", params={"since": "5m"}, headers=plane.admin()
    ).json()["events"]
    seen = [(e["actor"], e["action"], e["target"], e["status"]) for e in events]
    assert ("manage-key", "POST /api/copy", f"{SMOL} -> audited:copy", 200) in seen
    assert ("read-key", "DELETE /api/delete", SMOL, 403) in seen
    assert not any(e["action"].startswith("POST /api/chat") for e in events)
    assert all(s not in json.dumps(events) for s in plane.secrets.values())


def _cli(plane: Plane, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEURONS_HOME": str(plane.home)}
    env.pop("NEURONS_API_KEY", None)
    if key is not None:
        env["NEURONS_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "neurons", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_manages_keys_beside_a_running_control_plane(plane: Plane) -> None:
    created = _cli(plane, "keys", "create", "--name", "from-cli", "--scope", "read")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("nk-") and "not shown again" in created.stderr
    client = _openai(plane.url, secret)
    wait_for(lambda: _status(client.models.list) == 200, timeout=5)

    listing = _cli(plane, "keys", "ls", "--json")
    keys = {k["name"]: k for k in json.loads(listing.stdout)["keys"]}
    assert keys["from-cli"]["scope"] == "read" and secret not in listing.stdout

    rotated = _cli(plane, "keys", "rotate", "from-cli")
    assert rotated.returncode == 0, rotated.stderr
    new_secret = rotated.stdout.strip()
    assert _status(_openai(plane.url, new_secret).models.list) == 200
    assert _status(client.models.list) == 401

    revoked = _cli(plane, "keys", "revoke", "from-cli")
    assert revoked.returncode == 0, revoked.stderr
    assert _status(_openai(plane.url, new_secret).models.list) == 401

    trail = json.loads(_cli(plane, "audit", "--since", "1h", "--json").stdout)["events"]
    assert ("cli", "keys revoke", "from-cli") in [
        (e["actor"], e["action"], e["target"]) for e in trail
    ]
    bad = _cli(plane, "keys", "create", "--name", "x", "--scope", "root")
    assert bad.returncode == 1 and "unknown scope" in bad.stderr


def test_the_ollama_style_cli_sends_neurons_api_key(plane: Plane) -> None:
    listed = _cli(plane, "list", "--host", plane.url, key=plane.secrets["read"])
    assert listed.returncode == 0, listed.stderr
    assert SMOL in listed.stdout
    refused = _cli(plane, "list", "--host", plane.url)
    assert refused.returncode == 1 and "missing API key" in refused.stderr
