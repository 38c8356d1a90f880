"""The one auth service: keys (create, list, revoke, rotate), authenticating a request's
key, its limits and usage, and the audit trail. The REST routes, the CLI and the control
plane's middleware all call it.

The request path touches no database: keys are cached by secret hash and the cache is
reloaded when :meth:`ApiKeyRepository.generation` moves (checked every
:data:`REFRESH_S` seconds off the event loop), so a key revoked by ``neurons keys revoke`` in
another process stops working within that time, and one revoked through this service at once.
Usage (requests, tokens, last use) is counted in memory and written every :data:`FLUSH_S`.

Auth is on when a master key is configured or any key exists in the store, revoked and expired
ones included: revoking the last key must not open the door.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from neurons.auth.keys import ApiKey, KeySpec, display_prefix, hash_secret, new_secret
from neurons.auth.limits import InMemoryLimiter, Limiter, Limits
from neurons.auth.scopes import Scope
from neurons.errors import AuthenticationError, ConfigError, PermissionDeniedError
from neurons.ollama.names import canonical_name
from neurons.store import AuditEvent, KeyUsage, Store

__all__ = [
    "ANONYMOUS",
    "FLUSH_S",
    "REFRESH_S",
    "AuthService",
    "Principal",
    "is_loopback",
]

log = logging.getLogger(__name__)

REFRESH_S = 0.1
FLUSH_S = 1.0


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's name, scope, models and limits. ``key_id`` is None for the
    master key and for everyone while auth is off."""

    name: str
    scope: Scope
    key_id: str | None = None
    models: frozenset[str] = frozenset()
    limits: Limits = field(default_factory=Limits)
    expires_at: float | None = None  # epoch seconds

    def allows_model(self, model: str) -> bool:
        return not self.models or canonical_name(model) in self.models

    def check_model(self, model: str) -> None:
        if not self.allows_model(model):
            raise PermissionDeniedError(f"this API key may not use model {model!r}")

    def check_scope(self, needed: Scope) -> None:
        if not self.scope.allows(needed):
            raise PermissionDeniedError(
                f"this API key has scope {self.scope}; the request needs {needed}"
            )


ANONYMOUS = Principal(name="anonymous", scope=Scope.ADMIN)
_MASTER = Principal(name="master", scope=Scope.ADMIN)


@dataclass(frozen=True)
class _Cached:
    principal: Principal
    revoked: bool


def _principal(key: ApiKey) -> Principal:
    spec = key.spec
    return Principal(
        name=spec.name,
        scope=spec.scope,
        key_id=key.id,
        models=frozenset(spec.models),
        limits=Limits(spec.rpm, spec.tpm, spec.max_parallel),
        expires_at=None if spec.expires_at is None else spec.expires_at.timestamp(),
    )


class AuthService:
    def __init__(
        self, store: Store, master_key: str | None = None, limiter: Limiter | None = None
    ) -> None:
        self.store = store
        self.limiter = limiter or InMemoryLimiter()
        self._master_hash = None if master_key is None else hash_secret(master_key)
        self._by_hash: dict[str, _Cached] = {}
        self._generation: tuple[int, str | None] | None = None
        self._usage: dict[str, KeyUsage] = {}
        self._task: asyncio.Task[None] | None = None
        self.refresh()

    # -- the request path (no I/O) ----------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._master_hash is not None or bool(self._generation and self._generation[0])

    def authenticate(self, secret: str | None, now: float | None = None) -> Principal:
        """The caller holding ``secret``; AuthenticationError naming what is wrong (never
        repeating the secret)."""
        if not self.enabled:
            return ANONYMOUS
        if not secret:
            raise AuthenticationError(
                "missing API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key'"
            )
        digest = hash_secret(secret)
        if self._master_hash is not None and hmac.compare_digest(digest, self._master_hash):
            return _MASTER
        cached = self._by_hash.get(digest)
        if cached is None:
            raise AuthenticationError("invalid API key")
        if cached.revoked:
            raise AuthenticationError("this API key was revoked")
        expires = cached.principal.expires_at
        if expires is not None and expires <= (time.time() if now is None else now):
            raise AuthenticationError("this API key has expired")
        return cached.principal

    def admit(self, principal: Principal, now: float) -> bool:
        """Count a request against the key's limits (RateLimitError past one); True when
        :meth:`release` must follow."""
        if principal.key_id is None or principal.limits.unlimited:
            return False
        self.limiter.admit(principal.key_id, principal.limits, now)
        return True

    def release(self, principal: Principal) -> None:
        if principal.key_id is not None:
            self.limiter.release(principal.key_id)

    # A limiter that waits on I/O (the database's, shared by several control planes) runs in
    # a thread, and a request's tokens are charged once, when it ends, with its place.

    @property
    def charges_as_spent(self) -> bool:
        """Whether tokens are charged as an answer reports them (the in-memory limiter) or
        once, by :meth:`finish` (a blocking one: one database write a request)."""
        return not self.limiter.blocking

    async def admit_async(self, principal: Principal, now: float) -> bool:
        """:meth:`admit`, off the event loop when the limiter blocks."""
        if not self.limiter.blocking:
            return self.admit(principal, now)
        if principal.key_id is None or principal.limits.unlimited:
            return False
        await asyncio.to_thread(self.limiter.admit, principal.key_id, principal.limits, now)
        return True

    async def finish(self, principal: Principal, limited: bool, tokens: int, now: float) -> None:
        """A request ended under a blocking limiter: give its place back (when ``limited``)
        and charge its ``tokens`` (against a token limit), in one trip to a thread."""
        key_id = principal.key_id
        if key_id is None:
            return
        charged = tokens if principal.limits.tpm is not None else 0
        if limited:
            await asyncio.to_thread(self.limiter.finish, key_id, charged, now)
        elif charged > 0:
            await asyncio.to_thread(self.limiter.charge, key_id, charged, now)

    def charge(self, principal: Principal, tokens: int, now: float) -> None:
        """``principal`` spent ``tokens`` (counted against its tokens per minute at once)."""
        if principal.key_id is not None and principal.limits.tpm is not None and tokens > 0:
            self.limiter.charge(principal.key_id, tokens, now)

    def record_use(self, principal: Principal, tokens: int, now: float) -> None:
        """One finished request of ``principal`` that spent ``tokens`` (already charged):
        the key's stored usage."""
        key_id = principal.key_id
        if key_id is None:
            return
        used = self._usage.get(key_id)
        self._usage[key_id] = KeyUsage(
            requests=(used.requests if used else 0) + 1,
            tokens=(used.tokens if used else 0) + max(0, tokens),
            last_used_at=datetime.fromtimestamp(now, UTC),
        )

    # -- keys -------------------------------------------------------------------------------

    def create_key(self, spec: KeySpec) -> tuple[ApiKey, str]:
        """A new key and its secret, which is shown this once and never stored."""
        secret = new_secret()
        key = self.store.keys.add(spec, display_prefix(secret), hash_secret(secret))
        self.refresh(force=True)
        return key, secret

    def list_keys(self) -> list[ApiKey]:
        self.flush_usage()
        return self.store.keys.list()

    def revoke_key(self, ref: str) -> ApiKey:
        key = self.store.keys.revoke(ref)
        self.refresh(force=True)
        return key

    def rotate_key(self, ref: str) -> tuple[ApiKey, str]:
        """A new secret for a live key; the old secret stops working now."""
        secret = new_secret()
        key = self.store.keys.rotate(ref, display_prefix(secret), hash_secret(secret))
        self.refresh(force=True)
        return key, secret

    # -- audit ------------------------------------------------------------------------------

    def record_audit(
        self, actor: str, action: str, target: str, status: int, detail: dict[str, object]
    ) -> None:
        self.store.audit.record(actor, action, target, status, detail)

    def audit_events(
        self, since: datetime | None = None, limit: int = 100, actor: str | None = None
    ) -> list[AuditEvent]:
        return self.store.audit.list(since=since, limit=limit, actor=actor)

    # -- the cache and the usage writer -----------------------------------------------------

    def refresh(self, force: bool = False) -> None:
        """Reload the cached keys if any was added, revoked or rotated since the last load."""
        generation = self.store.keys.generation()
        if not force and generation == self._generation:
            return
        keys = self.store.keys.list()
        self._by_hash = {
            key.secret_hash: _Cached(_principal(key), key.revoked_at is not None) for key in keys
        }
        self._generation = generation

    def flush_usage(self) -> None:
        usage, self._usage = self._usage, {}
        try:
            self.store.keys.add_usage(usage)
        except Exception:
            log.exception("could not write keys' usage; it is kept for the next try")
            for key_id, used in usage.items():
                self._usage.setdefault(key_id, used)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await asyncio.to_thread(self.refresh)
                if time.monotonic() - last_flush >= FLUSH_S and self._usage:
                    last_flush = time.monotonic()
                    await asyncio.to_thread(self.flush_usage)
            except Exception:
                log.exception("refreshing API keys failed; the cache stays as it was")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self.flush_usage)
        await asyncio.to_thread(self.limiter.close)

    def check_exposure(self, host: str, insecure: bool) -> None:
        """Refuse to serve without keys on an address other than loopback, as Ollama's
        defaults keep it to loopback, unless ``insecure`` says so explicitly."""
        if self.enabled or insecure or is_loopback(host):
            return
        raise ConfigError(
            f"refusing to serve on {host} without API keys: anyone who can reach it could "
            "delete models and run jobs. Create a key first (neurons keys create --name admin "
            "--scope admin) or set NEURONS_MASTER_KEY, or bind 127.0.0.1, or pass --insecure "
            "if the network itself is trusted."
        )


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
