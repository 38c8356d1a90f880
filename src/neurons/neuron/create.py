"""Building models: ``/api/create`` (current JSON shape) and the offline default imports.

A model is a manifest over blobs: the GGUF (``files``), an optional LoRA (``adapters``), and
small layers for template, system, params, messages and license. Layers that exist already
are reused ("using existing layer"), exactly as Ollama reports it.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from neurons.errors import InvalidModelFileError, InvalidRequestError
from neurons.neuron.modelstore import (
    MEDIA_ADAPTER,
    MEDIA_CONFIG,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    Layer,
    Manifest,
    ModelStore,
)
from neurons.neuron.options import merge_options
from neurons.ollama.ggufmeta import human_parameter_count, is_gguf, read_gguf_info
from neurons.ollama.names import ModelName, normalize_digest

__all__ = ["CreateSpec", "create_model"]

_REPLACED_BY_REQUEST = {MEDIA_TEMPLATE, MEDIA_SYSTEM, MEDIA_PARAMS, MEDIA_MESSAGES, MEDIA_LICENSE}


@dataclass
class CreateSpec:
    """The ``/api/create`` body, validated."""

    model: str
    from_: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    license: list[str] | None = None
    parameters: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None

    @classmethod
    def from_request(cls, body: dict[str, Any]) -> CreateSpec:
        model = body.get("model") or body.get("name") or ""
        if not isinstance(model, str) or not model:
            raise InvalidRequestError("model is required")
        files = _digest_map(body.get("files"), "files")
        adapters = _digest_map(body.get("adapters"), "adapters")
        from_ = body.get("from")
        if not from_ and not files:
            raise InvalidRequestError("neither 'from' or 'files' was specified")
        license_value = body.get("license")
        if isinstance(license_value, str):
            licenses: list[str] | None = [license_value]
        elif isinstance(license_value, list) and all(isinstance(x, str) for x in license_value):
            licenses = list(license_value)
        elif license_value is None:
            licenses = None
        else:
            raise InvalidRequestError("license must be a string or a list of strings")
        messages = body.get("messages")
        if messages is not None:
            if not isinstance(messages, list) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages
            ):
                raise InvalidRequestError("messages must be a list of {role, content} objects")
            for m in messages:
                if m["role"] not in ("system", "user", "assistant"):
                    raise InvalidRequestError(
                        'message role must be one of "system", "user", or "assistant"'
                    )
        parameters = body.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequestError("parameters must be an object")
        return cls(
            model=model,
            from_=from_ if isinstance(from_, str) and from_ else None,
            files=files,
            adapters=adapters,
            template=_opt_str(body, "template"),
            system=_opt_str(body, "system"),
            license=licenses,
            parameters=parameters,
            messages=[{"role": m["role"], "content": str(m.get("content", ""))} for m in messages]
            if messages is not None
            else None,
        )


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"{key} must be a string")
    return value


def _digest_map(value: Any, label: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{label} must be an object of filename to digest")
    result = {}
    for filename, digest in value.items():
        path = PurePosixPath(str(filename))
        if path.is_absolute() or ".." in path.parts or "\\" in str(filename):
            raise InvalidRequestError("file path must be relative")
        if not isinstance(digest, str) or not digest:
            raise InvalidRequestError("invalid digest format")
        result[str(filename)] = normalize_digest(digest)
    return result


def create_model(store: ModelStore, spec: CreateSpec) -> Iterator[dict[str, Any]]:
    """Create (or replace) ``spec.model``, yielding Ollama-style progress objects."""
    name = ModelName.parse(spec.model)
    layers: list[Layer] = []
    config: dict[str, Any] = {}
    if spec.from_:
        yield {"status": "parsing from"}
        base = store.load(spec.from_)
        for layer in base.manifest.layers:
            if spec.adapters and layer.media_type == MEDIA_ADAPTER:
                continue
            if _replaced(layer.media_type, spec):
                continue
            yield {"status": f"using existing layer {layer.digest}"}
            layers.append(layer)
        config = dict(base.config)
        if not spec.files:
            config["parent_model"] = base.name.display
    if spec.files:
        layers = [la for la in layers if la.media_type != MEDIA_MODEL]
        for filename, digest in spec.files.items():
            path = store.require_blob(digest)
            if not is_gguf(path):
                raise InvalidModelFileError("supplied file was not in GGUF format")
            yield {"status": "parsing GGUF"}
            info = read_gguf_info(path)
            config = {
                "model_format": "gguf",
                "model_family": info.architecture,
                "model_families": [info.architecture],
                "model_type": human_parameter_count(info.parameter_count),
                "file_type": info.file_type,
            }
            layers.insert(0, Layer(MEDIA_MODEL, digest, path.stat().st_size))
            yield {"status": f"using existing layer {digest}", "file": filename}
    for filename, digest in spec.adapters.items():
        path = store.require_blob(digest)
        if not is_gguf(path):
            raise InvalidModelFileError("adapter file was not in GGUF format")
        layers.append(Layer(MEDIA_ADAPTER, digest, path.stat().st_size))
        yield {"status": f"using existing layer {digest}", "file": filename}
    if not any(la.media_type == MEDIA_MODEL for la in layers):
        raise InvalidRequestError("neither 'from' or 'files' was specified")
    texts = [(MEDIA_TEMPLATE, spec.template), (MEDIA_SYSTEM, spec.system)]
    texts += [(MEDIA_LICENSE, text) for text in spec.license or []]
    for media, text in texts:
        if text is not None:
            layers.append(_small_layer(store, media, text.encode("utf-8")))
            yield {"status": f"creating new layer {layers[-1].digest}"}
    if spec.parameters is not None:
        # Validate types now, so a bad value fails at create time and not at first use.
        merge_options(spec.parameters)
        body = json.dumps(spec.parameters, sort_keys=True).encode()
        layers.append(_small_layer(store, MEDIA_PARAMS, body))
        yield {"status": f"creating new layer {layers[-1].digest}"}
    if spec.messages is not None:
        body = json.dumps(spec.messages).encode()
        layers.append(_small_layer(store, MEDIA_MESSAGES, body))
        yield {"status": f"creating new layer {layers[-1].digest}"}
    config.update(
        {
            "architecture": _go_arch(),
            "os": platform.system().lower(),
            "rootfs": {"type": "layers", "diff_ids": [la.digest for la in layers]},
        }
    )
    config_layer = _small_layer(store, MEDIA_CONFIG, json.dumps(config).encode())
    yield {"status": "writing manifest"}
    store.write_manifest(name, Manifest(config=config_layer, layers=tuple(layers)))
    yield {"status": "success"}


def _replaced(media_type: str, spec: CreateSpec) -> bool:
    if media_type not in _REPLACED_BY_REQUEST:
        return False
    given = {
        MEDIA_TEMPLATE: spec.template,
        MEDIA_SYSTEM: spec.system,
        MEDIA_PARAMS: spec.parameters,
        MEDIA_MESSAGES: spec.messages,
        MEDIA_LICENSE: spec.license,
    }
    return given[media_type] is not None


def _small_layer(store: ModelStore, media_type: str, data: bytes) -> Layer:
    stored = store.add_blob_bytes(data)
    return Layer(media_type=media_type, digest=stored.digest, size=stored.size)


def _go_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
