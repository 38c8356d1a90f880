"""Seed 003's configuration keys for learning runs, and one way to turn a request into a
:class:`~neurons.learning.runs.RunConfig` that names the key to blame when it is refused.

Every seed key is a RunConfig field (:data:`SEED_KEYS`); the seed writes some of them twice
(``distributed_learning.node`` beside ``node_config``, ``distributed_learning.system`` beside
``learning_system``), so both spellings are accepted. A key may be written in full
(``distributed_learning.node_config.max_students``), without ``distributed_learning.``
(``node_config.max_students``, ``node.max_students``, ``system.min_nodes``), or as the plain
field (``max_students``, ``rounds``, ``mode``). The config file, the REST body and ``neurons
learn run --set`` all go through here, so they accept the same keys and refuse them in the
same words.

Layers, lowest first: RunConfig's defaults, the configured defaults
(``Settings.learning_defaults``: the config file's or ``NEURONS_LEARNING_DEFAULTS``), then the
request. A configured default that only the node modes take (``auto_scale``, the schedules)
is left out of a run of another mode, so a seed file with ``auto_scale: true`` does not refuse
every federated run; the same value asked for in a request is refused.

Importable without torch (the CLI checks ``--set`` before any heavy import): the field table
:data:`RUN_FIELDS` mirrors RunConfig's, which a test keeps equal.

>>> resolve("node.max_students"), resolve("learning_system.learning_rate"), resolve("rounds")
('max_students', 'learning_rate', 'rounds')
>>> parse_assignment("model.num_layers=3"), parse_assignment("auto_scale=true")
(('model.num_layers', 3), ('auto_scale', True))
>>> resolve("model.num_layer")
Traceback (most recent call last):
...
neurons.errors.LearningKeyError: model.num_layer: unknown learning run key; did you mean 'model.num_layers'?
"""  # noqa: E501

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml

from neurons.errors import InvalidRequestError, LearningKeyError
from neurons.learning.choices import NODE_MODES, value_fits

if TYPE_CHECKING:
    from neurons.learning.runs import RunConfig

__all__ = [
    "RUN_FIELDS",
    "SECTIONS",
    "SEED_KEYS",
    "Entry",
    "RunRequest",
    "build_run_config",
    "check_defaults",
    "check_value",
    "flatten",
    "parse_assignment",
    "resolve",
]

_NODE = {
    "learning_rate": "node_learning_rate",  # 0: the run's learning_rate
    "knowledge_threshold": "knowledge_threshold",
    "teach_interval": "local_steps",  # optimizer steps per node per learning event
    "max_students": "max_students",
    "distillation_temperature": "distillation_temperature",
    "collaboration_weight": "collaboration_weight",
}
_MODEL = {
    "type": "model_type",
    "hidden_size": "hidden_size",
    "num_layers": "num_layers",
    "num_heads": "num_heads",
    "dropout": "dropout",
}
_SYSTEM: tuple[str, ...] = ("auto_scale", "min_nodes", "max_nodes", "learning_rate")
_SYSTEM += ("batch_size", "evaluation_interval")
_SYSTEM_ALIAS = ("min_nodes", "max_nodes", "evaluation_interval", "auto_scale")

# Seed key (in full) -> RunConfig field: the seed's own spelling first, then its aliases.
SEED_KEYS: dict[str, str] = {
    **{f"distributed_learning.node_config.{k}": v for k, v in _NODE.items()},
    **{f"model.{k}": v for k, v in _MODEL.items()},
    **{f"learning_system.{k}": k for k in _SYSTEM},
    **{f"distributed_learning.node.{k}": v for k, v in _NODE.items()},
    **{f"distributed_learning.system.{k}": k for k in _SYSTEM_ALIAS},
}
# The sections a request or a config file may nest them in.
SECTIONS: tuple[str, ...] = ("distributed_learning", "model", "learning_system")
# RunConfig's fields and their types, mirrored here so nothing imports torch to check a key.
RUN_FIELDS: dict[str, type] = {
    **dict.fromkeys(("dataset", "mode", "partition", "model_type", "deploy", "superlink"), str),
    **dict.fromkeys(("lr_schedule", "batch_schedule"), str),
    **dict.fromkeys(("nodes", "rounds", "local_steps", "batch_size", "hidden_size", "seed"), int),
    **dict.fromkeys(("num_layers", "num_heads", "max_students", "evaluation_interval"), int),
    **dict.fromkeys(("min_nodes", "max_nodes"), int),
    **dict.fromkeys(("learning_rate", "labelled_fraction", "proximal_mu", "dropout"), float),
    **dict.fromkeys(("node_learning_rate", "knowledge_threshold"), float),
    **dict.fromkeys(("distillation_temperature", "collaboration_weight"), float),
    "auto_scale": bool,
}
# Fields only the node modes take: a configured default of them skips other modes' runs.
_NODE_ONLY = ("auto_scale", "lr_schedule", "batch_schedule")
# The name a field's configured default is reported under: its seed key where it has one.
_SEED_NAME = {field: key for key, field in reversed(SEED_KEYS.items())}
_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


class Entry(NamedTuple):
    """One value for a RunConfig field, with the key it was given under (as written)."""

    field: str
    value: Any
    key: str


def _refuse(keys: Sequence[str], message: str) -> LearningKeyError:
    return LearningKeyError(f"{', '.join(keys)}: {message}", tuple(keys))


def resolve(key: str) -> str:
    """The RunConfig field ``key`` names; an unknown key is refused with the nearest one."""
    name = key.strip()
    if name in RUN_FIELDS:
        return name
    for candidate in (name, f"distributed_learning.{name}"):
        if candidate in SEED_KEYS:
            return SEED_KEYS[candidate]
    short = [k.removeprefix("distributed_learning.") for k in SEED_KEYS]
    close = difflib.get_close_matches(name, [*SEED_KEYS, *short, *RUN_FIELDS], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise _refuse([key], f"unknown learning run key{hint}")


def parse_assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as ``(KEY, value)``, the value read as a YAML scalar (``true``, ``3``,
    ``0.5``, ``transformer``); a text field keeps the text as written."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise _refuse([text], "expected KEY=VALUE (e.g. model.num_layers=2)")
    field = resolve(key)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise _refuse([key], f"cannot read {raw!r} as a value") from exc
    if value is None:
        raise _refuse([key], "has no value")
    if RUN_FIELDS[field] is str and not isinstance(value, str):
        value = raw.strip()
    if isinstance(value, (dict, list)):
        raise _refuse([key], f"must be {_WORDS[RUN_FIELDS[field]]}, not {raw.strip()!r}")
    return key, value


def check_value(entry: Entry) -> None:
    """Refuse a value of the wrong type, naming its key (:func:`~neurons.learning.choices.
    value_fits`: a bool is no number, an int is a fine float)."""
    expected = RUN_FIELDS[entry.field]
    if entry.value is None:
        raise _refuse([entry.key], "has no value")
    if not value_fits(entry.value, expected):
        raise _refuse([entry.key], f"must be {_WORDS[expected]}, got {entry.value!r}")


def flatten(sections: Mapping[str, Any], prefix: str = "") -> list[Entry]:
    """Nested seed sections (``{"model": {"type": ...}, "distributed_learning":
    {"node_config": {...}}}``) as entries, each under its dotted seed key."""
    entries: list[Entry] = []
    for name, body in sections.items():
        key = f"{prefix}{name}"
        if any(seed.startswith(f"{key}.") for seed in SEED_KEYS):
            if not isinstance(body, Mapping):
                raise _refuse([key], "must be a mapping of keys")
            entries += flatten(body, f"{key}.")
        elif key in SEED_KEYS:
            entries.append(Entry(SEED_KEYS[key], body, key))
        else:
            resolve(key)  # refused, with the nearest key
            raise _refuse([key], "not a seed key")  # a plain field nested in a section
    return entries


def _unique(entries: Iterable[Entry]) -> tuple[Entry, ...]:
    """``entries``, refused when two of them set the same field (say which one to keep)."""
    seen: dict[str, Entry] = {}
    for entry in entries:
        other = seen.get(entry.field)
        if other is not None:
            message = f"{other.key} and {entry.key} both set {entry.field}; keep one"
            if other.key == entry.key:
                message = f"{entry.key} is given twice; keep one"
            raise LearningKeyError(message, (other.key, entry.key))
        seen[entry.field] = entry
    return tuple(entries)


@dataclass(frozen=True)
class RunRequest:
    """What a caller asked for: entries over the configured defaults, no field twice."""

    entries: tuple[Entry, ...] = ()

    def __post_init__(self) -> None:
        _unique(self.entries)
        for entry in self.entries:
            check_value(entry)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RunRequest:
        """A REST body: RunConfig's flat fields, the nested seed sections, and ``"set":
        {"dotted.key": value}``."""
        nested: dict[str, Any] = {}
        assignments: Any = {}
        entries = []
        for name, value in body.items():
            key = str(name)
            if key in SECTIONS:
                nested[key] = value
            elif key == "set":
                assignments = value
            else:
                entries.append(Entry(resolve(key), value, key))
        if not isinstance(assignments, Mapping):
            raise _refuse(["set"], 'must be an object of "dotted.key": value')
        entries += flatten(nested)
        entries += [Entry(resolve(str(k)), v, str(k)) for k, v in assignments.items()]
        return cls(tuple(entries))

    @classmethod
    def of(
        cls, given: Iterable[tuple[str, str, Any]] = (), assignments: Iterable[str] = ()
    ) -> RunRequest:
        """A command line: ``(flag, field, value)`` for each flag typed, and ``KEY=VALUE``
        assignments (``--set``)."""
        entries = [Entry(field, value, flag) for flag, field, value in given]
        for text in assignments:
            key, value = parse_assignment(text)
            entries.append(Entry(resolve(key), value, key))
        return cls(tuple(entries))


def _defaults(defaults: Mapping[str, Any]) -> list[Entry]:
    entries = []
    for field, value in defaults.items():
        name = resolve(field)
        entries.append(Entry(name, value, f"{_SEED_NAME.get(name, name)} (configured default)"))
    return entries


def build_run_config(
    request: RunRequest | Mapping[str, Any], defaults: Mapping[str, Any] | None = None
) -> RunConfig:
    """RunConfig's defaults, then ``defaults`` (field -> value), then ``request``; a refusal
    names the key to blame: one whose removal would make the run valid (every such one),
    else the first whose addition makes it invalid."""
    from neurons.learning.runs import RunConfig  # torch: only when a run is made

    if not isinstance(request, RunRequest):
        request = RunRequest.from_body(request)
    lower = _defaults(defaults or {})
    for entry in lower:
        check_value(entry)
    mode = next((e.value for e in reversed([*lower, *request.entries]) if e.field == "mode"), "")
    if (mode or RunConfig.mode) not in NODE_MODES:
        lower = [e for e in lower if e.field not in _NODE_ONLY]
    return _build(RunConfig, [*lower, *request.entries], {})


def check_defaults(entries: Sequence[Entry]) -> dict[str, Any]:
    """Configured defaults (a config file's seed keys) as field -> value, checked as far as
    they can be without a run: as a distill run of a node count they allow would take them
    (a run's own mode and nodes are checked when it is made)."""
    from neurons.learning.runs import RunConfig

    checked = _unique(entries)
    for entry in checked:
        check_value(entry)
    values = {e.field: e.value for e in checked}
    low = values.get("min_nodes", RunConfig.min_nodes)
    high = values.get("max_nodes", RunConfig.max_nodes)
    nodes = min(max(RunConfig.nodes, low), high)  # check_value made them whole numbers
    base = {"mode": "distill", "nodes": min(max(nodes, 2), 32)}
    _build(RunConfig, list(checked), base)
    return values


def _build(cls: type[RunConfig], entries: list[Entry], base: dict[str, Any]) -> RunConfig:
    def make(chosen: Sequence[Entry]) -> RunConfig:
        return cls(**{**base, **{e.field: e.value for e in chosen}})

    try:
        return make(entries)
    except InvalidRequestError as exc:
        blamed = [
            e.key for i, e in enumerate(entries) if _works(make, [*entries[:i], *entries[i + 1 :]])
        ]
        if not blamed:  # no one key alone: those refused on their own, else the first
            blamed = [e.key for e in entries if not _works(make, [e])]
        if not blamed:  # whose addition breaks the run
            first = (e.key for n, e in enumerate(entries, 1) if not _works(make, entries[:n]))
            blamed = [next(first, "learning run")]
        raise _refuse(blamed, exc.message) from exc


def _works(make: Any, entries: Sequence[Entry]) -> bool:
    try:
        make(entries)
    except InvalidRequestError:
        return False
    return True
