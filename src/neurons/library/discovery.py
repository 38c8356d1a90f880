"""What the nodes really hold: ``/api/tags`` and ``/api/show`` of every node, merged by name.

A model a node holds that the catalog does not know (a fine-tune, a custom Modelfile) still
gets a library entry, built from the node's own metadata (GGUF keys in ``model_info``). Each
copy carries the capabilities its node reports (in ``/api/tags`` on embedded neurons and recent
Ollama, in ``/api/show`` always): copies under one name may differ (another TEMPLATE).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, cast, get_args

from neurons.client import NodeClient
from neurons.errors import NeuronsError
from neurons.library.catalog import ArchitectureFacts, Capability, CatalogModel
from neurons.ollama.names import canonical_name

__all__ = ["Discovery", "LocalCopy", "discover"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalCopy:
    node: str
    size_bytes: int
    digest: str
    context_length: int | None
    parameter_size: str | None
    quantization: str | None
    capabilities: tuple[str, ...] = ()  # as the node lists them; empty when it lists none

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "size_bytes": self.size_bytes,
            "digest": self.digest,
            "context_length": self.context_length,
            "parameter_size": self.parameter_size,
            "quantization": self.quantization,
            "capabilities": list(self.capabilities),
        }


@dataclass
class Discovery:
    copies: dict[str, list[LocalCopy]] = field(default_factory=dict)
    local_models: dict[str, CatalogModel] = field(default_factory=dict)
    unreachable: list[str] = field(default_factory=list)


def _arch_int(info: dict[str, Any], arch: str, key: str) -> int | None:
    value = info.get(f"{arch}.{key}")
    if isinstance(value, list):
        value = max((v for v in value if isinstance(v, int)), default=None)
    return int(value) if isinstance(value, int | float) else None


def _reported_capabilities(tag: dict[str, Any], shown: dict[str, Any]) -> tuple[str, ...]:
    for source in (tag, shown):
        listed = source.get("capabilities")
        if isinstance(listed, list) and listed:
            return tuple(str(c) for c in listed)
    return ()


def _model_from_node(
    name: str, tag: dict[str, Any], shown: dict[str, Any], reported: tuple[str, ...]
) -> CatalogModel:
    info = shown.get("model_info") or {}
    details = tag.get("details") or {}
    arch = str(info.get("general.architecture") or details.get("family") or "unknown")
    known = get_args(Capability)  # a copy may list one newer than CatalogModel knows
    capabilities = [cast("Capability", c) for c in reported if c in known] or ["completion"]
    # Nodes report general.parameter_count (Ollama and the embedded neuron both do); without
    # it, assume 4-bit weights (~0.5 bytes per parameter), and say so in the description.
    counted = int(info.get("general.parameter_count") or 0)
    parameters = counted or max(int(tag.get("size") or 1) * 2, 1)
    return CatalogModel(
        name=name,
        family=str(details.get("family") or arch),
        description=f"Found on the network ({arch}, {details.get('parameter_size', '?')})"
        + ("" if counted else "; parameter count assumed from the file size"),
        parameters=parameters,
        parameter_size=str(details.get("parameter_size") or "?"),
        quantization=str(details.get("quantization_level") or "unknown"),
        file_size_bytes=max(int(tag.get("size") or 1), 1),
        context_length=_arch_int(info, arch, "context_length") or 2048,
        capabilities=tuple(capabilities),
        categories=("embedding",) if "embedding" in capabilities else ("general",),
        license=None,
        architecture=ArchitectureFacts(
            name=arch,
            block_count=_arch_int(info, arch, "block_count"),
            embedding_length=_arch_int(info, arch, "embedding_length"),
            head_count=_arch_int(info, arch, "attention.head_count"),
            head_count_kv=_arch_int(info, arch, "attention.head_count_kv"),
            key_length=_arch_int(info, arch, "attention.key_length"),
            value_length=_arch_int(info, arch, "attention.value_length"),
            feed_forward_length=_arch_int(info, arch, "feed_forward_length"),
            vocab_size=_arch_int(info, arch, "vocab_size"),
            sliding_window=_arch_int(info, arch, "attention.sliding_window") or 0,
        ),
        sources=("node metadata",),
    )


async def _one_node(node: NodeClient, catalog_names: set[str], found: Discovery) -> None:
    try:
        tags = await node.tags()
    except NeuronsError as exc:
        log.warning("discovery: %s: %s", node.name, exc)
        found.unreachable.append(node.name)
        return
    for tag in tags:
        name = canonical_name(str(tag.get("name") or tag.get("model") or ""))
        try:
            shown = await node.show(name)
        except NeuronsError:
            shown = {}
        info = shown.get("model_info") or {}
        arch = str(info.get("general.architecture", ""))
        details = tag.get("details") or {}
        reported = _reported_capabilities(tag, shown)
        found.copies.setdefault(name, []).append(
            LocalCopy(
                node=node.name,
                size_bytes=int(tag.get("size") or 0),
                digest=str(tag.get("digest") or ""),
                context_length=_arch_int(info, arch, "context_length") if arch else None,
                parameter_size=details.get("parameter_size"),
                quantization=details.get("quantization_level"),
                capabilities=reported,
            )
        )
        if name not in catalog_names and name not in found.local_models:
            found.local_models[name] = _model_from_node(name, tag, shown, reported)


async def discover(nodes: list[NodeClient], catalog_names: set[str]) -> Discovery:
    """Ask every node what it holds; unreachable nodes are listed, not fatal."""
    found = Discovery()
    await asyncio.gather(*(_one_node(node, catalog_names, found) for node in nodes))
    for copies in found.copies.values():
        copies.sort(key=lambda c: c.node)
    return found
