"""Seed 000's ``OllamaModelfileManager``: load, edit, validate, tune and save a Modelfile.

The seed's usage example works as written::

    manager = OllamaModelfileManager(filepath, host_stats_path, gpu_stats_path)
    try:
        manager.load_modelfile()
    except FileNotFoundError:
        print(f"{filepath} does not exist, creating a new one.")
    manager.set_parameter('temperature', 0.7)
    manager.update_instruction('FROM', 'llama3')
    manager.update_instruction('SYSTEM', 'You are Mario from super mario bros, ...')
    manager.validate_modelfile()            # ValueError listing every problem
    manager.optimize_parameters_for_hardware()
    manager.determine_all_parameters()
    manager.save_modelfile()                # atomic: a reader sees the old or the new file

Host and GPU stats come from the two JSON files when they exist (schema in
:mod:`neurons.hardware.inventory`) and are measured live otherwise. The model named by FROM
is looked up as a GGUF path, in the local model store, or among the offline default models;
when it cannot be found its size is unknown and the tuner says so in its reasons.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from neurons.errors import ModelfileError, NeuronsError
from neurons.hardware.gguf import ModelProfile, read_model_profile
from neurons.hardware.inventory import HardwareInventory
from neurons.hardware.locate import locate_gguf
from neurons.modelfile.parser import Modelfile, check, parse_file
from neurons.modelfile.render import render
from neurons.modelfile.tuning import (
    DEFAULT_HEADROOM,
    ParameterChoice,
    determine_all,
    tune_for_hardware,
)

__all__ = ["OllamaModelfileManager"]


class OllamaModelfileManager:
    """One Modelfile on disk and the hardware it is tuned for."""

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        host_stats_path: str | os.PathLike[str] | None = None,
        gpu_stats_path: str | os.PathLike[str] | None = None,
        *,
        models_dir: Path | None = None,
        cache_dir: Path | None = None,
        headroom: float = DEFAULT_HEADROOM,
    ) -> None:
        self.filepath = Path(filepath)
        self.host_stats_path = Path(host_stats_path) if host_stats_path is not None else None
        self.gpu_stats_path = Path(gpu_stats_path) if gpu_stats_path is not None else None
        if models_dir is None or cache_dir is None:
            from neurons.config import Settings

            settings = Settings()
            models_dir = models_dir or settings.resolved_models_dir
            cache_dir = cache_dir or settings.home / "cache"
        self.models_dir = models_dir
        self.cache_dir = cache_dir
        self.headroom = headroom
        self.modelfile = Modelfile()
        self.choices: dict[str, ParameterChoice] = {}
        self.notes: list[str] = []
        self._inventory: HardwareInventory | None = None

    # -- the file ---------------------------------------------------------------------------

    def load_modelfile(self) -> Modelfile:
        """Read and parse the file; FileNotFoundError when it does not exist (the manager
        then keeps an empty Modelfile to build on), ModelfileError on a syntax error. A
        missing FROM is left for validate_modelfile() to report, so it can be added."""
        if not self.filepath.is_file():
            raise FileNotFoundError(f"{self.filepath} does not exist")
        self.modelfile = parse_file(self.filepath, strict=False)
        return self.modelfile

    def render(self) -> str:
        return render(self.modelfile)

    def save_modelfile(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the Modelfile atomically (temp file in the same directory, fsync, rename);
        the parameters' reasons, when determined, go on top as comments."""
        target = Path(path) if path is not None else self.filepath
        target.parent.mkdir(parents=True, exist_ok=True)
        header = ""
        if self.choices:
            lines = ["# Parameters tuned by neurons for this host:"]
            lines += [f"#   {c.name}: {c.reason}" for c in self.choices.values()]
            header = "\n".join(line.replace("\n", " ") for line in lines) + "\n"
        text = header + self.render()
        fd, scratch = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(scratch, target)
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise
        return target

    # -- editing ----------------------------------------------------------------------------

    def set_parameter(self, name: str, value: Any) -> None:
        """Set PARAMETER ``name`` (checked against the schema: ModelfileError, a ValueError,
        for an unknown name or a value of the wrong type)."""
        self.modelfile.set_parameter(name, value)

    def get_parameter(self, name: str) -> Any:
        return self.modelfile.get_parameter(name)

    def update_instruction(self, instruction: str, value: str) -> None:
        """Set a single-valued instruction (FROM, SYSTEM, TEMPLATE, ADAPTER, LICENSE,
        REQUIRES, ...), replacing any existing one."""
        self.modelfile.set_instruction(instruction, value)

    def add_message(self, role: str, content: str) -> None:
        if role not in ("system", "user", "assistant"):
            raise ModelfileError('message role must be one of "system", "user", or "assistant"')
        self.modelfile.add_instruction("message", content, role)

    def validate_modelfile(self) -> None:
        """Raise ValueError (a ModelfileError) listing every problem; warnings (deprecated
        parameters) are kept in ``notes``."""
        problems, warnings = check(self.modelfile)
        self.notes = list(warnings)
        if problems:
            raise ModelfileError(problems)

    # -- hardware ---------------------------------------------------------------------------

    @property
    def inventory(self) -> HardwareInventory:
        if self._inventory is None:
            self._inventory = HardwareInventory.collect(
                self.host_stats_path, self.gpu_stats_path, disk_path=self.cache_dir
            )
        return self._inventory

    def model_profile(self) -> ModelProfile | None:
        """The GGUF profile of the FROM model, or None when it is not available here."""
        source = self.modelfile.value("from")
        if not source:
            return None
        path = Path(source).expanduser()
        if not path.is_absolute():
            path = self.filepath.parent / path
        try:
            found = path if path.is_file() else locate_gguf(source, self.models_dir, self.cache_dir)
            return read_model_profile(found)
        except NeuronsError:
            return None

    def optimize_parameters_for_hardware(self) -> dict[str, ParameterChoice]:
        """Set num_ctx, num_gpu, num_thread and num_batch for this host and return them
        with their reasons."""
        source = self.modelfile.value("from") or "the model"
        tuned = tune_for_hardware(
            self.inventory, self.model_profile(), headroom=self.headroom, model_label=source
        )
        for choice in tuned.values():
            self.modelfile.set_parameter(choice.name, choice.value)
        self.choices.update(tuned)
        return tuned

    def determine_all_parameters(self) -> dict[str, ParameterChoice]:
        """Give every PARAMETER an explicit value with a one-line reason (hardware-tuned
        values first, tuning now if that has not happened yet)."""
        if not self.choices:
            self.optimize_parameters_for_hardware()
        current = self.modelfile.parameters()
        tuned = {name: self.choices[name] for name in self.choices}
        everything = determine_all(
            current,
            tuned,
            has_gpu=bool(self.inventory.gpus),
            has_draft=self.modelfile.first("draft") is not None,
        )
        for choice in everything.values():
            if choice.name == "stop" and not choice.value:
                continue  # an empty stop list has no Modelfile spelling
            self.modelfile.set_parameter(choice.name, choice.value)
        self.choices = everything
        return everything
