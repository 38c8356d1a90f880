"""The embedded neuron: an Ollama-API server on llama-cpp-python with Ollama's on-disk layout."""

from __future__ import annotations
