"""The library as entries (catalog ∪ what nodes hold), and search over it.

Relevance (0–1) is deterministic: each query word scores by the best field it appears in —
exact name 1.0, name 0.9, family 0.8, capability or category 0.7, description 0.5 — and the
relevance is the mean over the query's words, so a model matching every word outranks one
matching some. An empty query matches everything with relevance 1.0. Results are ordered by
relevance, then performance, then name.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from neurons.errors import InvalidRequestError, ModelNotFoundError
from neurons.library.catalog import CATEGORIES, SIZE_CLASSES, CatalogModel
from neurons.library.discovery import LocalCopy
from neurons.library.performance import Measurement, PerformanceFigure, quality
from neurons.ollama.names import canonical_name

__all__ = ["Library", "LibraryEntry", "SearchPage"]

_WORD = re.compile(r"[a-z0-9.]+")


@dataclass
class LibraryEntry:
    model: CatalogModel
    installed_on: list[LocalCopy] = field(default_factory=list)
    measured: Measurement | None = None
    in_catalog: bool = True

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def capabilities(self) -> tuple[str, ...]:
        """What the installed copies can do, as their nodes report it (the union over copies,
        each in the order its node lists them); the catalog's facts when no node reports."""
        reported = dict.fromkeys(c for copy in self.installed_on for c in copy.capabilities)
        return tuple(reported) if reported else tuple(self.model.capabilities)

    @property
    def quality(self) -> PerformanceFigure:
        return quality(self.model, self.measured)

    def summary(self) -> dict[str, Any]:
        """The seed's library/search item, plus where the numbers come from."""
        m = self.model
        figure = self.quality
        return {
            "name": m.name,
            "family": m.family,
            "description": m.description,
            "size": m.parameter_size,
            "size_class": m.size_class,
            "parameters": m.parameters,
            "quantization": m.quantization,
            "file_size_bytes": m.file_size_bytes,
            "memory_requirements_gb": round(m.file_size_bytes / 1e9, 2),
            "context_length": m.context_length,
            "capabilities": list(self.capabilities),
            "categories": list(m.categories),
            "license": m.license,
            "performance_score": figure.value,
            "performance_source": figure.source,
            "installed": bool(self.installed_on),
            "nodes": [c.node for c in self.installed_on],
            "in_catalog": self.in_catalog,
        }

    def details(self) -> dict[str, Any]:
        data = self.summary()
        data["installed_on"] = [c.to_dict() for c in self.installed_on]
        data["sources"] = list(self.model.sources)
        data["released"] = self.model.released
        if self.measured is not None:
            data["measured"] = {
                "node": self.measured.node,
                "score": self.measured.score,
                "tokens_per_second": self.measured.tokens_per_second,
                "items": self.measured.items,
                "measured_at": self.measured.measured_at,
            }
        return data


@dataclass
class SearchPage:
    results: list[tuple[LibraryEntry, float]]
    count: int
    page: int
    page_size: int


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _relevance(entry: LibraryEntry, words: list[str], query: str) -> float:
    m = entry.model
    if not words:
        return 1.0
    if query.strip().lower() in (m.name.lower(), m.base_name.lower()):
        return 1.0
    name_words = set(_words(m.name.replace(":", " ")))
    fields = (
        (0.9, name_words | {m.base_name.lower()}),
        (0.8, set(_words(m.family))),
        (0.7, {w for c in (*entry.capabilities, *m.categories) for w in _words(c)}),
        (0.5, set(_words(m.description))),
    )
    total = 0.0
    for word in words:
        best = 0.0
        for weight, bag in fields:
            if word in bag or any(w.startswith(word) for w in bag if len(word) >= 3):
                best = max(best, weight)
        total += best
    return round(total / len(words), 3)


class Library:
    """Catalog models merged with what the nodes hold and what was measured."""

    def __init__(
        self,
        catalog: tuple[CatalogModel, ...],
        copies: dict[str, list[LocalCopy]] | None = None,
        local_models: dict[str, CatalogModel] | None = None,
        measurements: dict[str, Measurement] | None = None,
    ) -> None:
        copies = copies or {}
        measurements = measurements or {}
        self._entries: dict[str, LibraryEntry] = {}
        for model in catalog:
            self._entries[model.name] = LibraryEntry(
                model, copies.get(model.name, []), measurements.get(model.name)
            )
        for name, model in (local_models or {}).items():
            if name not in self._entries:
                self._entries[name] = LibraryEntry(
                    model, copies.get(name, []), measurements.get(name), in_catalog=False
                )

    def entries(self) -> list[LibraryEntry]:
        return list(self._entries.values())

    def get(self, name: str) -> LibraryEntry:
        entry = self._entries.get(name) or self._entries.get(canonical_name(name))
        if entry is None:
            raise ModelNotFoundError(f"model '{name}' is not in the library")
        return entry

    def by_category(self, category: str | None = None) -> dict[str, list[LibraryEntry]]:
        if category is not None and category not in CATEGORIES:
            raise InvalidRequestError(
                f"unknown category '{category}' (one of {', '.join(CATEGORIES)})"
            )
        grouped: dict[str, list[LibraryEntry]] = {c: [] for c in CATEGORIES}
        for entry in self._entries.values():
            for cat in entry.model.categories:
                grouped[cat].append(entry)
        for entries in grouped.values():
            entries.sort(key=lambda e: (-e.quality.value, e.name))
        return {category: grouped[category]} if category else grouped

    def search(
        self,
        query: str = "",
        *,
        category: str | None = None,
        size: str | None = None,
        min_performance: float | None = None,
        max_parameters: float | None = None,
        installed: bool | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> SearchPage:
        if category is not None and category not in CATEGORIES:
            raise InvalidRequestError(
                f"unknown category '{category}' (one of {', '.join(CATEGORIES)})"
            )
        if size is not None and size not in SIZE_CLASSES:
            raise InvalidRequestError(f"unknown size '{size}' (one of {', '.join(SIZE_CLASSES)})")
        if page < 1 or not 1 <= page_size <= 200:
            raise InvalidRequestError("page must be >= 1 and page_size between 1 and 200")
        words = _words(query)
        hits: list[tuple[LibraryEntry, float]] = []
        for entry in self._entries.values():
            m = entry.model
            if category and category not in m.categories:
                continue
            if size and m.size_class != size:
                continue
            if min_performance is not None and entry.quality.value < min_performance:
                continue
            if max_parameters is not None and m.parameters > max_parameters:
                continue
            if installed is not None and bool(entry.installed_on) != installed:
                continue
            score = _relevance(entry, words, query)
            if score > 0:
                hits.append((entry, score))
        hits.sort(key=lambda hit: (-hit[1], -hit[0].quality.value, hit[0].name))
        start = (page - 1) * page_size
        return SearchPage(hits[start : start + page_size], len(hits), page, page_size)


def parse_parameter_count(text: str | None) -> float | None:
    """``7e9``, ``7000000000``, ``7B``, ``135M`` → a count; None passes through."""
    if text is None or str(text).strip() == "":
        return None
    raw = str(text).strip().upper()
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}.get(raw[-1:], 1.0)
    number = raw[:-1] if raw[-1:] in "KMBT" else raw
    try:
        value = float(number) * scale
    except ValueError:
        raise InvalidRequestError(
            f"max_parameters must be a number like 7e9 or 7B: {text}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidRequestError(f"max_parameters must be positive: {text}")
    return value
