"""Model sync: copy models between nodes through the Ollama API, towards declared placements.

The control plane reaches nodes only over HTTP, and they may be on other machines, so a model
is copied the way ``ollama create`` would build it on the target: ``/api/show`` on the source
names its blobs (the FROM and ADAPTER paths of its Modelfile end in ``sha256-<hex>``), each
blob the target lacks is streamed source → control plane → target (``POST /api/blobs``), and
``/api/create`` rebuilds the model over those blobs with the source's template, system prompt,
parameters, messages and licenses. Nothing is written to the control plane's disk.

The Ollama API has no way to *read* a blob. Embedded neurons serve ``GET /api/blobs/{digest}``
as a neurons extension; for a real Ollama source the control plane reads the blob from that
server's models directory instead, named by the node's ``models_dir`` label.

Every blob is hashed as it passes, and a stream that does not hash to its digest is broken off
before its end, so the target never commits it (the target verifies the digest too). Placements
(:mod:`neurons.store.placements`) declare where models should be; :func:`plan` compares them with
what the nodes hold and :func:`synchronize` carries the plan out. Sync only ever adds copies:
removing a model from a node stays an explicit act.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from neurons.client import BlobStream, NodeClient
from neurons.errors import (
    BlobNotFoundError,
    InvalidRequestError,
    ModelfileError,
    NeuronsError,
    NodeError,
    SyncError,
)
from neurons.events.kinds import MODEL_SYNCED
from neurons.modelfile.parser import Modelfile, parse
from neurons.modelfile.schema import DEPRECATED_PARAMETERS, coerce_parameter
from neurons.network.openai_inventory import OPENAI, skip_reason
from neurons.network.routing import NodeView
from neurons.network.states import NodeState
from neurons.ollama.names import canonical_name, digest_to_filename, normalize_digest
from neurons.store import NodeRecord, Placement, Store

if TYPE_CHECKING:
    from neurons.events.bus import Publish

__all__ = [
    "CopyResult",
    "ModelRecipe",
    "NodeInventory",
    "SyncPlan",
    "SyncProgress",
    "SyncReport",
    "Transfer",
    "copy_model",
    "model_recipe",
    "node_models_dir",
    "open_blob",
    "plan",
    "synchronize",
    "verified_chunks",
]

# Nodes that neither give nor receive models: down, or taken out of service by an operator.
_OUT_OF_SERVICE = (NodeState.OFFLINE, NodeState.DRAINING)

log = logging.getLogger(__name__)

ProgressCallback = Callable[["SyncProgress"], None]

_CHUNK = 1 << 20
_BLOB_FILE = re.compile(r"sha256[-:]([0-9a-fA-F]{64})$")
# Instructions whose value is a blob path, for Modelfiles our parser refuses (a real Ollama's
# show output does not always quote what needs quoting).
_BLOB_LINE = re.compile(r"^(FROM|ADAPTER)\s+(\S+)\s*$", re.IGNORECASE | re.MULTILINE)
# What a node falls back to when a model has no TEMPLATE layer (Ollama's DefaultTemplate).
_DEFAULT_TEMPLATE = "{{ .Prompt }}"


@dataclass(frozen=True)
class SyncProgress:
    """One step of a copy, worded like Ollama's pull progress (``copying <digest12>``)."""

    model: str
    source: str
    target: str
    status: str
    digest: str | None = None
    completed: int | None = None
    total: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, as an NDJSON progress line would carry them."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class CopyResult:
    """A finished copy: the blobs sent, those the target already had, bytes and time."""

    model: str
    source: str
    target: str
    copied: list[str]
    present: list[str]
    bytes_copied: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


# -- copying one model ---------------------------------------------------------------------


async def verified_chunks(
    chunks: AsyncIterator[bytes],
    digest: str,
    on_bytes: Callable[[int], None] | None = None,
) -> AsyncGenerator[bytes, None]:
    """Pass ``chunks`` through, hashing them; :class:`SyncError` if they are not ``digest``.

    The error is raised where the stream would end, so an upload consuming this generator is
    broken off before its last chunk and the receiver never sees a complete body. ``on_bytes``
    gets the running byte count after each chunk.
    """
    expected = normalize_digest(digest)
    hasher = hashlib.sha256()
    done = 0
    async for chunk in chunks:
        hasher.update(chunk)
        done += len(chunk)
        if on_bytes is not None:
            on_bytes(done)
        yield chunk
    actual = "sha256:" + hasher.hexdigest()
    if actual != expected:
        raise SyncError(f"blob {expected} arrived corrupted: its {done} bytes hash to {actual}")


async def _file_chunks(path: Path) -> AsyncGenerator[bytes, None]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, _CHUNK):
            yield chunk
    finally:
        handle.close()


async def _prepend(first: bytes, rest: BlobStream) -> AsyncGenerator[bytes, None]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        # Closing this generator early (the upload failed) must also end the download.
        await rest.aclose()


async def open_blob(
    source: NodeClient, digest: str, models_dir: Path | None
) -> tuple[AsyncGenerator[bytes, None], int | None]:
    """The blob's bytes and its size if known: from the source's ``GET /api/blobs`` or, when
    the source cannot serve it (a real Ollama), from its models directory on this machine."""
    stream = source.blob_chunks(digest)
    try:
        # The first chunk sends the request: a source that cannot serve blobs shows it now.
        first = await anext(stream, b"")
    except BlobNotFoundError as exc:
        await stream.aclose()
        if models_dir is None:
            raise SyncError(
                f"{source.name} cannot serve blobs ({exc}); it is probably an Ollama server, "
                "which has no GET /api/blobs. Give the node a models_dir label naming its "
                "models directory as this machine sees it (for example "
                "models_dir=/usr/share/ollama/.ollama/models) and sync again"
            ) from exc
        path = models_dir / "blobs" / digest_to_filename(digest)
        if not path.is_file():
            raise SyncError(
                f"{source.name} cannot serve blobs and {path} does not exist: check the "
                "node's models_dir label"
            ) from exc
        return _file_chunks(path), path.stat().st_size
    return _prepend(first, stream), stream.size


async def _copy_blob(
    source: NodeClient,
    target: NodeClient,
    digest: str,
    report: Callable[..., None],
    models_dir: Path | None,
) -> int:
    """Stream one blob into ``target``; returns the bytes sent."""
    status = f"copying {digest.split(':', 1)[1][:12]}"
    chunks, total = await open_blob(source, digest, models_dir)
    sent = 0

    def on_bytes(done: int) -> None:
        nonlocal sent
        sent = done
        report(status, digest=digest, completed=done, total=total)

    report(status, digest=digest, completed=0, total=total)
    checked = verified_chunks(chunks, digest, on_bytes)
    try:
        await target.push_blob_stream(digest, checked)
    except InvalidRequestError as exc:  # the target's own check: 400 digest mismatch
        raise SyncError(f"{target.name} refused blob {digest}: {exc}") from exc
    finally:
        await checked.aclose()
        await chunks.aclose()
    return sent


@dataclass(frozen=True)
class ModelRecipe:
    """What ``/api/show`` says a model is made of, as an ``/api/create`` body."""

    files: dict[str, str]
    adapters: dict[str, str]
    body: dict[str, Any]

    @property
    def digests(self) -> list[str]:
        return list(dict.fromkeys([*self.files.values(), *self.adapters.values()]))


def _blob_digests(values: Sequence[str]) -> list[str]:
    digests = []
    for value in values:
        match = _BLOB_FILE.search(value.strip().rstrip("/").rsplit("/", 1)[-1])
        if match is not None:
            digests.append("sha256:" + match.group(1).lower())
    return digests


def _parameters(text: str) -> dict[str, Any]:
    """``/api/show``'s ``parameters`` block (``name<spaces>value`` per line, strings quoted)
    as the typed dict ``/api/create`` takes, coerced by the Modelfile schema."""
    values: dict[str, Any] = {}
    for line in text.splitlines():
        name, _, raw = line.strip().partition(" ")
        raw = raw.strip()
        if not name or name in DEPRECATED_PARAMETERS:
            continue
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            try:
                raw = str(json.loads(raw))
            except json.JSONDecodeError:
                raw = raw[1:-1]  # Go quoting JSON cannot read (\x escapes): keep the text
        try:
            value = coerce_parameter(name, raw)
        except ModelfileError as exc:
            raise SyncError(f"parameter {name} of the source cannot be copied: {exc}") from exc
        if isinstance(value, list):
            values.setdefault(name, []).extend(value)
        else:
            values[name] = value
    return values


def model_recipe(model: str, shown: Mapping[str, Any]) -> ModelRecipe:
    text = str(shown.get("modelfile") or "")
    modelfile: Modelfile | None
    try:
        modelfile = parse(text, strict=False)
        froms, adapters = modelfile.values("from"), modelfile.values("adapter")
    except ModelfileError:
        modelfile = None
        found = _BLOB_LINE.findall(text)
        froms = [value for command, value in found if command.lower() == "from"]
        adapters = [value for command, value in found if command.lower() == "adapter"]
    from_digests = _blob_digests(froms)
    if not from_digests:
        raise SyncError(f"cannot tell which blobs make up {model}: its Modelfile has no blob FROM")
    # The first FROM is the model's weights; any further one (a projector) keeps its blob name.
    files = {"model.gguf": from_digests[0]}
    files.update({digest_to_filename(d): d for d in from_digests[1:]})
    adapter_digests = _blob_digests(adapters)
    adapter_files = (
        {"adapter.gguf": adapter_digests[0]}
        if len(adapter_digests) == 1
        else {digest_to_filename(d): d for d in adapter_digests}
    )
    body: dict[str, Any] = {"model": model, "files": files}
    if adapter_files:
        body["adapters"] = adapter_files
    template = shown.get("template")
    info = shown.get("model_info") or {}
    # A template that is the GGUF's own chat template (or the default) is what the target
    # falls back to anyway; sending it would add a TEMPLATE layer the source does not have.
    if template and template not in (_DEFAULT_TEMPLATE, info.get("tokenizer.chat_template")):
        body["template"] = template
    if shown.get("system"):
        body["system"] = shown["system"]
    parameters = _parameters(str(shown.get("parameters") or ""))
    if parameters:
        body["parameters"] = parameters
    if shown.get("messages"):
        body["messages"] = shown["messages"]
    # The Modelfile keeps licenses apart; show's ``license`` joins them into one text.
    licenses = modelfile.values("license") if modelfile is not None else []
    if not licenses and shown.get("license"):
        licenses = [str(shown["license"])]
    if licenses:
        body["license"] = licenses
    return ModelRecipe(files=files, adapters=adapter_files, body=body)


async def copy_model(
    source: NodeClient,
    target: NodeClient,
    model: str,
    *,
    progress: ProgressCallback | None = None,
    source_models_dir: Path | None = None,
) -> CopyResult:
    """Copy ``model`` from ``source`` to ``target`` (see the module docstring for how).

    A model of that name on the target is replaced, as ``ollama create`` would. Blobs the
    target has are not sent again. ``source_models_dir`` is where a source that
    cannot serve ``GET /api/blobs`` (a real Ollama) keeps its models, as seen from here.
    Raises :class:`ModelNotFoundError` when the source lacks the model and :class:`SyncError`
    when a blob cannot be read or arrives corrupted, or the target ends up different.
    """
    started = time.monotonic()

    def report(status: str, **details: Any) -> None:
        if progress is not None:
            progress(SyncProgress(model, source.name, target.name, status, **details))

    report("reading manifest")
    recipe = model_recipe(model, await source.show(model))
    copied: list[str] = []
    present: list[str] = []
    sent = 0
    for digest in recipe.digests:
        if await target.has_blob(digest):
            present.append(digest)
            report(f"using existing {digest.split(':', 1)[1][:12]}", digest=digest)
            continue
        sent += await _copy_blob(source, target, digest, report, source_models_dir)
        copied.append(digest)
    report("creating model")
    try:
        async for _ in target.create(recipe.body):
            pass
    except (InvalidRequestError, NodeError) as exc:
        raise SyncError(f"{target.name} could not create {model}: {exc}") from exc
    report("verifying")
    made = model_recipe(model, await target.show(model))
    if made.files != recipe.files or made.adapters != recipe.adapters:
        raise SyncError(
            f"{model} on {target.name} uses blobs {made.digests}, not {recipe.digests} "
            f"as on {source.name}"
        )
    report("success")
    return CopyResult(
        model, source.name, target.name, copied, present, sent, time.monotonic() - started
    )


# -- planning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeInventory:
    """A node and the models it holds (canonical names, as from ``/api/tags``)."""

    record: NodeRecord
    models: AbstractSet[str]

    def has(self, model: str) -> bool:
        wanted = _key(model)
        return any(_key(name) == wanted for name in self.models)


@dataclass(frozen=True)
class Transfer:
    """One copy the plan asks for."""

    model: str
    source: NodeRecord
    target: NodeRecord

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "source": self.source.name, "target": self.target.name}


@dataclass(frozen=True)
class SyncPlan:
    """The copies to make, the placements already met (model, node) and what cannot be met."""

    transfers: list[Transfer] = field(default_factory=list)
    in_place: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "transfers": [t.to_dict() for t in self.transfers],
            "in_place": [{"model": m, "node": n} for m, n in self.in_place],
            "problems": list(self.problems),
        }


def _key(model: str) -> str:
    # Ollama matches model names case-insensitively.
    return canonical_name(model).lower()


def _labels_match(node: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(node.get(key) == value for key, value in wanted.items())


def plan(placements: Sequence[Placement], nodes: Sequence[NodeInventory]) -> SyncPlan:
    """Which copies make the nodes match ``placements``; pure, so it is tested by tables.

    For each placement the candidate targets are the nodes that are not offline and carry all
    of its labels. With ``replicas`` N the first N of them count, ranked by: already holds the
    model, then priority (highest first), then name, so existing copies are kept and the most
    preferred nodes fill the rest. A missing copy is made from a node that holds the model,
    preferring embedded neurons (they serve blobs over HTTP), then priority, then name. A
    placement that cannot be met (no holder, too few nodes) becomes a problem, not an error.
    """
    result = SyncPlan()
    live = [n for n in nodes if n.record.status not in _OUT_OF_SERVICE]
    for placement in placements:
        model = placement.model
        eligible = [n for n in live if _labels_match(n.record.labels, placement.labels)]
        ranked = sorted(
            eligible, key=lambda n: (not n.has(model), -n.record.priority, n.record.name)
        )
        targets = ranked if placement.replicas is None else ranked[: placement.replicas]
        wanted = f"{placement.replicas} replica(s)" if placement.replicas else "a copy"
        where = f"nodes labelled {placement.labels}" if placement.labels else "nodes"
        if not eligible:
            result.problems.append(f"{model}: wants {wanted} but no online {where} exist")
            continue
        if placement.replicas is not None and len(eligible) < placement.replicas:
            result.problems.append(
                f"{model}: wants {wanted} but only {len(eligible)} online {where} exist"
            )
        result.in_place.extend((model, n.record.name) for n in targets if n.has(model))
        missing = [n for n in targets if not n.has(model)]
        if not missing:
            continue
        holders = [n for n in live if n.has(model)]
        if not holders:
            result.problems.append(
                f"{model}: no online node holds it, so there is nothing to copy from "
                "(pull it onto one node first)"
            )
            continue
        source = min(
            holders,
            key=lambda n: (n.record.kind != "embedded", -n.record.priority, n.record.name),
        )
        result.transfers.extend(Transfer(model, source.record, n.record) for n in missing)
    return result


# -- carrying out the placements -----------------------------------------------------------


@dataclass(frozen=True)
class SyncReport:
    """What :func:`synchronize` did: copies made, placements already met, problems."""

    transfers: list[CopyResult]
    skipped: list[tuple[str, str]]
    problems: list[str]
    seconds: float
    # (node, why) for the nodes sync cannot copy to or from: OpenAI-compatible ones.
    nodes_skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "transfers": [t.to_dict() for t in self.transfers],
            "skipped": [{"model": m, "node": n, "reason": "present"} for m, n in self.skipped],
            "nodes_skipped": [{"node": n, "reason": why} for n, why in self.nodes_skipped],
            "problems": list(self.problems),
            "bytes_copied": sum(t.bytes_copied for t in self.transfers),
            "seconds": round(self.seconds, 3),
        }


async def _inventory(record: NodeRecord, http: httpx.AsyncClient) -> NodeInventory | NeuronsError:
    try:
        tags = await NodeClient(record.url, name=record.name, client=http).tags()
    except NeuronsError as exc:
        return exc
    names = {canonical_name(str(t.get("name") or t.get("model") or "")) for t in tags}
    return NodeInventory(record, frozenset(names))


def _announce(publish: Publish | None, copied: CopyResult) -> None:
    if publish is None:
        return
    try:
        publish(MODEL_SYNCED, copied.model, source=copied.source, target=copied.target,
                blobs_copied=len(copied.copied), bytes_copied=copied.bytes_copied,
                seconds=round(copied.seconds, 3))  # fmt: skip
    except Exception:  # an announcement is not worth a failed sync
        log.exception("announcing the copy of %s failed", copied.model)


def node_models_dir(node: NodeRecord | NodeView) -> Path | None:
    """Where a node that cannot serve blobs keeps its models, as this machine sees it (its
    ``models_dir`` label)."""
    value = node.labels.get("models_dir")
    return Path(value).expanduser() if value else None


async def synchronize(
    store: Store,
    http: httpx.AsyncClient,
    *,
    model: str | None = None,
    progress: ProgressCallback | None = None,
    publish: Publish | None = None,
) -> SyncReport:
    """Make the nodes hold what the placements in ``store`` ask for (or only ``model``'s).

    Nodes not marked offline are asked for their models; one that does not answer is left out
    and reported. Copies run one after another; a failed copy is reported and the others go
    on; each finished copy is announced through ``publish`` (``model.synced``). Raises
    :class:`ModelNotFoundError` when ``model`` has no placement.
    """
    started = time.monotonic()
    placements = [store.placements.get(model)] if model else store.placements.list()
    records = [r for r in store.nodes.list() if r.status not in _OUT_OF_SERVICE]
    passed_over = [(r.name, skip_reason("sync")) for r in records if r.kind == OPENAI]
    records = [r for r in records if r.kind != OPENAI]  # no Ollama API: no blobs to copy
    problems: list[str] = []
    inventories: list[NodeInventory] = []
    for record, found in zip(
        records, await asyncio.gather(*(_inventory(r, http) for r in records)), strict=True
    ):
        if isinstance(found, NeuronsError):
            problems.append(f"{record.name}: cannot list its models: {found}")
        else:
            inventories.append(found)
    planned = plan(placements, inventories)
    problems.extend(planned.problems)
    done: list[CopyResult] = []
    for transfer in planned.transfers:
        source, target = transfer.source, transfer.target
        log.info("sync: copying %s from %s to %s", transfer.model, source.name, target.name)
        try:
            copied = await copy_model(
                NodeClient(source.url, name=source.name, client=http),
                NodeClient(target.url, name=target.name, client=http),
                transfer.model,
                progress=progress,
                source_models_dir=node_models_dir(source),
            )
        except NeuronsError as exc:
            problems.append(
                f"{transfer.model}: copy from {source.name} to {target.name} failed: {exc}"
            )
            continue
        done.append(copied)
        _announce(publish, copied)
    return SyncReport(done, planned.in_place, problems, time.monotonic() - started, passed_over)
