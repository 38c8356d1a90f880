"""The training subprocess: ``python -m neurons.finetune.worker JOB_DIR``.

The control plane writes ``JOB_DIR/spec.json`` (a :class:`WorkerSpec`) and the examples file
it names, starts this module, and follows ``JOB_DIR/events.jsonl``: one JSON object a line,
appended and flushed per event (no fsync: a control plane that reads the file sees every line
the worker wrote, and a machine crash costs at most the last few progress lines, never a
checkpoint). The events are :mod:`neurons.finetune.trainer`'s plus these::

    {"type": "phase", "phase": "preparing"}               before the base model loads
    {"type": "phase", "phase": "exporting"}
    {"type": "done", "adapter": "/path/adapter.gguf", "metrics": {...}}
    {"type": "stopped", "step": 40}                       stopped at a checkpoint
    {"type": "error", "message": "..."}                   (the traceback goes to stderr)

Exit codes: :data:`EXIT_OK` (0) done, :data:`EXIT_ERROR` (1) failed, :data:`EXIT_STOPPED`
(75, ``EX_TEMPFAIL``) stopped and resumable: run the worker again on the same ``JOB_DIR`` and
training continues from ``JOB_DIR/checkpoint``.

**Stopping.** SIGTERM or SIGINT sets a flag that the trainer reads between optimizer steps;
it writes a checkpoint and returns, and the worker exits 75. A signal during loading or the
first evaluation takes effect at the first step boundary; one during export is ignored (the
job is done by then).

**No orphans.** On Linux the worker asks the kernel for SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), so a control plane that crashes or is killed hard takes its
trainer down with it, through the same checkpoint-and-exit path. The signal follows the parent
*thread* that started the worker: start it from a thread that lives as long as the control
plane (the event loop's, as ``asyncio.create_subprocess_exec`` does), not from a short-lived
pool thread. Elsewhere the call is skipped.

Torch runs on the spec's ``torch_threads`` (the control plane's ``NEURONS_TORCH_THREADS``);
a spec without one (a worker started by hand) takes the worker's own environment, and unset
there too, the measured default of :mod:`neurons.torch_threads`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import signal
import sys
import threading
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from neurons.errors import InvalidRequestError, NeuronsError
from neurons.finetune.examples import Example
from neurons.finetune.presets import Hyperparameters
from neurons.torch_threads import use_torch_threads

if TYPE_CHECKING:  # torch and transformers load only after the parent-death signal is set
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from neurons.finetune.trainer import TrainResult

__all__ = [
    "ADAPTER_DIR",
    "EVENTS",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_STOPPED",
    "SPEC",
    "WorkerSpec",
    "main",
    "read_events",
]

SPEC = "spec.json"
EVENTS = "events.jsonl"
ADAPTER_DIR = "adapter"  # the PEFT adapter (save_pretrained), always written
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_STOPPED = 75  # os.EX_TEMPFAIL: stopped at a checkpoint, run again to resume
THREADS_ENV = "NEURONS_TORCH_THREADS"  # read through Settings (NEURONS_TRAIN_THREADS too)
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker run trains. Paths are strings, as they travel in JSON.

    The base is either ``base_gguf`` (a GGUF the neurons serve; converted into transformers
    once and cached under ``cache_dir``, keyed by ``base_digest`` when given) or
    ``base_hf_dir``: a model already in transformers format (a directory with config,
    weights and tokenizer), useful for tests and for a future import of HF models.
    ``examples`` is a JSONL file of :meth:`Example.to_dict` lines; ``hyperparameters`` is
    :meth:`Hyperparameters.to_dict`. With ``adapter_out`` the adapter is exported there as a
    GGUF LoRA adapter (that needs ``base_gguf``); without it only the PEFT adapter directory
    ``JOB_DIR/adapter`` is written (it always is).
    """

    examples: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    base_gguf: str | None = None
    base_digest: str | None = None
    cache_dir: str | None = None
    base_hf_dir: str | None = None
    adapter_out: str | None = None
    torch_threads: int | None = None  # None: the worker's environment decides

    def __post_init__(self) -> None:
        if (self.base_gguf is None) == (self.base_hf_dir is None):
            raise InvalidRequestError("worker spec: give exactly one of base_gguf, base_hf_dir")
        if self.base_gguf is not None and self.cache_dir is None:
            raise InvalidRequestError("worker spec: base_gguf needs a cache_dir")
        if self.adapter_out is not None and self.base_gguf is None:
            raise InvalidRequestError("worker spec: a GGUF adapter (adapter_out) needs base_gguf")
        self.hp  # validates the hyperparameters now, not in the worker  # noqa: B018

    @property
    def hp(self) -> Hyperparameters:
        return Hyperparameters.from_dict(self.hyperparameters)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"worker spec is not JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise InvalidRequestError("worker spec must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequestError(f"worker spec: unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:  # a required field is missing
            raise InvalidRequestError(f"worker spec: {exc}") from exc


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event in an events file; a torn last line (a killed worker) is skipped."""
    events: list[dict[str, Any]] = []
    with contextlib.suppress(FileNotFoundError), path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.endswith("\n"):
                with contextlib.suppress(json.JSONDecodeError):
                    events.append(json.loads(line))
    return events


class _EventLog:
    """Appends events to ``events.jsonl``, one flushed line each (line buffering)."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a", encoding="utf-8", buffering=1)

    def emit(self, event: dict[str, Any]) -> None:
        try:
            line = json.dumps(event, allow_nan=False)
        except ValueError:  # a diverged loss: NaN/inf are not JSON, so they go out as null
            line = json.dumps({k: _finite(v) for k, v in event.items()})
        self._file.write(line + "\n")

    def close(self) -> None:
        self._file.close()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the parent dies; nothing elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _load_examples(path: Path) -> list[Example]:
    examples: list[Example] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                examples.append(Example.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidRequestError(f"{path.name} line {number}: {exc}") from exc
    return examples


def _load_base(spec: WorkerSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if spec.base_hf_dir is not None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        directory = Path(spec.base_hf_dir)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory)
        return model, tokenizer
    from neurons.finetune.base import load_base

    assert spec.base_gguf is not None and spec.cache_dir is not None  # __post_init__
    return load_base(Path(spec.base_gguf), Path(spec.cache_dir), digest=spec.base_digest)


def _run(job_dir: Path, spec: WorkerSpec, log: _EventLog, stop: threading.Event) -> int:
    """Train, export, report; the exit code. Errors propagate to :func:`main`."""
    hp = spec.hp
    log.emit({"type": "phase", "phase": "preparing"})
    examples = _load_examples(Path(spec.examples))
    from transformers.utils import logging as transformers_logging

    from neurons.finetune.trainer import train_lora  # torch: seconds to import

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    model, tokenizer = _load_base(spec)
    result: TrainResult = train_lora(
        model, tokenizer, examples, hp, job_dir, emit=log.emit, should_stop=stop.is_set
    )
    if result.stopped:
        log.emit({"type": "stopped", "step": result.steps})
        return EXIT_STOPPED

    log.emit({"type": "phase", "phase": "exporting"})
    adapter_dir = job_dir / ADAPTER_DIR
    result.model.save_pretrained(str(adapter_dir))
    adapter = str(adapter_dir)
    metrics = result.metrics()
    if spec.adapter_out is not None:
        from neurons.finetune.export import export_peft_model

        assert spec.base_gguf is not None  # __post_init__
        info = export_peft_model(
            result.model, Path(spec.adapter_out), base_gguf=Path(spec.base_gguf)
        )
        adapter = str(info.path)
        metrics.update(adapter_digest=info.digest, adapter_size=info.size)
    log.emit({"type": "done", "adapter": adapter, "metrics": metrics})
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m neurons.finetune.worker JOB_DIR", file=sys.stderr)  # noqa: T201
        return 2
    parent = os.getppid()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the signal was armed
        stop.set()
    # Everything the worker loads is local; never wait on a hub it cannot reach.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # stderr is the job's worker.log, whose tail explains a failure: no progress bars there
    # (transformers' GGUF conversion draws one with tqdm directly)
    os.environ.setdefault("TQDM_DISABLE", "1")

    job_dir = Path(args[0])
    log = _EventLog(job_dir / EVENTS)
    try:
        spec = WorkerSpec.from_json((job_dir / SPEC).read_text(encoding="utf-8"))
        threads = spec.torch_threads
        if threads is None:
            from neurons.config import Settings

            threads = Settings().torch_threads
        use_torch_threads("fine-tuning", threads)
        return _run(job_dir, spec, log, stop)
    except Exception as exc:
        traceback.print_exc()
        message = str(exc) if isinstance(exc, NeuronsError) else f"{type(exc).__name__}: {exc}"
        log.emit({"type": "error", "message": message})
        return EXIT_ERROR
    finally:
        log.close()


if __name__ == "__main__":
    sys.exit(main())
