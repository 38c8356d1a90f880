"""Node tokens sealed before they reach the store: the control plane must send a node's token
on every call, so unlike an API key it cannot keep only a hash. It keeps the token encrypted
(Fernet: AES-128-CBC with an HMAC) under a key that lives in a file beside the database, not
in it, created with mode 0600 on first use. A stolen database alone yields no token.

Several control planes on one database (PostgreSQL) must share the key file
(``NEURONS_SECRET_KEY_FILE``).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from neurons.errors import ConfigError

__all__ = ["Sealer"]


class Sealer:
    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._fernet: Fernet | None = None

    def seal(self, secret: str) -> str:
        return self._cipher(create=True).encrypt(secret.encode("utf-8")).decode("ascii")

    def unseal(self, sealed: str) -> str:
        try:
            return self._cipher(create=False).decrypt(sealed.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ConfigError(
                f"a node token in the store was sealed with another key than {self.key_file}; "
                "copy that control plane's key file here, or register the node again "
                "(neurons node rm NAME; neurons node add URL --name NAME --token T)"
            ) from None

    def _cipher(self, create: bool) -> Fernet:
        if self._fernet is None:
            self._fernet = Fernet(self._key(create))
        return self._fernet

    def _key(self, create: bool) -> bytes:
        try:
            return self.key_file.read_bytes().strip()
        except FileNotFoundError:
            if not create:
                raise ConfigError(
                    f"the store holds sealed node tokens but the key file {self.key_file} is "
                    "missing"
                ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read the key file {self.key_file}: {exc.strerror}") from exc
        key = Fernet.generate_key()
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes sealing at once must not each write their own key.
        try:
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.key_file.read_bytes().strip()
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        return key
