"""A Modelfile to and from the ``/api/create`` JSON body (Ollama v0.5.5+).

Since v0.5.5 the client parses the Modelfile and sends structured JSON: Ollama's
``Modelfile.CreateRequest`` plus the CLI's blob upload. :func:`to_create_request` does the
same. FROM, ADAPTER and DRAFT that name an existing local file (absolute, ``~``, or relative
to ``base_dir``) are SHA-256 hashed into ``files`` / ``adapters`` / ``draft_files`` under the
file's base name, and returned as blobs to upload first; a FROM that names nothing local is
the base model's name.

A blob that is already on the server has no local path, so a Modelfile names it by digest:
``FROM @sha256:<64 hex>`` (ADAPTER and DRAFT alike). No model name or ordinary path starts
with ``@``. In the body such a file is keyed ``sha256-<hex>``, the blob's file name in
Ollama's store, which is also what Ollama's CLI sends for a ``FROM`` naming a blob file (as
``ollama show --modelfile`` writes them). :func:`from_create_request` writes every ``files``
entry this way; the body's own file names are not kept, since a Modelfile has nowhere to
keep them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neurons.errors import ModelfileError
from neurons.modelfile.parser import (
    MESSAGE_ROLES,
    Instruction,
    Modelfile,
    is_valid_requires,
    validate,
)
from neurons.modelfile.schema import DEPRECATED_PARAMETERS, format_parameter_value
from neurons.ollama.names import file_digest

__all__ = ["BLOB_REFERENCE", "blob_reference", "from_create_request", "to_create_request"]

log = logging.getLogger(__name__)

BLOB_REFERENCE = re.compile(r"@sha256[:-]([0-9a-fA-F]{64})", re.ASCII)
_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})", re.ASCII)
_BODY_ORDER = (
    "model",
    "from",
    "files",
    "adapters",
    "draft_files",
    "template",
    "license",
    "system",
    "parameters",
    "messages",
    "renderer",
    "parser",
    "requires",
)


def blob_reference(digest: str) -> str:
    """The Modelfile argument naming blob ``digest`` (``sha256:<hex>``) on the server."""
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise ModelfileError(f"invalid digest format: {digest!r}")
    return f"@sha256:{match[1].lower()}"


def _at(instruction: Instruction, message: str) -> str:
    return f"(line {instruction.line}): {message}" if instruction.line > 0 else message


def _local_path(instruction: Instruction, base_dir: Path) -> Path | None:
    """The existing local file an instruction names (Ollama's expandPath), or None."""
    try:
        path = Path(instruction.value).expanduser()
    except RuntimeError as exc:  # ~user with no such user: Ollama fails here too
        raise ModelfileError(_at(instruction, str(exc))) from None
    path = Path(os.path.abspath(base_dir / path))
    try:
        is_dir = path.is_dir()
        exists = is_dir or path.is_file()
    except OSError as exc:
        raise ModelfileError(_at(instruction, f"{path}: {exc.strerror}")) from None
    if is_dir:
        # Ollama imports a safetensors directory here; neurons runs single GGUF files.
        raise ModelfileError(_at(instruction, f"{path} is a directory: name a single GGUF file"))
    return path if exists else None


def _blob_file(
    instruction: Instruction, base_dir: Path | None, *, required: bool
) -> tuple[str, str, Path | None] | None:
    """``(file name, digest, local path or None)`` for a FROM/ADAPTER/DRAFT that names a
    local file or a blob reference; None for a model name, which ``required`` refuses
    (ADAPTER and DRAFT name files in Ollama, never models)."""
    path = _local_path(instruction, base_dir) if base_dir is not None else None
    if path is not None:
        try:
            return path.name, file_digest(path), path
        except OSError as exc:
            raise ModelfileError(_at(instruction, f"{path}: {exc.strerror}")) from None
    reference = BLOB_REFERENCE.fullmatch(instruction.value)
    if reference is not None:
        hex_digest = reference[1].lower()
        return f"sha256-{hex_digest}", f"sha256:{hex_digest}", None
    if required:
        command = instruction.command.upper()
        raise ModelfileError(_at(instruction, f"{command} {instruction.value}: no such file"))
    return None


def to_create_request(
    modelfile: Modelfile, model: str, *, base_dir: Path | None = None, local_files: bool = True
) -> tuple[dict[str, Any], dict[str, Path]]:
    """The ``/api/create`` body for ``modelfile`` named ``model``, and the blobs to upload
    before sending it (digest -> local file).

    ``local_files=False`` is for Modelfiles that arrive over the network: nothing is read
    from disk, so FROM names a model or ``@sha256:<hex>`` blob and ADAPTER/DRAFT must be blob
    references (a path from a request is never trusted).

    Validates first (ModelfileError lists every problem). As in Ollama: several FROM files
    merge into ``files``, the last ADAPTER wins, ``license`` is always a list, ``requires``
    loses a leading ``v``, ``parameters`` are typed with ``stop`` as a list.
    """
    validate(modelfile)
    base = None if not local_files else Path.cwd() if base_dir is None else Path(base_dir)
    body: dict[str, Any] = {"model": model}
    blobs: dict[str, Path] = {}
    files: dict[str, dict[str, str]] = {"from": {}, "adapter": {}, "draft": {}}
    local: dict[str, list[Path]] = {"from": [], "draft": []}
    licenses: list[str] = []
    messages: list[dict[str, str]] = []
    for instruction in modelfile.instructions:
        command, value = instruction.command, instruction.value
        if command in files:
            found = _blob_file(instruction, base, required=command != "from")
            if found is None:
                body["from"] = value
                continue
            name, digest, path = found
            if command == "adapter":
                files["adapter"].clear()  # Ollama keeps only the last ADAPTER
            files[command][name] = digest
            if path is not None:
                blobs[digest] = path
                local.get(command, []).append(path)
        elif command in ("template", "system", "renderer", "parser"):
            body[command] = value
        elif command == "license":
            licenses.append(value)
        elif command == "requires":
            body["requires"] = value.removeprefix("v")
        elif command == "message":
            messages.append({"role": instruction.key or "", "content": value})
    model_paths = {path.resolve() for path in local["from"]}
    for path in local["draft"]:
        if path.resolve() in model_paths:
            raise ModelfileError(f"DRAFT must not reference the same local path as FROM: {path}")
    extras: dict[str, Any] = {
        "files": files["from"],
        "adapters": files["adapter"],
        "draft_files": files["draft"],
        "license": licenses,
        "parameters": modelfile.parameters(),
        "messages": messages,
    }
    body.update({key: value for key, value in extras.items() if value})
    # The field order of Ollama's api.CreateRequest, for a body that reads like Ollama's.
    return {key: body[key] for key in _BODY_ORDER if key in body}, blobs


def _text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ModelfileError(f"{key} must be a string")


def _digests(body: Mapping[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise ModelfileError(f"{key} must be an object of filename to digest")
    references = []
    for digest in value.values():
        if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
            raise ModelfileError("invalid digest format")
        references.append(blob_reference(digest))
    return references


def from_create_request(body: Mapping[str, Any]) -> Modelfile:
    """The Modelfile for an ``/api/create`` body.

    ``from`` becomes ``FROM name``; every ``files`` / ``adapters`` / ``draft_files`` digest
    becomes ``FROM`` / ``ADAPTER`` / ``DRAFT @sha256:<hex>``. Parameters are checked against
    the schema (deprecated ones are dropped with a warning). Fields a Modelfile cannot hold
    (``model``, ``stream``, ``quantize``, ``info``, ...) are ignored.
    """
    if not isinstance(body, Mapping):
        raise ModelfileError("request body must be a JSON object")
    modelfile = Modelfile()
    add = modelfile.add_instruction
    base = _text(body, "from")
    files = _digests(body, "files")
    if not base and not files:
        raise ModelfileError("neither 'from' or 'files' was specified")
    for reference in ([base] if base else []) + files:
        add("from", reference)
    for command, key in (("adapter", "adapters"), ("draft", "draft_files")):
        for reference in _digests(body, key):
            add(command, reference)
    for command in ("template", "system"):
        text = _text(body, command)
        if text is not None:
            add(command, text)
    parameters = body.get("parameters")
    parameters = {} if parameters is None else parameters
    if not isinstance(parameters, Mapping):
        raise ModelfileError("parameters must be an object")
    for name, value in parameters.items():
        if name in DEPRECATED_PARAMETERS:
            log.warning("parameter %s is deprecated", name)
            continue
        for text in format_parameter_value(str(name), value):
            add("parameter", text, str(name))
    messages = body.get("messages")
    messages = [] if messages is None else messages
    if not isinstance(messages, list):
        raise ModelfileError("messages must be a list of {role, content} objects")
    for message in messages:
        if not isinstance(message, Mapping) or not isinstance(message.get("content", ""), str):
            raise ModelfileError("messages must be a list of {role, content} objects")
        if message.get("role") not in MESSAGE_ROLES:
            raise ModelfileError('message role must be one of "system", "user", or "assistant"')
        add("message", message.get("content", ""), message["role"])
    licenses = body.get("license")
    if isinstance(licenses, str):
        licenses = [licenses]
    if licenses is not None and not (
        isinstance(licenses, list) and all(isinstance(text, str) for text in licenses)
    ):
        raise ModelfileError("license must be a string or a list of strings")
    for text in licenses or []:
        add("license", text)
    requires = _text(body, "requires")
    if requires is not None:
        if not is_valid_requires(requires):
            raise ModelfileError("requires must be a valid semver (e.g. 0.14.0)")
        add("requires", requires)
    for command in ("renderer", "parser"):
        text = _text(body, command)
        if text is not None:
            add(command, text)
    return modelfile
