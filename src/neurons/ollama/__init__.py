"""The Ollama wire protocol, in one bottom-layer package: model names and digests, request
helpers and NDJSON, durations, GGUF metadata, Go templates, capabilities, and the tool-call
and thinking parsers. Nothing here imports the embedded server, the gateway or the library;
they all import from here.
"""

from __future__ import annotations

__all__ = ["OLLAMA_COMPAT_VERSION"]

# The Ollama API version whose behaviour neurons follows (answered on /api/version).
OLLAMA_COMPAT_VERSION = "0.13.0"
