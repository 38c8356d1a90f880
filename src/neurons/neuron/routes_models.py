"""Ollama model-management routes: tags, show, ps, create, copy, delete, blobs, pull, version."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from neurons.errors import InvalidRequestError, ModelfileError, ModelNotFoundError, NeuronsError
from neurons.modelfile.parser import Instruction
from neurons.modelfile.render import render_instruction
from neurons.modelfile.schema import PARAMETERS, format_parameter_value
from neurons.neuron.create import CreateSpec, create_model
from neurons.neuron.modelstore import StoredModel
from neurons.neuron.pull import pull_model
from neurons.neuron.service import Neuron
from neurons.ollama import OLLAMA_COMPAT_VERSION
from neurons.ollama.capabilities import model_capabilities
from neurons.ollama.ggufmeta import human_parameter_count, read_gguf_info
from neurons.ollama.names import ModelName, normalize_digest
from neurons.ollama.wire import ndjson_response, read_json, required_model, rfc3339, wants_stream

__all__ = ["router"]

router = APIRouter()


def _neuron(request: Request) -> Neuron:
    neuron: Neuron = request.app.state.neuron
    return neuron


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> Response:
    return PlainTextResponse("Ollama is running")


@router.api_route("/api/version", methods=["GET", "HEAD"])
async def version() -> Response:
    return JSONResponse({"version": OLLAMA_COMPAT_VERSION})


def details(model: StoredModel) -> dict[str, Any]:
    config = model.config
    family = config.get("model_family") or ""
    families = config.get("model_families") or ([family] if family else None)
    size = config.get("model_type") or ""
    quant = config.get("file_type") or ""
    if model.model_path is not None and (not family or not size):
        info = read_gguf_info(model.model_path)
        family, families = info.architecture, [info.architecture]
        size, quant = human_parameter_count(info.parameter_count), info.file_type
    return {
        "parent_model": config.get("parent_model", ""),
        "format": config.get("model_format", "gguf"),
        "family": family,
        "families": families,
        "parameter_size": size,
        "quantization_level": quant,
    }


def _capabilities(model: StoredModel) -> list[str]:
    info = read_gguf_info(model.model_path) if model.model_path is not None else None
    return model_capabilities(
        go_template=model.template, chat_template=info.chat_template if info else None, info=info
    )


def _summary(model: StoredModel) -> dict[str, Any]:
    return {
        "name": model.name.display,
        "model": model.name.display,
        "modified_at": rfc3339(model.modified_at),
        "size": model.manifest.size,
        "digest": model.manifest_digest.split(":", 1)[1],
        "details": details(model),
        "capabilities": _capabilities(model),
    }


@router.api_route("/api/tags", methods=["GET", "HEAD"])
async def tags(request: Request) -> Response:
    store = _neuron(request).store
    models = []
    for name in store.iter_names():
        try:
            models.append(store.load(name))
        except (NeuronsError, ValueError, KeyError):
            continue  # a broken manifest must not hide the others
    models.sort(key=lambda m: m.modified_at, reverse=True)
    return JSONResponse({"models": [_summary(m) for m in models]})


@router.get("/api/ps")
async def ps(request: Request) -> Response:
    neuron = _neuron(request)
    runners = sorted(
        neuron.engine.runners.values(), key=lambda r: r.expires_at_wall(), reverse=True
    )
    seen: set[str] = set()
    models = []
    for runner in runners:
        if runner.model.manifest_digest in seen:
            continue
        seen.add(runner.model.manifest_digest)
        entry = _summary(runner.model)
        entry.update(
            {
                "size": runner.size_bytes,
                "expires_at": rfc3339(runner.expires_at_wall()),
                "size_vram": 0,
                "context_length": runner.load.num_ctx,
            }
        )
        models.append(entry)
    return JSONResponse({"models": models})


def _parameters_text(params: dict[str, Any]) -> str:
    rows = []
    for key, value in sorted(params.items()):
        for item in value if isinstance(value, list) else [value]:
            shown = (
                json.dumps(item)
                if isinstance(item, str)
                else str(item).lower()
                if isinstance(item, bool)
                else item
            )
            rows.append(f"{key:<30} {shown}")
    return "\n".join(rows)


def _modelfile(model: StoredModel, template: str | None) -> str:
    """The model as Modelfile text, written by the same renderer ``neurons modelfile`` uses,
    so it parses back (Ollama's output does not always: it does not quote values)."""
    instructions: list[Instruction] = []
    if model.model_path is not None:
        instructions.append(Instruction("from", str(model.model_path)))
    if template:
        instructions.append(Instruction("template", template))
    if model.system:
        instructions.append(Instruction("system", model.system))
    instructions += [Instruction("adapter", str(path)) for path in model.adapter_paths]
    for key, value in sorted(model.params.items()):
        for item in value if isinstance(value, list) else [value]:
            text = format_parameter_value(key, item) if key in PARAMETERS else [str(item)]
            instructions += [Instruction("parameter", t, key) for t in text]
    instructions += [
        Instruction("message", str(m.get("content", "")), str(m.get("role", "")))
        for m in model.messages
    ]
    instructions += [Instruction("license", text) for text in model.licenses]
    lines = [
        '# Modelfile generated by "neurons show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {model.name.display}",
        "",
    ]
    for instruction in instructions:
        try:
            lines.append(render_instruction(instruction))
        except ModelfileError:
            lines.append(f"# {instruction.command.upper()} cannot be written in Modelfile syntax")
    return "\n".join(lines) + "\n"


@router.post("/api/show")
async def show(request: Request) -> Response:
    body = await read_json(request)
    name = required_model(body)
    model = _neuron(request).store.load(name)
    info = read_gguf_info(model.model_path) if model.model_path is not None else None
    template = model.template or (info.chat_template if info else None) or "{{ .Prompt }}"
    capabilities = _capabilities(model)
    payload: dict[str, Any] = {
        "license": "\n".join(model.licenses),
        "modelfile": _modelfile(model, template),
        "parameters": _parameters_text(model.params),
        "template": template,
        "details": details(model),
        "model_info": info.model_info() if info else None,
        "capabilities": capabilities,
        "modified_at": rfc3339(model.modified_at),
    }
    if model.system:
        payload["system"] = model.system
    if model.messages:
        payload["messages"] = model.messages
    return JSONResponse(payload)


async def _progress(body: dict[str, Any], events: AsyncIterator[dict[str, Any]]) -> Response:
    """Progress objects as NDJSON, or (``stream: false``) the last one / the error."""
    if wants_stream(body):
        return ndjson_response(events)
    final: dict[str, Any] = {}
    async for event in events:
        final = event
    return JSONResponse(final)


async def _iterate_in_thread(events: Iterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Run a blocking progress generator (hashing, copying) off the event loop."""
    sentinel = object()
    while True:
        item = await asyncio.to_thread(next, events, sentinel)
        if item is sentinel:
            return
        yield item  # type: ignore[misc]


@router.post("/api/create")
async def create(request: Request) -> Response:
    body = await read_json(request)
    spec = CreateSpec.from_request(body)
    store = _neuron(request).store
    # create_model checks these too, but only once the stream has begun (status 200): checked
    # here, a bad name, unknown base or missing blob gets its own status code.
    if spec.from_:
        store.resolve_name(spec.from_)
    for digest in [*spec.files.values(), *spec.adapters.values()]:
        store.require_blob(digest)
    # Replacing a model that is loaded must not keep serving the old weights.
    existing = store.find(spec.model)  # parses the name: 400 if invalid
    if existing is not None:
        _neuron(request).engine.unload_model(store.read_manifest(existing)[1])
    events = _iterate_in_thread(create_model(store, spec))
    return await _progress(body, events)


@router.api_route("/api/blobs/{digest}", methods=["HEAD"])
async def blob_exists(digest: str, request: Request) -> Response:
    store = _neuron(request).store
    normal = normalize_digest(digest)
    if not store.has_blob(normal):
        return JSONResponse({"error": f'blob "{normal}" not found'}, status_code=404)
    return Response(status_code=200)


@router.get("/api/blobs/{digest}")
async def blob_download(digest: str, request: Request) -> Response:
    """neurons extension (Ollama has only HEAD and POST): the blob's bytes, so another node
    can be given a model through the Ollama API alone (``neurons.network.sync``).

    The file path is built from the digest only after :func:`normalize_digest` has checked
    it is ``sha256:<64 hex>``: nothing a request sends can name another file.
    """
    store = _neuron(request).store
    normal = normalize_digest(digest)
    if not store.has_blob(normal):
        return JSONResponse({"error": f'blob "{normal}" not found'}, status_code=404)
    return FileResponse(store.blob_path(normal), media_type="application/octet-stream")


@router.post("/api/blobs/{digest}")
async def blob_upload(digest: str, request: Request) -> Response:
    store = _neuron(request).store
    expected = normalize_digest(digest)
    if store.has_blob(expected):
        return Response(status_code=200)
    writer = store.blob_writer()
    try:
        async for chunk in request.stream():
            writer.write(chunk)
        writer.commit(expected)
    except BaseException:
        writer.abort()
        raise
    return Response(status_code=201)


@router.post("/api/copy")
async def copy(request: Request) -> Response:
    body = await read_json(request)
    source, destination = body.get("source"), body.get("destination")
    if not isinstance(source, str) or not source:
        raise InvalidRequestError(f'source "{source or ""}" is invalid')
    if not isinstance(destination, str) or not destination:
        raise InvalidRequestError(f'destination "{destination or ""}" is invalid')
    store = _neuron(request).store
    try:
        src = store.resolve_name(source)
    except ModelNotFoundError:
        raise ModelNotFoundError(f'model "{source}" not found') from None
    try:
        dst = ModelName.parse(destination)
    except NeuronsError:
        raise InvalidRequestError(f'destination "{destination}" is invalid') from None
    manifest, _, _ = store.read_manifest(src)
    store.write_manifest(dst, manifest)
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(request: Request) -> Response:
    body = await read_json(request)
    name = required_model(body)
    neuron = _neuron(request)
    try:
        ModelName.parse(name)
    except NeuronsError:
        raise InvalidRequestError(f'name "{name}" is invalid') from None
    resolved = neuron.store.resolve_name(name)
    _, manifest_digest, _ = neuron.store.read_manifest(resolved)
    neuron.engine.unload_model(manifest_digest)
    neuron.store.delete_manifest(resolved)
    neuron.store.prune_blobs()
    return Response(status_code=200)


@router.post("/api/pull")
async def pull(request: Request) -> Response:
    body = await read_json(request)
    name = required_model(body)
    ModelName.parse(name)
    store = _neuron(request).store
    insecure = bool(body.get("insecure"))
    transport = getattr(request.app.state, "registry_transport", None)
    events = pull_model(store, name, insecure=insecure, transport=transport)
    return await _progress(body, events)
