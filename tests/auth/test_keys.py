"""Keys in a real SQLite store: what is kept (a hash, never the secret), revocation and
rotation seen by a second service on the same database (another process, such as
``neurons keys revoke`` beside a running control plane), expiry, usage and the audit trail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from neurons.auth.keys import KeySpec, hash_secret, parse_expiry, parse_since
from neurons.auth.scopes import Scope, is_mutating, required_scope
from neurons.auth.service import ANONYMOUS, AuthService, is_loopback
from neurons.errors import (
    AuthenticationError,
    ConfigError,
    InvalidRequestError,
    KeyExistsError,
    KeyNotFoundError,
    KeyStateError,
    PermissionDeniedError,
)
from neurons.store import Store, open_store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "neurons.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{db}")
    try:
        yield opened
    finally:
        opened.close()


def _bytes_on_disk(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def test_no_key_means_auth_off_and_the_first_key_turns_it_on(store: Store) -> None:
    service = AuthService(store)
    assert not service.enabled
    assert service.authenticate(None) is ANONYMOUS
    key, secret = service.create_key(KeySpec(name="first", scope=Scope.READ))
    assert service.enabled
    with pytest.raises(AuthenticationError, match="missing"):
        service.authenticate(None)
    assert service.authenticate(secret).name == "first"
    service.revoke_key("first")
    assert service.enabled  # revoking the last key does not open the door


def test_the_store_keeps_a_hash_and_a_prefix_never_the_secret(store: Store, db: Path) -> None:
    service = AuthService(store)
    secrets = [service.create_key(KeySpec(name=f"k{i}"))[1] for i in range(3)]
    secrets.append(service.rotate_key("k0")[1])
    store.close()
    on_disk = _bytes_on_disk(db)
    for secret in secrets:
        assert secret.startswith("nk-") and len(secret) >= 3 + 22  # at least 128 random bits
        assert secret.encode() not in on_disk
        assert secret[3:].encode() not in on_disk
    assert hash_secret(secrets[-1]).encode() in on_disk


def test_a_second_service_sees_revocation_and_rotation(store: Store, db: Path) -> None:
    control_plane = AuthService(store)
    cli_store = open_store(f"sqlite:///{db}")
    try:
        cli = AuthService(cli_store)
        _, secret = cli.create_key(KeySpec(name="shared", scope=Scope.MANAGE))
        control_plane.refresh()
        assert control_plane.authenticate(secret).scope is Scope.MANAGE
        _, rotated = cli.rotate_key("shared")
        control_plane.refresh()
        with pytest.raises(AuthenticationError, match="invalid"):
            control_plane.authenticate(secret)
        assert control_plane.authenticate(rotated).name == "shared"
        cli.revoke_key("shared")
        control_plane.refresh()
        with pytest.raises(AuthenticationError, match="revoked"):
            control_plane.authenticate(rotated)
        with pytest.raises(KeyStateError):
            cli.rotate_key("shared")
    finally:
        cli_store.close()


def test_expired_keys_fail(store: Store) -> None:
    service = AuthService(store)
    soon = datetime.now(UTC) + timedelta(seconds=30)
    _, secret = service.create_key(KeySpec(name="brief", expires_at=soon))
    assert service.authenticate(secret, now=time.time()).name == "brief"
    with pytest.raises(AuthenticationError, match="expired"):
        service.authenticate(secret, now=soon.timestamp() + 1)
    assert service.list_keys()[0].state(soon + timedelta(seconds=1)) == "expired"


def test_keys_are_found_by_name_id_or_prefix(store: Store) -> None:
    service = AuthService(store)
    key, secret = service.create_key(KeySpec(name="alpha"))
    assert store.keys.find(key.id).name == "alpha"
    assert store.keys.find(secret[:9]).name == "alpha"
    with pytest.raises(KeyNotFoundError):
        store.keys.find("nope")
    with pytest.raises(KeyExistsError):
        service.create_key(KeySpec(name="alpha"))


def test_usage_is_counted_and_flushed(store: Store) -> None:
    service = AuthService(store)
    _, secret = service.create_key(KeySpec(name="user", tpm=1000))
    principal = service.authenticate(secret)
    now = time.time()
    service.record_use(principal, 12, now)
    service.record_use(principal, 30, now + 1)
    (key,) = service.list_keys()  # listing flushes first
    assert (key.requests, key.tokens) == (2, 42)
    assert key.last_used_at is not None


def test_models_and_scopes(store: Store) -> None:
    service = AuthService(store)
    _, secret = service.create_key(
        KeySpec(name="narrow", scope=Scope.INFERENCE, models=("smollm2:135m", "tiny"))
    )
    principal = service.authenticate(secret)
    assert principal.allows_model("smollm2:135m")
    assert principal.allows_model("registry.ollama.ai/library/tiny:latest")
    with pytest.raises(PermissionDeniedError, match="gemma"):
        principal.check_model("gemma3:270m")
    with pytest.raises(PermissionDeniedError, match="needs manage"):
        principal.check_scope(Scope.MANAGE)


def test_audit_trail_round_trips(store: Store) -> None:
    service = AuthService(store)
    service.record_audit("ops", "POST /api/copy", "a -> b", 200, {"method": "POST"})
    service.record_audit("intruder", "DELETE /api/delete", "a", 401, {"error": "invalid"})
    events = service.audit_events()
    assert [(e.actor, e.status) for e in events] == [("ops", 200), ("intruder", 401)]
    assert [e.actor for e in service.audit_events(actor="ops")] == ["ops"]
    future = datetime.now(UTC) + timedelta(minutes=1)
    assert service.audit_events(since=future) == []


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/api/health", None),
        ("GET", "/api/tags", Scope.READ),
        ("GET", "/openapi.json", Scope.READ),
        ("GET", "/docs", Scope.READ),
        ("GET", "/v1/models", Scope.READ),
        ("POST", "/api/show", Scope.INFERENCE),
        ("POST", "/api/embed", Scope.INFERENCE),
        ("POST", "/v1/chat/completions", Scope.INFERENCE),
        ("POST", "/api/pull", Scope.MANAGE),
        ("DELETE", "/api/delete", Scope.MANAGE),
        ("POST", "/api/ai/ollama/optimization/start/x", Scope.MANAGE),
        ("DELETE", "/api/ai/network/nodes/n1", Scope.MANAGE),
        ("GET", "/api/ai/keys", Scope.ADMIN),
        ("POST", "/api/ai/keys/k/rotate", Scope.ADMIN),
        ("GET", "/api/ai/audit", Scope.ADMIN),
        ("GET", "/api/ai/keysmith", Scope.READ),
    ],
)
def test_route_scopes(method: str, path: str, scope: Scope | None) -> None:
    assert required_scope(method, path) == scope


def test_only_state_changing_calls_are_audited() -> None:
    assert is_mutating("POST", "/api/pull")
    assert is_mutating("POST", "/api/ai/keys")
    assert not is_mutating("POST", "/api/chat")
    assert not is_mutating("GET", "/api/ai/keys")


def test_validation() -> None:
    assert parse_expiry("2w") == timedelta(days=14)
    for bad in ("30", "0d", "-1d", "1y", "99999d"):
        with pytest.raises(InvalidRequestError):
            parse_expiry(bad)
    with pytest.raises(InvalidRequestError, match="name"):
        KeySpec(name="../etc")
    with pytest.raises(InvalidRequestError, match="rpm"):
        KeySpec(name="x", rpm=0)
    with pytest.raises(InvalidRequestError, match="scope"):
        Scope.parse("root")
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_since("1h", now) == now - timedelta(hours=1)
    assert parse_since("2026-01-01T00:00:00", now) == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidRequestError):
        parse_since("yesterday", now)


def test_exposure_rule(store: Store) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    open_plane = AuthService(store)
    open_plane.check_exposure("127.0.0.1", insecure=False)
    open_plane.check_exposure("0.0.0.0", insecure=True)
    with pytest.raises(ConfigError, match="--insecure"):
        open_plane.check_exposure("0.0.0.0", insecure=False)
    AuthService(store, master_key="m" * 40).check_exposure("0.0.0.0", insecure=False)


def test_master_key_from_env_or_file(tmp_path: Path) -> None:
    from neurons.config import Settings

    assert Settings(home=tmp_path, master_key=" m1 ").resolved_master_key == "m1"
    key_file = tmp_path / "master.key"
    key_file.write_text("from-a-file\n")
    assert Settings(home=tmp_path, master_key_file=key_file).resolved_master_key == "from-a-file"
    assert Settings(home=tmp_path).resolved_master_key is None
    assert "m1" not in Settings(home=tmp_path, master_key="m1").to_json()
    with pytest.raises(ConfigError, match="cannot read"):
        _ = Settings(home=tmp_path, master_key_file=tmp_path / "missing").resolved_master_key


def test_serving_beyond_loopback_without_keys_refuses_to_start(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "NEURONS_HOME": str(tmp_path), "OLLAMA_BASE_URL": ""}
    env.pop("NEURONS_MASTER_KEY", None)
    refused = subprocess.run(
        [sys.executable, "-m", "neurons", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "refusing to serve on 0.0.0.0 without API keys" in refused.stderr
    assert "--insecure" in refused.stderr
