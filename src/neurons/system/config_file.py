"""``neurons up --config neurons.yaml``: seed 003's configuration sections, where they mean
something here, mapped onto :class:`~neurons.config.Settings`.

Precedence, highest first: command-line flags, environment variables (``NEURONS_*`` and the
others :mod:`neurons.config` names), this file, the defaults. Relative paths in the file are
taken from the file's folder.

=============================================  ===========================
file key                                       setting
=============================================  ===========================
system.host / port / log_level                 host / port / log_level
system.home                                    home (the state directory)
system.node_host / node_port                   node_host / node_port
system.drain_deadline_s                        drain_deadline_s
persistence.auto_save_interval                 snapshot_interval_s
persistence.max_versions                       snapshot_max_versions
persistence.storage_path                       snapshot_path
persistence.db_path, database.path             database_url (sqlite:///...)
database.url                                   database_url
database.type                                  must be sqlite
model.default / keep_alive / max_loaded        default_model / keep_alive / max_loaded_models
model.model_path / model_type                  model_path / model_type (seed 001)
model.max_length / device                      model_max_length / model_device (seed 001)
distributed_learning.lease_s                   learning_lease_s
model.type / hidden_size / num_layers /        learning_defaults (seed 003's
num_heads / dropout                            learning model)
distributed_learning.node_config.* (or         learning_defaults
node.*), distributed_learning.system.*
learning_system.*                              learning_defaults
=============================================  ===========================

Seed 003's learning keys become the defaults of every new learning run, under the run's own
fields (:mod:`neurons.learning.seed_keys` says which field each sets); they are checked here
as a node run would take them, so a bad one is named with the file's key
(``learning_system.max_nodes: invalid learning run: ...``). Seed 003's other keys (the
``components`` section of its own components, ``system.thread_count``, ...) have no
counterpart here: they are accepted, so a seed file loads, and reported as ignored with where
the idea lives. Any other key is refused by name, as is a value a setting refuses
(``persistence.max_versions: must be ≥ 1 (got 0)``).

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "neurons.yaml").write_text("persistence:\\n  max_versions: 0\\n")
>>> load_config(folder / "neurons.yaml")
Traceback (most recent call last):
...
neurons.errors.ConfigError: ...neurons.yaml: persistence.max_versions: must be ≥ 1 (got 0)
>>> text = "model:\\n  default: mock:latest\\n  type: transformer\\nsystem:\\n  thread_count: 4\\n"
>>> _ = (folder / "neurons.yaml").write_text(text)
>>> loaded = load_config(folder / "neurons.yaml")
>>> loaded.values
{'default_model': 'mock:latest', 'learning_defaults': {'model_type': 'transformer'}}
>>> loaded.sources
{'default_model': 'model.default', 'learning_defaults': 'model.type'}
>>> loaded.ignored
{'system.thread_count': "a neuron's parallelism is num_parallel (NEURONS_NUM_PARALLEL)"}
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from neurons.config import Settings
from neurons.errors import ConfigError, LearningKeyError
from neurons.learning.seed_keys import SEED_KEYS, Entry, check_defaults, flatten

__all__ = ["IGNORED", "IGNORED_SECTIONS", "KEYS", "ConfigFile", "Key", "load_config"]


@dataclass(frozen=True)
class Key:
    """Where a file key goes: a setting, and how its value is read (``path``: relative to
    the file's folder; ``sqlite``: a database file path made a SQLite URL)."""

    setting: str
    kind: Literal["value", "path", "sqlite"] = "value"


KEYS: dict[str, dict[str, Key]] = {
    "system": {
        "host": Key("host"),
        "port": Key("port"),
        "log_level": Key("log_level"),
        "home": Key("home", "path"),
        "node_host": Key("node_host"),
        "node_port": Key("node_port"),
        "drain_deadline_s": Key("drain_deadline_s"),
    },
    "persistence": {
        "auto_save_interval": Key("snapshot_interval_s"),
        "max_versions": Key("snapshot_max_versions"),
        "storage_path": Key("snapshot_path", "path"),
        "db_path": Key("database_url", "sqlite"),
    },
    "database": {"url": Key("database_url"), "path": Key("database_url", "sqlite")},
    "model": {
        "default": Key("default_model"),
        "keep_alive": Key("keep_alive"),
        "max_loaded": Key("max_loaded_models"),
        # Seed 001's model block: the embedding model of neurons.inference.
        "model_path": Key("model_path", "path"),
        "model_type": Key("model_type"),
        "max_length": Key("model_max_length"),
        "device": Key("model_device"),
    },
    "distributed_learning": {"lease_s": Key("learning_lease_s")},
    "learning_system": {},
}

# Seed 003's sections with nothing here at all.
DATABASE_TYPES = ("sqlite", "postgresql")
IGNORED_SECTIONS = {
    "components": "seed 003's components (bridge, neural_seed, ...) do not exist here; "
    "neurons' own are listed at /api/ai/system/components",
}
# Seed 003's keys that mean nothing server-wide here, and why.
IGNORED: dict[str, dict[str, str]] = {
    "system": {
        "thread_count": "a neuron's parallelism is num_parallel (NEURONS_NUM_PARALLEL)",
        "event_queue_size": "the event bus keeps every event in the store",
    },
    "persistence": {"collector_config": "a snapshot always holds the whole durable state"},
    "database": {
        "cache_size": "SQLite's own cache is used",
        "backup_interval": "state snapshots are the backups (persistence.auto_save_interval)",
    },
    "model": {},
    "distributed_learning": {},
    "learning_system": {},
}


def _learning_key(where: str) -> bool:
    """Whether ``section.key`` is (or holds) one of seed 003's learning keys, which go to
    ``learning_defaults`` (``learning_system`` holds nothing else)."""
    return where.startswith("learning_system.") or any(
        key == where or key.startswith(f"{where}.") for key in SEED_KEYS
    )


@dataclass
class ConfigFile:
    """A checked config file: the settings it sets, each with the key that set it."""

    path: Path
    values: dict[str, Any] = field(default_factory=dict)  # setting -> value
    sources: dict[str, str] = field(default_factory=dict)  # setting -> "section.key"
    ignored: dict[str, str] = field(default_factory=dict)  # "section.key" -> why
    database_type: str | None = None  # database.type, which sets nothing but is checked

    def settings(self, **flags: Any) -> Settings:
        """Settings from flags, then the environment, then this file, then the defaults."""
        below = self.shadowed(flags)
        return Settings(**{k: v for k, v in self.values.items() if k not in below}, **flags)

    def shadowed(self, flags: dict[str, Any]) -> dict[str, str]:
        """The file's settings that a flag or the environment overrides: setting -> by what."""
        from_env = _set_by_environment()
        shadowed: dict[str, str] = {}
        for name in self.values:
            if name in flags:
                shadowed[name] = "a command-line flag"
            elif name in from_env:
                shadowed[name] = "the environment"
        return shadowed

    def report(self, flags: dict[str, Any]) -> list[str]:
        """What ``neurons up`` prints about the file: which, what it set, what it did not."""
        lines = [f"config: {self.path} ({len(self.values)} settings)"]
        for name, by in self.shadowed(flags).items():
            lines.append(f"config: {self.sources[name]} is overridden by {by}")
        reasons: dict[str, list[str]] = {}
        for key, why in self.ignored.items():
            reasons.setdefault(why, []).append(key)
        for why, keys in reasons.items():
            lines.append(f"config: ignored {', '.join(keys)}: {why}")
        return lines


def load_config(path: Path) -> ConfigFile:
    """Read and check ``path``; a :class:`~neurons.errors.ConfigError` names the file and
    every bad key."""
    path = path.expanduser().resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}: {problem}{where}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of sections (system:, persistence:, ...)")
    loaded = ConfigFile(path)
    problems: list[str] = []
    learning: list[Entry] = []
    for section, body in data.items():
        _read_section(loaded, str(section), body, problems, learning)
    if learning and not problems:
        _set_learning(loaded, learning, problems)
    if not problems:
        problems = _check_database(loaded)
    if not problems:
        problems = _check_values(loaded)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return loaded


def _read_section(
    loaded: ConfigFile, section: str, body: Any, problems: list[str], learning: list[Entry]
) -> None:
    if section in IGNORED_SECTIONS:
        loaded.ignored[section] = IGNORED_SECTIONS[section]
        return
    if section not in KEYS:
        problems.append(f"{section}: unknown section{_suggest(section, KEYS)}")
        return
    if body is None:
        return
    if not isinstance(body, dict):
        problems.append(f"{section}: must be a mapping of keys")
        return
    for name, value in body.items():
        where = f"{section}.{name}"
        if where == "database.type":
            kind = str(value).lower()
            if kind not in DATABASE_TYPES:
                problems.append(f"{where}: must be sqlite or postgresql (got {value!r})")
            else:
                loaded.database_type = kind  # checked against the URL once all is read
            continue  # sets nothing itself
        if _learning_key(where):
            try:
                learning += flatten({section: {str(name): value}})
            except LearningKeyError as exc:
                problems.append(exc.message)
            continue
        key = KEYS[section].get(str(name))
        if key is None:
            why = IGNORED[section].get(str(name))
            if why is not None:
                loaded.ignored[where] = why
            else:
                known = [*KEYS[section], *IGNORED[section]]
                known += {k.split(".")[1] for k in SEED_KEYS if k.startswith(f"{section}.")}
                if section == "database":
                    known.append("type")
                problems.append(f"{where}: unknown key{_suggest(str(name), known)}")
            continue
        if value is None:
            problems.append(f"{where}: has no value (leave the key out for the default)")
            continue
        if key.setting in loaded.sources:
            other = loaded.sources[key.setting]
            problems.append(f"{other} and {where} both set {key.setting}; keep one")
            continue
        try:
            loaded.values[key.setting] = _convert(key, value, loaded.path.parent)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        loaded.sources[key.setting] = where


def _set_learning(loaded: ConfigFile, learning: list[Entry], problems: list[str]) -> None:
    """Seed 003's learning keys as ``learning_defaults``, checked as a node run takes them."""
    try:
        loaded.values["learning_defaults"] = check_defaults(learning)
    except LearningKeyError as exc:
        problems.append(exc.message)
        return
    loaded.sources["learning_defaults"] = ", ".join(entry.key for entry in learning)


def _convert(key: Key, value: Any, folder: Path) -> Any:
    if key.kind == "value":
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a path")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else folder / path
    return path if key.kind == "path" else f"sqlite:///{path}"


class _FileOnly(Settings):
    """Settings from keyword arguments and defaults only: the file checked on its own."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _check_database(loaded: ConfigFile) -> list[str]:
    """``database.type`` says which database ``database.url`` must name: SQLite, the
    embedded default (a file), or PostgreSQL, which several control planes can share."""
    kind = loaded.database_type
    if kind is None:
        return []
    url = str(loaded.values.get("database_url") or "")
    if kind == "postgresql" and not url.startswith("postgresql"):
        return [
            "database.type: postgresql needs database.url, e.g. "
            "postgresql+psycopg://user:password@host:5432/neurons"
        ]
    if kind == "sqlite" and url and not url.startswith("sqlite"):
        where = loaded.sources.get("database_url", "database.url")
        return [f"{where}: names a {url.split(':', 1)[0]} database, but database.type is sqlite"]
    return []


def _check_values(loaded: ConfigFile) -> list[str]:
    try:
        _FileOnly(**loaded.values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            where = loaded.sources.get(name, name)
            problems.append(f"{where}: {_message(error)} (got {error['input']!r})")
        return problems
    return []


def _message(error: Any) -> str:
    """pydantic's complaint in a config file's words."""
    context = error.get("ctx") or {}
    bounds = {"greater_than_equal": ("≥", "ge"), "greater_than": (">", "gt")}
    bounds |= {"less_than_equal": ("≤", "le"), "less_than": ("<", "lt")}
    kind = error["type"]
    if kind in bounds:
        sign, name = bounds[kind]
        return f"must be {sign} {context.get(name)}"
    words = {
        "int_parsing": "must be a whole number",
        "int_type": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_parsing": "must be a number",
        "float_type": "must be a number",
        "bool_parsing": "must be true or false",
        "bool_type": "must be true or false",
        "string_type": "must be text",
    }
    if kind in words:
        return words[kind]
    return str(error["msg"]).removeprefix("Value error, ")


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (known: {', '.join(sorted(known))})"


def _set_by_environment() -> set[str]:
    """The settings the environment sets (``NEURONS_*`` and the other names it reads)."""
    return set(Settings().model_fields_set)
