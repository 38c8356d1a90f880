"""How many CPU threads torch gets: ``NEURONS_TORCH_THREADS`` (``Settings.torch_threads``),
applied by each use of torch in the service, in the thread that does the work.

Unset, each use takes its measured default (:data:`MEASURED_DEFAULTS`), from
``benchmarks/torch_threads.py`` on the 2-core machine this project is measured on (median
per call; busy: other jobs sharing the cores, idle: load 0.6)::

    use                   busy 1    busy 2     idle 1    idle 2
    learning mlp step     0.86 ms   162 ms     0.86 ms   0.81 ms
    learning transformer  158 ms    1093 ms    85 ms     66 ms
    LoRA step (135M)      10.2 s    36.1 s     3.97 s    31.1 s
    embed 32 texts        109 ms    1520 ms    94 ms     59 ms

On busy cores a second OpenMP thread spins and waits for its slice, and the tiny models lose
everything to that wait; idle, it helps the transformer and the embedder a little. Training
keeps 1 (a small loss idle, a large win busy); inference 1 per pass, passes side by side
(see the constant).

Why per thread: with torch's OpenMP backend ``torch.set_num_threads`` sets the calling
thread's team size (and the default for threads started afterwards), not every thread's. So
:func:`use_torch_threads` is called where the work runs: the learning run's training calls
(through a context variable, as :data:`~neurons.learning.training.abandoning` travels), the
fine-tuning worker process, the inference batcher's forward thread.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Literal

__all__ = ["MEASURED_DEFAULTS", "USES", "Use", "resolve_threads", "use_torch_threads"]

Use = Literal["learning", "fine-tuning", "inference"]
USES: tuple[Use, ...] = ("learning", "fine-tuning", "inference")
# Inference takes 1 per forward pass, and runs one pass per core (InferenceConfig.workers):
# served under 16 clients, two single-threaded passes gave 0.84-0.89x raw where one pass on
# two threads gave 0.72-0.79x (alone, two threads embed 32 texts in 59 ms against 94).
# Training keeps 1: its loss on an idle machine is small (transformer step 85 vs 66 ms) and
# its win on a busy one is large (1093 vs 158).
MEASURED_DEFAULTS: dict[Use, int] = {"learning": 1, "fine-tuning": 1, "inference": 1}

# The count a learning run's training calls apply (set by the run, read by train_local).
learning_threads: ContextVar[int | None] = ContextVar("learning_threads", default=None)


def resolve_threads(use: Use, setting: int | None) -> int:
    """The setting when given, else the use's measured default."""
    if setting is not None:
        if setting < 1:
            raise ValueError(f"torch threads must be at least 1, got {setting}")
        return setting
    return MEASURED_DEFAULTS[use]


def use_torch_threads(use: Use, setting: int | None) -> int:
    """Give torch, in this thread, the threads for ``use``; the count now in effect."""
    import torch

    wanted = resolve_threads(use, setting)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return int(torch.get_num_threads())
