"""The language-memory service: the one code path behind ``/api/ai/memory`` and
``neurons memory``.

- :meth:`MemoryService.add` embeds a text and stores it with its metadata in a namespace;
- :meth:`MemoryService.search` embeds the query and scores the namespace's vectors by cosine
  (one matrix product with numpy: the vectors are unit length), best ``k`` first;
- :meth:`MemoryService.delete` removes an entry;
- :meth:`MemoryService.synthesize` searches, then has an LLM on the network summarise the
  hits, which the prompt numbers ``[1]..[k]`` and the answer cites.

Sizes that come from a caller are checked here, whatever the edge already checked: a text
of at most :data:`MAX_TEXT_CHARS`, metadata a JSON object of at most
:data:`MAX_METADATA_BYTES`, ``k`` from 1 to :data:`MAX_K`, namespaces named like API keys.

Entries embedded by another model than the one running now (another digest) are re-embedded
before a search reads the namespace, so a model upgrade never mixes two vector spaces nor
loses an entry.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from neurons.auth.scopes import Scope
from neurons.errors import InvalidRequestError, PermissionDeniedError
from neurons.memory.embeddings import Embeddings, Vectors
from neurons.memory.synthesis import Generator, build_prompt, citations
from neurons.store.memory import MemoryEntry, MemoryRepository

if TYPE_CHECKING:
    from neurons.auth.service import Principal
    from neurons.store import Store

__all__ = [
    "DEFAULT_NAMESPACE",
    "MAX_K",
    "MAX_METADATA_BYTES",
    "MAX_QUERY_CHARS",
    "MAX_TEXT_CHARS",
    "Hit",
    "MemoryService",
    "Synthesis",
    "check_namespace",
    "resolve_namespace",
]

DEFAULT_NAMESPACE = "default"
MAX_TEXT_CHARS = 8192  # the model embeds the first 256 tokens; the rest is kept for reading
MAX_QUERY_CHARS = 2048
MAX_METADATA_BYTES = 4096
MAX_K = 100
DEFAULT_K = 5
# Re-embedding after a model change goes in batches: one call per batch, one write each.
_REEMBED_BATCH = 64
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")  # an API key's name


def check_namespace(namespace: str) -> str:
    """``namespace`` if it is a valid name (1-64 of letters, digits, ``.``, ``_``, ``@``,
    ``-``, starting with a letter or digit: what an API key may be named).

    >>> check_namespace("team.a@x")
    'team.a@x'
    >>> check_namespace("../etc")
    Traceback (most recent call last):
    ...
    neurons.errors.InvalidRequestError: a namespace is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit; not '../etc'
    """  # noqa: E501
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise InvalidRequestError(
            "a namespace is 1-64 letters, digits, '.', '_', '@' or '-', starting with a "
            f"letter or digit; not {namespace!r}"
        )
    return namespace


def resolve_namespace(principal: Principal | None, asked: str | None) -> str:
    """The namespace a caller works in. A key's own namespace is its name; only an admin key
    may name another. The master key and everyone while keys are off (``key_id`` None, or
    no principal at all) work in :data:`DEFAULT_NAMESPACE` unless they name one."""
    if asked is not None:
        check_namespace(asked)
    if principal is None or principal.key_id is None:
        return asked or DEFAULT_NAMESPACE
    own = check_namespace(principal.name)
    if asked is None or asked == own:
        return own
    if principal.scope.allows(Scope.ADMIN):
        return asked
    raise PermissionDeniedError(
        f"this API key's memory is namespace {own!r}; only an admin key may use {asked!r}"
    )


@dataclass(frozen=True)
class Hit:
    entry: MemoryEntry
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.entry.to_dict(), "score": round(self.score, 6)}


@dataclass(frozen=True)
class Synthesis:
    summary: str
    model: str
    node: str | None
    prompt: str | None  # None: nothing was found, so no model was asked
    hits: list[Hit]
    cited: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "model": self.model,
            "node": self.node,
            "prompt": self.prompt,
            "hits": [{**h.to_dict(), "citation": n} for n, h in enumerate(self.hits, start=1)],
            "cited": self.cited,
        }


def _check_text(text: str, what: str, limit: int) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError(f"the {what} is empty")
    if len(text) > limit:
        raise InvalidRequestError(f"the {what} is {len(text)} characters; at most {limit}")
    _check_unicode(text, what)
    return text


def _check_unicode(text: str, what: str) -> None:
    """JSON may carry lone surrogates (``"\\ud800"``), which no database or tokenizer takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(f"the {what} is not valid Unicode: {exc.reason}") from exc


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidRequestError("metadata is a JSON object")
    try:
        encoded = json.dumps(dict(metadata), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"metadata must be plain JSON: {exc}") from exc
    _check_unicode(encoded, "metadata")
    size = len(encoded.encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidRequestError(f"metadata is {size} bytes of JSON; at most {MAX_METADATA_BYTES}")
    loaded: dict[str, Any] = json.loads(encoded)
    return loaded


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidRequestError(f"k must be 1-{MAX_K}, not {k!r}")
    return k


class MemoryService:
    """Language memory over the store, with vectors from ``embeddings`` and summaries from
    ``generator`` (None: :meth:`synthesize` is refused)."""

    def __init__(
        self, store: Store, embeddings: Embeddings, generator: Generator | None = None
    ) -> None:
        self.repository = MemoryRepository(store.engine)
        self.embeddings = embeddings
        self.generator = generator

    async def add(
        self, namespace: str, text: str, metadata: Mapping[str, Any] | None = None
    ) -> tuple[MemoryEntry, bool]:
        """Store ``text``; the answer is the entry and whether its embedding covers only the
        text's first tokens (the model's limit)."""
        check_namespace(namespace)
        _check_text(text, "text", MAX_TEXT_CHARS)
        meta = _check_metadata(metadata)
        vectors = await self.embeddings.embed([text])
        entry = await asyncio.to_thread(
            self.repository.add,
            namespace,
            text,
            meta,
            vectors.matrix[0],
            vectors.model,
            vectors.digest,
        )
        return entry, bool(vectors.truncated and vectors.truncated[0])

    async def search(self, namespace: str, query: str, k: int = DEFAULT_K) -> list[Hit]:
        """The ``k`` entries nearest ``query`` by cosine, best first."""
        check_namespace(namespace)
        _check_text(query, "query", MAX_QUERY_CHARS)
        _check_k(k)
        vectors = await self.embeddings.embed([query])
        await self._reembed(namespace, vectors)
        ids, matrix = await asyncio.to_thread(self.repository.vectors, namespace, vectors.digest)
        if len(ids) == 0:
            return []
        scores = matrix @ vectors.matrix[0]
        top = min(k, len(ids))
        # argpartition finds the top k in linear time; only those k are then sorted.
        best = np.argpartition(-scores, top - 1)[:top]
        best = best[np.argsort(-scores[best], kind="stable")]
        entries = await asyncio.to_thread(
            self.repository.get_many, namespace, [int(ids[i]) for i in best]
        )
        return [Hit(entries[int(ids[i])], float(scores[i])) for i in best if int(ids[i]) in entries]

    async def delete(self, namespace: str, entry_id: int) -> None:
        check_namespace(namespace)
        await asyncio.to_thread(self.repository.delete, namespace, entry_id)

    async def get(self, namespace: str, entry_id: int) -> MemoryEntry:
        check_namespace(namespace)
        return await asyncio.to_thread(self.repository.get, namespace, entry_id)

    async def synthesize(
        self,
        namespace: str,
        query: str,
        model: str,
        k: int = DEFAULT_K,
        options: Mapping[str, Any] | None = None,
    ) -> Synthesis:
        """Search, then have ``model`` summarise the hits for ``query``, citing them by
        number. Nothing found: no model is asked, and the summary says so."""
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequestError("synthesize needs a model")
        if self.generator is None:
            raise InvalidRequestError("this memory has no language model to synthesize with")
        hits = await self.search(namespace, query, k)
        if not hits:
            summary = f"Nothing in memory (namespace {namespace!r}) to summarise."
            return Synthesis(summary, model, None, None, [], [])
        prompt = build_prompt(query, [h.entry.text for h in hits])
        generated = await self.generator.generate(model, prompt, dict(options or {}))
        summary = generated.text.strip()
        return Synthesis(
            summary, generated.model, generated.node, prompt, hits, citations(summary, len(hits))
        )

    async def _reembed(self, namespace: str, current: Vectors) -> None:
        """Bring the namespace's entries made by another model to ``current``'s."""
        while True:
            stale = await asyncio.to_thread(
                self.repository.stale, namespace, current.digest, _REEMBED_BATCH
            )
            if not stale:
                return
            fresh = await self.embeddings.embed([e.text for e in stale])
            if fresh.digest != current.digest:  # the model changed under us: next search
                return
            pairs = list(zip((e.id for e in stale), fresh.matrix, strict=True))
            await asyncio.to_thread(
                self.repository.set_embeddings, pairs, fresh.model, fresh.digest
            )
