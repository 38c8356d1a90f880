"""API keys: the secret a caller holds, the hash the store keeps, and what a key may do.

A secret is ``nk-`` followed by 32 URL-safe characters from 24 random bytes (192 bits). Only
its SHA-256 and a display prefix (``nk-`` and 6 characters) are stored, as LiteLLM stores
virtual keys: a stolen database gives no usable key, and the secrets are random enough that a
salt adds nothing.

>>> secret = new_secret()
>>> secret.startswith("nk-") and len(secret) == 35
True
>>> len(hash_secret(secret)), display_prefix(secret) == secret[:9]
(64, True)
>>> parse_expiry("30d").days, parse_expiry("12h").seconds
(30, 43200)
>>> KeySpec(name="ci", scope=Scope.INFERENCE, models=("smollm2:135m",), rpm=60).to_dict()["scope"]
'inference'
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from neurons.auth.scopes import Scope
from neurons.errors import InvalidRequestError
from neurons.ollama.names import canonical_name

__all__ = [
    "SECRET_PREFIX",
    "ApiKey",
    "KeySpec",
    "display_prefix",
    "hash_secret",
    "new_secret",
    "normalise_models",
    "parse_expiry",
    "parse_since",
    "presented_secret",
]

SECRET_PREFIX = "nk-"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_EXPIRY = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MAX_EXPIRY = timedelta(days=3650)


def presented_secret(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The secret a request shows: ``Authorization: Bearer S`` (what the ollama and OpenAI
    clients send) or ``X-API-Key: S``; raw ASGI headers in, bytes out (None: none shown).

    >>> presented_secret([(b"Authorization", b"Bearer nk-abc")])
    b'nk-abc'
    >>> presented_secret([(b"x-api-key", b" nk-def ")]), presented_secret([])
    (b'nk-def', None)
    """
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"authorization":
            if value[:7].lower() == b"bearer ":
                return value[7:].strip() or None
        elif lowered == b"x-api-key":
            return value.strip() or None
    return None


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(24)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(secret: str) -> str:
    """What listings show of a secret: enough to tell keys apart, far too little to use."""
    return secret[: len(SECRET_PREFIX) + 6]


def parse_expiry(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s`` or ``2w``: how long a new key lives."""
    match = _EXPIRY.match(text)
    if match is None:
        raise InvalidRequestError(
            f"expiry {text!r} is not a number and a unit (s, m, h, d or w), e.g. 30d"
        )
    span = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if span <= timedelta(0) or span > _MAX_EXPIRY:
        raise InvalidRequestError(f"expiry {text!r} must be more than 0 and at most 3650d")
    return span


def parse_since(text: str | None, now: datetime) -> datetime | None:
    """``--since``: an ISO time, or a span back from now (``1h``, ``7d``)."""
    if text is None or not text.strip():
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            return now - parse_expiry(text)
        except InvalidRequestError:
            raise InvalidRequestError(
                f"since {text!r} is neither an ISO time nor a span such as 1h or 7d"
            ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _positive(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(f"{name} must be a whole number of at least 1, not {value!r}")
    return value


@dataclass(frozen=True)
class KeySpec:
    """What a new key may do: its scope, the models it may use (none listed: all), and its
    limits (``None``: unlimited). Validated on construction; round-trips through
    :meth:`to_dict` / :meth:`from_dict`."""

    name: str
    scope: Scope = Scope.INFERENCE
    models: tuple[str, ...] = ()
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InvalidRequestError(
                "a key's name is 1-64 letters, digits, '.', '_', '@' or '-', "
                "starting with a letter or digit"
            )
        if not isinstance(self.scope, Scope):
            object.__setattr__(self, "scope", Scope.parse(str(self.scope)))
        object.__setattr__(self, "models", normalise_models(self.models))
        for limit in ("rpm", "tpm", "max_parallel"):
            _positive(limit, getattr(self, limit))
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise InvalidRequestError("expires_at must carry a time zone")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scope": str(self.scope),
            "models": list(self.models),
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_parallel": self.max_parallel,
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeySpec:
        expires = data.get("expires_at")
        return cls(
            name=data["name"],
            scope=Scope.parse(str(data.get("scope", "inference"))),
            models=tuple(data.get("models") or ()),
            rpm=data.get("rpm"),
            tpm=data.get("tpm"),
            max_parallel=data.get("max_parallel"),
            expires_at=None if expires is None else datetime.fromisoformat(expires),
        )


def normalise_models(models: Iterable[str]) -> tuple[str, ...]:
    """Model names as the gateway compares them (``smollm2`` is ``smollm2:latest``)."""
    names: list[str] = []
    for model in models:
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequestError("a key's models are non-empty model names")
        names.append(canonical_name(model.strip()))
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class ApiKey:
    """A stored key: its spec, identity and usage; never its secret."""

    id: str
    prefix: str
    secret_hash: str = field(repr=False)
    spec: KeySpec
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None = None
    requests: int = 0
    tokens: int = 0
    last_used_at: datetime | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.spec.expires_at is not None and self.spec.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self, now: datetime) -> dict[str, Any]:
        """The public view: what ``keys ls`` and ``GET /api/ai/keys`` show."""
        return {
            "id": self.id,
            "prefix": self.prefix,
            **self.spec.to_dict(),
            "state": self.state(now),
            "created_at": self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
            "requests": self.requests,
            "tokens": self.tokens,
            "last_used_at": None if self.last_used_at is None else self.last_used_at.isoformat(),
        }
