"""Turning what a user types (a GGUF path or a model name) into a GGUF file on disk."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from neurons.errors import ModelNotFoundError
from neurons.neuron.defaults import DEFAULT_MODELS
from neurons.neuron.modelstore import ModelStore

__all__ = ["locate_gguf"]


def locate_gguf(reference: str, models_dir: Path, cache_dir: Path) -> Path:
    """A path to an existing file wins; then a model in the local store; then one of the
    offline default models, found in its PyPI package (assembled into ``cache_dir`` once)."""
    candidate = Path(reference).expanduser()
    if candidate.is_file():
        return candidate
    store = ModelStore(models_dir)
    name = store.find(reference) if models_dir.is_dir() else None
    if name is not None:
        path = store.load(name).model_path
        if path is not None:
            return path
    wanted = reference if ":" in reference else f"{reference}:latest"
    for default in DEFAULT_MODELS:
        if default.name in (reference, wanted):
            try:
                return _packaged(default.name, default.locate, cache_dir)
            except (FileNotFoundError, ImportError, ValueError) as exc:
                raise ModelNotFoundError(f"model '{reference}' not found: {exc}") from exc
    raise ModelNotFoundError(
        f"model '{reference}' not found: not a file, not in {models_dir}, not a default model"
    )


def _packaged(name: str, locate: Callable[[Path], Path], cache_dir: Path) -> Path:
    target = cache_dir / name.replace(":", "-").replace("/", "-")
    found = sorted(target.glob("*.gguf")) if target.is_dir() else []
    if found:
        return found[0]
    target.mkdir(parents=True, exist_ok=True)
    # Assemble into a scratch directory and rename, so an interrupted run leaves no half file.
    with tempfile.TemporaryDirectory(dir=target) as scratch:
        path = locate(Path(scratch))
        if Path(scratch) not in path.parents:
            return path  # the package ships the file itself (SmolLM2)
        final = target / path.name
        os.replace(path, final)
        return final
