"""Evaluation sets: the prompts, with reference answers, that every optimization trial runs.

A trial's quality is only comparable to another's when both answer the same prompts, so a set
is an ordered, immutable tuple of cases; Hyperband's budget is a prefix of it
(:meth:`EvalSet.take`). Four small sets ship with the package, one per ``model_type``,
written for this project for tiny local models (SmolLM2-135M): short prompts with short,
checkable references. Users bring their own as JSONL, one case per line::

    {"id": "capital", "prompt": "What is the capital of France?", "reference": "Paris",
     "metric": "contains", "system": "Answer briefly.", "max_tokens": 32}

Only ``prompt`` and ``reference`` are required; ``metric`` defaults to ``contains`` and
``id`` to the line number. Blank lines and lines starting with ``#`` are skipped. Every
problem in a file is reported at once, each with its line number, so a user fixes the file
in one pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast, get_args

from neurons.errors import InvalidRequestError
from neurons.optimize.scoring import normalize

__all__ = [
    "BUILTIN_SETS",
    "METRICS",
    "EvalCase",
    "EvalSet",
    "Metric",
    "builtin_set",
    "load_jsonl",
    "parse_jsonl",
]

Metric = Literal["exact", "contains", "f1", "similarity"]
METRICS: tuple[Metric, ...] = get_args(Metric)
BUILTIN_SETS: tuple[str, ...] = ("general", "code", "creative", "analysis")
_FIELDS = frozenset({"id", "prompt", "reference", "metric", "system", "max_tokens"})


@dataclass(frozen=True)
class EvalCase:
    """One prompt and what a good answer must match, by ``metric`` (see ``scoring``).

    ``system`` is sent as the system prompt; ``max_tokens`` caps the answer (``num_predict``)
    when the trial's own options allow more.
    """

    id: str
    prompt: str
    reference: str
    metric: Metric = "contains"
    system: str | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class EvalSet:
    """A named, ordered set of cases for one ``model_type``."""

    name: str
    model_type: str
    cases: tuple[EvalCase, ...]

    def __len__(self) -> int:
        return len(self.cases)

    def take(self, n: int) -> EvalSet:
        """The first ``n`` cases (all of them when ``n`` is larger): a Hyperband budget."""
        if n < 1:
            raise InvalidRequestError(f"an evaluation needs at least 1 prompt, not {n}")
        return EvalSet(self.name, self.model_type, self.cases[:n])


@cache
def builtin_set(model_type: str) -> EvalSet:
    """The packaged set for ``model_type`` (general, code, creative or analysis)."""
    if model_type not in BUILTIN_SETS:
        raise InvalidRequestError(
            f"no evaluation set for model type {model_type!r}; "
            f"valid types: {', '.join(BUILTIN_SETS)}"
        )
    resource = resources.files("neurons.optimize") / "data" / f"{model_type}.jsonl"
    text = resource.read_text(encoding="utf-8")
    return parse_jsonl(text, name=model_type, model_type=model_type)


def load_jsonl(path: str | Path, *, model_type: str = "general") -> EvalSet:
    """Read a user's evaluation set; the set is named after the file's stem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"cannot read evaluation set {path}: {exc}") from exc
    return parse_jsonl(text, name=path.stem, model_type=model_type, source=str(path))


def parse_jsonl(
    text: str, *, name: str, model_type: str = "general", source: str | None = None
) -> EvalSet:
    """Parse JSONL text into a set, or raise one error listing every problem by line."""
    cases: list[EvalCase] = []
    problems: list[str] = []
    first_line_of: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        case, line_problems = _parse_line(stripped, number)
        problems += [f"(line {number}): {problem}" for problem in line_problems]
        if case is None:
            continue
        if case.id in first_line_of:
            first = first_line_of[case.id]
            problems.append(f"(line {number}): duplicate id {case.id!r} (first on line {first})")
            continue
        first_line_of[case.id] = number
        cases.append(case)
    if not cases and not problems:
        problems.append("no cases: every line is blank or a comment")
    if problems:
        header = f"invalid evaluation set {source or name}:"
        raise InvalidRequestError("\n".join([header, *problems]))
    return EvalSet(name=name, model_type=model_type, cases=tuple(cases))


def _parse_line(line: str, number: int) -> tuple[EvalCase | None, list[str]]:
    try:
        raw: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, [f"not valid JSON: {exc.msg} (column {exc.colno})"]
    if not isinstance(raw, dict):
        return None, [f"expected a JSON object, got {type(raw).__name__}"]
    problems = [f"unknown field {key!r}" for key in raw if key not in _FIELDS]

    case_id = raw.get("id", str(number))
    if isinstance(case_id, int) and not isinstance(case_id, bool):
        case_id = str(case_id)
    if not isinstance(case_id, str) or not case_id.strip():
        problems.append("id must be a non-empty string")

    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append("missing or empty prompt")

    reference = raw.get("reference")
    if not isinstance(reference, str) or not reference.strip():
        problems.append("missing or empty reference")
    elif not normalize(reference):
        problems.append(f"reference {reference!r} has no words once normalized")

    metric = raw.get("metric", "contains")
    if metric not in METRICS:
        problems.append(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")

    system = raw.get("system")
    if system is not None and not isinstance(system, str):
        problems.append("system must be a string")

    max_tokens = raw.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        problems.append(f"max_tokens must be a positive integer, not {max_tokens!r}")

    if problems:
        return None, problems
    return (
        EvalCase(
            id=case_id,
            prompt=cast(str, prompt),
            reference=cast(str, reference),
            metric=cast(Metric, metric),
            system=system,
            max_tokens=max_tokens,
        ),
        [],
    )
