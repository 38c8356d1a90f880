"""The one error hierarchy of neurons.

Every error raised on purpose by the library derives from :class:`NeuronsError`. Each class
knows its ``error_code`` (stable, machine-readable) and ``http_status``; the edges (Ollama-API
routes, the management API, the CLI) translate once, in one place each, and never re-derive
status codes.

    NeuronsError
    ├── ConfigError                    invalid settings                       500
    ├── ComponentError                 a system component failed to start     500
    ├── StoreError                     database problems                      500
    │   └── MigrationError              a migration failed or is unknown       500
    ├── InvalidRequestError            bad input from a caller                400
    │   ├── InvalidModelNameError      name not of the form host/ns/model:tag 400
    │   ├── InvalidDigestError         digest not sha256:<64 hex>             400
    │   ├── DigestMismatchError        uploaded bytes do not hash to digest   400
    │   ├── InvalidOptionError         an option has the wrong type/value     400
    │   ├── InvalidModelFileError      a blob is not a usable GGUF            400
    │   ├── ModelfileError             a Modelfile does not parse or validate 400
    │   │                              (also a ValueError, as the seed's manager promises)
    │   ├── LearningKeyError           a learning run key is unknown or its   400
    │   │                              value refused (``keys`` names it)
    │   ├── PayloadTooLargeError       a body over the configured cap         413
    │   ├── NodeExistsError            a node with that name already exists   409
    │   ├── SessionStateError          not allowed in the session's status    409
    │   ├── JobStateError              not allowed in the job's status        409
    │   ├── LearningStateError         a learning node or run cannot do that  409
    │   ├── KeyExistsError             an API key with that name exists       409
    │   ├── KeyStateError              e.g. rotating a revoked key            409
    │   └── SnapshotCorruptError       a state snapshot fails its checksums   409
    ├── AuthenticationError            no valid key (missing, unknown,        401
    │                                  revoked, expired) or node token
    ├── PermissionDeniedError          the key's scope or models refuse it    403
    ├── RateLimitError                 a key is past one of its limits        429
    ├── NotFoundError                  something named does not exist         404
    │   ├── ModelNotFoundError         no manifest for that model             404
    │   ├── BlobNotFoundError          no blob with that digest               404
    │   ├── NodeNotFoundError          no node with that id or name           404
    │   ├── SessionNotFoundError       no optimization session with that id   404
    │   ├── JobNotFoundError           no fine-tuning job with that id        404
    │   ├── LearningRunNotFoundError   no learning run with that id           404
    │   ├── KeyNotFoundError           no API key with that id, name, prefix  404
    │   ├── SnapshotNotFoundError      no state snapshot version or component 404
    │   ├── MemoryNotFoundError        no memory entry with that id           404
    │   └── ComponentNotFoundError     no system component with that name     404
    ├── ServerBusyError                the request queue is full              503
    │   ├── NoNodeAvailableError        no healthy node can serve the request  503
    │   └── EmbeddingsUnavailableError  the embedding model is off             503
    ├── RequestCancelledError          the client went away                   499
    ├── RegistryError                  pulling from a registry failed         500
    ├── EngineError                    llama.cpp failed to load or run        500
    ├── InferenceError                 the embedding model failed to run      500
    │   └── ModelLoadError              its files are missing or not loadable  500
    ├── PluginError                    a plugin failed to load or misbehaved  500
    └── NodeError                      talking to another node failed         502
        ├── NodeUnreachableError       connection refused / timed out         502
        └── SyncError                  copying a model between nodes failed   502
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BlobNotFoundError",
    "ComponentError",
    "ComponentNotFoundError",
    "ConfigError",
    "DigestMismatchError",
    "EmbeddingsUnavailableError",
    "EngineError",
    "InferenceError",
    "InvalidDigestError",
    "InvalidModelFileError",
    "InvalidModelNameError",
    "InvalidOptionError",
    "InvalidRequestError",
    "JobNotFoundError",
    "JobStateError",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyStateError",
    "LearningKeyError",
    "LearningRunNotFoundError",
    "LearningStateError",
    "MemoryNotFoundError",
    "MigrationError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelfileError",
    "NeuronsError",
    "NoNodeAvailableError",
    "NodeError",
    "NodeExistsError",
    "NodeNotFoundError",
    "NodeUnreachableError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PluginError",
    "RateLimitError",
    "RegistryError",
    "RequestCancelledError",
    "ServerBusyError",
    "SessionNotFoundError",
    "SessionStateError",
    "SnapshotCorruptError",
    "SnapshotNotFoundError",
    "StoreError",
    "SyncError",
]


class NeuronsError(Exception):
    """Root of every error neurons raises on purpose."""

    error_code: str = "internal_error"
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(NeuronsError):
    error_code = "config_error"


class ComponentError(NeuronsError):
    """A component of the system failed to start; ``component`` names it and the original
    error is the ``__cause__``."""

    error_code = "component_failed"

    def __init__(self, component: str, message: str) -> None:
        super().__init__(message)
        self.component = component


class StoreError(NeuronsError):
    error_code = "store_error"


class MigrationError(StoreError):
    error_code = "migration_error"


class InvalidRequestError(NeuronsError):
    error_code = "invalid_request"
    http_status = 400


class InvalidModelNameError(InvalidRequestError):
    error_code = "invalid_model_name"


class InvalidDigestError(InvalidRequestError):
    error_code = "invalid_digest"


class DigestMismatchError(InvalidRequestError):
    error_code = "digest_mismatch"


class InvalidOptionError(InvalidRequestError):
    error_code = "invalid_option"


class InvalidModelFileError(InvalidRequestError):
    error_code = "invalid_model_file"


class LearningKeyError(InvalidRequestError):
    """A learning run's configuration refused, with the keys to blame as the caller wrote
    them (``--rounds``, ``model.type``, ...): the CLI exits 2 for a usage error, 1 for a
    flag's refusal, as the other refusals."""

    def __init__(self, message: str, keys: tuple[str, ...]) -> None:
        super().__init__(message)
        self.keys = keys


class ModelfileError(InvalidRequestError, ValueError):
    """A Modelfile that does not parse or validate.

    ``problems`` holds every problem found, each already prefixed ``(line N): `` where a line
    is known, the way Ollama's parser words them; the message joins them with newlines.
    """

    error_code = "invalid_modelfile"

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class NodeExistsError(InvalidRequestError):
    """A conflict, not a malformed request: the name is taken, so 409 rather than 400."""

    error_code = "node_exists"
    http_status = 409


class SessionStateError(InvalidRequestError):
    """E.g. starting a completed session or applying one without results: 409, like a
    name conflict, because the request is well formed but the session's state refuses it."""

    error_code = "invalid_session_state"
    http_status = 409


class JobStateError(InvalidRequestError):
    """The fine-tuning job's status does not allow this (e.g. starting a completed job)."""

    error_code = "invalid_job_state"
    http_status = 409


class LearningStateError(InvalidRequestError):
    """A learning node or run cannot do that now (a full teacher, a finished run)."""

    error_code = "invalid_learning_state"
    http_status = 409


class PayloadTooLargeError(InvalidRequestError):
    error_code = "payload_too_large"
    http_status = 413


class AuthenticationError(NeuronsError):
    """No valid credential: the message says which (missing, unknown, revoked, expired) and
    never repeats the secret it was given."""

    error_code = "unauthorized"
    http_status = 401


class PermissionDeniedError(NeuronsError):
    error_code = "forbidden"
    http_status = 403


class RateLimitError(NeuronsError):
    """A key is past a limit; ``retry_after`` is the whole seconds until it frees up."""

    error_code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class KeyExistsError(InvalidRequestError):
    error_code = "key_exists"
    http_status = 409


class KeyStateError(InvalidRequestError):
    error_code = "invalid_key_state"
    http_status = 409


class SnapshotCorruptError(InvalidRequestError):
    """A state snapshot whose files no longer match their recorded sha256 (or are missing):
    the message names the bad file and the newest version that still verifies."""

    error_code = "snapshot_corrupt"
    http_status = 409


class NotFoundError(NeuronsError):
    error_code = "not_found"
    http_status = 404


class ModelNotFoundError(NotFoundError):
    error_code = "model_not_found"


class BlobNotFoundError(NotFoundError):
    error_code = "blob_not_found"


class NodeNotFoundError(NotFoundError):
    error_code = "node_not_found"


class SessionNotFoundError(NotFoundError):
    error_code = "session_not_found"


class JobNotFoundError(NotFoundError):
    error_code = "job_not_found"


class LearningRunNotFoundError(NotFoundError):
    error_code = "learning_run_not_found"


class KeyNotFoundError(NotFoundError):
    error_code = "key_not_found"


class SnapshotNotFoundError(NotFoundError):
    error_code = "snapshot_not_found"


class ComponentNotFoundError(NotFoundError):
    error_code = "component_not_found"


class MemoryNotFoundError(NotFoundError):
    error_code = "memory_entry_not_found"


class ServerBusyError(NeuronsError):
    error_code = "server_busy"
    http_status = 503


class NoNodeAvailableError(ServerBusyError):
    error_code = "no_node_available"


class EmbeddingsUnavailableError(ServerBusyError):
    """The control plane runs no embedding model (settings: inference off), so what needs
    one (language memory) cannot answer; 503 like a busy server, but not worth a retry."""

    error_code = "embeddings_unavailable"


class RequestCancelledError(NeuronsError):
    error_code = "request_cancelled"
    http_status = 499


class RegistryError(NeuronsError):
    error_code = "registry_error"


class EngineError(NeuronsError):
    error_code = "engine_error"


class InferenceError(NeuronsError):
    """The in-process embedding model (``neurons.inference``) failed a forward pass, or its
    service is not running."""

    error_code = "inference_error"


class ModelLoadError(InferenceError):
    """The embedding model's files are not a loadable local directory; the message says how to
    provide them (nothing is downloaded at run time)."""

    error_code = "model_load_error"


class PluginError(NeuronsError):
    error_code = "plugin_error"


class NodeError(NeuronsError):
    error_code = "node_error"
    http_status = 502


class NodeUnreachableError(NodeError):
    error_code = "node_unreachable"


class SyncError(NodeError):
    error_code = "sync_error"
