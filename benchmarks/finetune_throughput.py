"""Training throughput of a fine-tuning job against a bare PEFT loop: same model, data, steps.

What a job adds per optimizer step, beyond the training itself, is its bookkeeping: one
``.item()`` on the loss, a ``step`` event (a dict, serialised to JSON and appended to
``events.jsonl`` by the worker's own writer, a flushed line each), an ``epoch`` event at each
epoch's end, and the checkpoint (adapter, AdamW state, scheduler, RNG; ``torch.save`` + fsync
+ atomic rename) written every ``checkpoint_steps`` steps and at each epoch's end. This
benchmark measures that cost as training tokens/s, both sides in one run (and by default in
one process). Target (issue 7): the job within 5% of the bare loop.

**Model and data.** SmolLM2-135M (the GGUF the ``smollm2:135m`` neuron serves), loaded with
:func:`neurons.finetune.base.load_base` (converted once, cached under ``--cache-dir``), and
the packaged ``beep_boop.jsonl`` (48 chat examples, ~51 tokens each) read through
:func:`neurons.finetune.data.validate_file`. Hyperparameters: the default preset
(``balanced``: batch 4, AdamW at 1e-5, linear schedule, LoRA r=8 on every projection,
10% held out, ``checkpoint_steps`` 20), on the CPU, with ``max_steps`` = ``--steps`` (and
enough epochs for it). The default, 33 steps, is exactly a default job on this file: 43
training examples, 3 epochs of 11 steps, checkpoints after steps 11, 20, 22 and 33.

**Job** (default): :func:`neurons.finetune.trainer.train_lora`, in this process, with
``emit`` = the worker's event writer on a real ``events.jsonl`` and the job's own
checkpointing at its default schedule: everything the worker does per step. Its tokens/s is
what the job itself reports (``train_tokens / train_seconds``, the ``done`` event's
``tokens_per_second``); ``train_seconds`` covers the step loop, checkpoints included, and
leaves out the evaluation before and after. With ``--worker`` the job is the real subprocess
(``python -m neurons.finetune.worker JOB_DIR``, base GGUF from the same cache) and its
tokens/s comes from the ``done`` event: the most literal "job", but a fresh process each time,
so its first steps run cold while the bare side is warm; the in-process default isolates
what the job adds per step, which is what the target is about.

**Bare**: a minimal PEFT loop written here: the same ``LoraConfig`` from the same
hyperparameters, ``torch.manual_seed(seed)`` before wrapping (the LoRA A draw), AdamW and the
same scheduler, and per step: pad the batch, forward, loss, ``backward``, gradient clipping
(part of the trainer's algorithm, not of its bookkeeping), ``optimizer.step``,
``scheduler.step``, ``zero_grad``. No events, no checkpoints, no per-step ``.item()``. It
trains on the trainer's own encoding (:func:`~neurons.finetune.labels.encode_examples` and
:func:`~neurons.finetune.trainer.split_indices`), in the trainer's epoch order, with the same
padding and the same loss (summed cross entropy over the trained tokens / their number), and
its clock covers the same span (first step to last). The run checks that both sides did the
same work: the tokens of every step must be equal, and the per-step losses are compared (with
the same seed they are identical on the CPU).

**Procedure.** One warm-up run of each side (``--warmup-steps``, untimed), then
``--repeats`` rounds alternating the order (bare, job; job, bare; ...) so that drift in the
machine's state hits both alike. Tokens are counted as the trainer counts them: the tokens a
step runs through the model, prompt and trained ones, padding excluded. Reported: each run,
the median tokens/s of each side, and overhead = (bare - job) / bare of the medians. A fresh
base model is loaded for each run (PEFT wraps it in place), untimed.

    .venv/bin/python benchmarks/finetune_throughput.py [--steps 33] [--repeats 3]
        [--batch-size 4] [--max-seq-length 512] [--warmup-steps 3] [--threads N]
        [--cache-dir DIR] [--worker]

Measured on a 2-core CPU container (torch 2.13 CPU, transformers 5.23, PEFT 0.21, 2 torch
threads, no other process running; about 4.5 min), defaults: bare 178.1 tokens/s median
(169.9..178.8), job 180.7 (171.3..183.7), ~1.1 s a step, 4 checkpoints of 30 MB per job run;
**overhead -1.5%: the 5% target is met**. Two earlier clean runs gave 0.0% (bare 195.4, job
195.3) and -1.3% (193.0, 195.5); ``--worker`` gave 4.7% (bare 182.0, job 173.4), its first
round's job the slowest run. The machine's speed drifts by a few percent between runs, more
than the job's overhead: timing every step of both sides (3 runs each) showed a checkpoint
adding ~0.1 s to its step, i.e. ~0.4 s (~1%) over a 33-step run, and nothing measurable on
the other steps. The per-step losses of the two sides were identical.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_scheduler
from transformers.utils import logging as transformers_logging

from neurons.finetune.base import load_base
from neurons.finetune.data import validate_file
from neurons.finetune.examples import Example
from neurons.finetune.labels import IGNORE, encode_examples
from neurons.finetune.presets import Hyperparameters
from neurons.finetune.trainer import collate, epoch_order, split_indices, train_lora
from neurons.finetune.worker import EVENTS, SPEC, THREADS_ENV, WorkerSpec, read_events

# The worker's own event writer (private: the benchmark writes events exactly as a job does)
from neurons.finetune.worker import _EventLog as EventLog
from neurons.neuron.defaults import _smollm2_path
from neurons.ollama.names import file_digest

DATA = Path(__file__).resolve().parents[1] / "src/neurons/finetune/datasets/beep_boop.jsonl"
TARGET = 0.05  # issue 7: the job's tokens/s within 5% of a bare loop's
MAX_GRAD_NORM = 1.0  # the trainer's clip


@dataclass
class Run:
    """One timed run of one side: tokens and seconds of its step loop, and per step the
    tokens and the loss (to check that both sides did the same work)."""

    side: str
    tokens: int
    seconds: float
    step_tokens: list[int]
    losses: list[float]
    checkpoints: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


@dataclass(frozen=True)
class Base:
    """Where the base model comes from; :meth:`load` gives a fresh copy (untimed)."""

    gguf: Path
    cache_dir: Path
    digest: str

    def load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        gc.collect()  # the previous run's model goes before the next one loads
        return load_base(self.gguf, self.cache_dir, digest=self.digest)


def hyperparameters(steps: int, batch_size: int, max_seq_length: int) -> Hyperparameters:
    """The default preset, on the CPU, ending after ``steps`` optimizer steps (``epochs`` is
    only a bound: the run touches as many as the steps need)."""
    return Hyperparameters.from_dict(
        {
            "batch_size": batch_size,
            "max_seq_length": max_seq_length,
            "max_steps": steps,
            "epochs": min(1000, max(Hyperparameters.from_dict({}).epochs, steps)),
            "device": "cpu",
        }
    )


# -- the job ----------------------------------------------------------------------------------


def run_job(base: Base, examples: Sequence[Example], hp: Hyperparameters, workdir: Path) -> Run:
    """:func:`train_lora` as the worker calls it: real event file, default checkpoints."""
    model, tokenizer = base.load()
    workdir.mkdir(parents=True)
    log = EventLog(workdir / EVENTS)
    try:
        result = train_lora(
            model, tokenizer, examples, hp, workdir, emit=log.emit, should_stop=lambda: False
        )
    finally:
        log.close()
    tokens, seconds = result.train_tokens, result.train_seconds
    del model, result  # the PEFT model goes before the next run loads a fresh base
    return _job_run(workdir, tokens, seconds)


def run_worker(base: Base, examples: Sequence[Example], hp: Hyperparameters, workdir: Path) -> Run:
    """The real worker subprocess on a job directory; the numbers of its ``done`` event."""
    workdir.mkdir(parents=True)
    data = workdir / "examples.jsonl"
    data.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in examples), encoding="utf-8")
    spec = WorkerSpec(
        examples=str(data),
        hyperparameters=hp.to_dict(),
        base_gguf=str(base.gguf),
        base_digest=base.digest,
        cache_dir=str(base.cache_dir),
    )
    (workdir / SPEC).write_text(spec.to_json(), encoding="utf-8")
    env = {**os.environ, THREADS_ENV: str(torch.get_num_threads())}
    with (workdir / "worker.log").open("wb") as stderr:
        command = [sys.executable, "-m", "neurons.finetune.worker", str(workdir)]
        code = subprocess.run(command, env=env, stderr=stderr, check=False).returncode
    done = [e for e in read_events(workdir / EVENTS) if e["type"] == "done"]
    if code != 0 or not done:
        log = (workdir / "worker.log").read_text(encoding="utf-8", errors="replace")
        raise SystemExit(f"the worker exited {code}:\n{log[-3000:]}")
    metrics: dict[str, Any] = done[0]["metrics"]
    return _job_run(workdir, int(metrics["train_tokens"]), float(metrics["train_seconds"]))


def _job_run(workdir: Path, tokens: int, seconds: float) -> Run:
    events = read_events(workdir / EVENTS)
    steps = [e for e in events if e["type"] == "step"]
    return Run(
        "job",
        tokens,
        seconds,
        [int(e["tokens"]) for e in steps],
        [float(e["loss"]) for e in steps],
        checkpoints=sum(1 for e in events if e["type"] == "checkpoint"),
    )


# -- the bare loop ------------------------------------------------------------------------------


def run_bare(base: Base, examples: Sequence[Example], hp: Hyperparameters) -> Run:
    """A minimal PEFT training loop over the same batches: no events, no checkpoints."""
    model, tokenizer = base.load()
    encoded, _ = encode_examples(tokenizer, examples, hp.max_seq_length)
    train_idx, _ = split_indices(len(encoded), hp.eval_fraction, hp.seed)
    train = [encoded[i] for i in train_idx]
    pad = tokenizer.pad_token_id
    if not isinstance(pad, int):
        pad = tokenizer.eos_token_id if isinstance(tokenizer.eos_token_id, int) else 0

    torch.manual_seed(hp.seed)
    config = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,  # type: ignore[arg-type]  # typed int; floats work
        lora_dropout=hp.lora_dropout,
        target_modules=list(hp.target_modules),
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # as the trainer: PEFT reads a deprecated attribute
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)
        peft_model = get_peft_model(model, config)
    assert isinstance(peft_model, PeftModel)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    steps = hp.max_steps or 1
    scheduler = get_scheduler(
        "constant_with_warmup" if hp.lr_scheduler == "constant" else hp.lr_scheduler,
        optimizer,
        num_warmup_steps=hp.warmup_steps,
        num_training_steps=steps,
    )
    per_step = hp.batch_size * hp.gradient_accumulation_steps
    per_epoch = math.ceil(len(train) / per_step)
    step_tokens: list[int] = []
    losses: list[list[torch.Tensor]] = []  # each step's micro-batch losses, read at the end
    order: list[int] = []

    started = time.perf_counter()
    for step in range(steps):
        epoch, position = divmod(step, per_epoch)
        if position == 0:
            order = epoch_order(len(train), hp.seed, epoch)
        batch = [train[i] for i in order[position * per_step : (position + 1) * per_step]]
        trained = sum(e.trainable for e in batch)
        step_tokens.append(sum(len(e.input_ids) for e in batch))
        losses.append([])
        for i in range(0, len(batch), hp.batch_size):
            ids, mask, labels = collate(batch[i : i + hp.batch_size], pad)
            logits = peft_model(input_ids=ids, attention_mask=mask).logits
            shifted = F.pad(labels[:, 1:], (0, 1), value=IGNORE)
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), shifted.reshape(-1), reduction="sum"
            )
            loss = loss / trained
            del logits  # ~50 MB; gone before the next forward, as in the trainer's step
            loss.backward()  # type: ignore[no-untyped-call]
            losses[-1].append(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - started

    step_losses = [float(sum(t.item() for t in step)) for step in losses]
    del model, peft_model
    return Run("bare", sum(step_tokens), seconds, step_tokens, step_losses)


# -- the comparison -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=33, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed first run, a side")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "neurons-finetune-throughput",
        help="where the converted base model is kept between runs",
    )
    parser.add_argument("--worker", action="store_true", help="run the job as the worker process")
    args = parser.parse_args()

    os.environ.setdefault("TQDM_DISABLE", "1")
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if args.threads:
        torch.set_num_threads(args.threads)
    gguf = _smollm2_path(Path())
    base = Base(gguf, args.cache_dir, file_digest(gguf))
    examples = validate_file(DATA, "jsonl").examples
    hp = hyperparameters(args.steps, args.batch_size, args.max_seq_length)
    warm = hyperparameters(args.warmup_steps, args.batch_size, args.max_seq_length)
    job = run_worker if args.worker else run_job
    print(
        f"SmolLM2-135M, {len(examples)} examples of {DATA.name}; batch {hp.batch_size}, "
        f"{hp.max_steps} steps, checkpoint_steps "
        f"{hp.checkpoint_steps}; {torch.get_num_threads()} torch threads; "
        f"job: {'worker subprocess' if args.worker else 'train_lora in process'}; "
        f"load {os.getloadavg()[0]:.2f}"
    )

    with tempfile.TemporaryDirectory(prefix="finetune-throughput-") as tmp:
        root = Path(tmp)
        run_bare(base, examples, warm)
        job(base, examples, warm, root / "warmup")
        runs: list[Run] = []
        for r in range(args.repeats):
            for side in ("bare", "job") if r % 2 == 0 else ("job", "bare"):
                if side == "bare":
                    runs.append(run_bare(base, examples, hp))
                else:
                    runs.append(job(base, examples, hp, root / f"job{r}"))
                run = runs[-1]
                print(
                    f"  round {r + 1} {run.side:<4}  {run.tokens_per_second:7.1f} tokens/s  "
                    f"({run.tokens} tokens in {run.seconds:.2f} s)",
                    flush=True,
                )
    report(runs)


def report(runs: list[Run]) -> None:
    bare = [r for r in runs if r.side == "bare"]
    job = [r for r in runs if r.side == "job"]
    loss_gap = 0.0
    for b, j in zip(bare, job, strict=True):
        if b.step_tokens != j.step_tokens:
            raise SystemExit("the two sides ran different tokens: the comparison is void")
        loss_gap = max([loss_gap] + [abs(x - y) for x, y in zip(b.losses, j.losses, strict=True)])

    steps = len(bare[0].step_tokens)
    print()
    print(f"{'':6}{'tokens/s (median)':>19}{'min':>9}{'max':>9}{'ms/step':>10}{'checkpoints':>13}")
    medians: dict[str, float] = {}
    for name, side in (("bare", bare), ("job", job)):
        rates = [r.tokens_per_second for r in side]
        medians[name] = statistics.median(rates)
        ms = statistics.median(r.seconds for r in side) / steps * 1000
        print(
            f"{name:<6}{medians[name]:>19.1f}{min(rates):>9.1f}{max(rates):>9.1f}{ms:>10.1f}"
            f"{side[0].checkpoints:>13}"
        )
    overhead = (medians["bare"] - medians["job"]) / medians["bare"]
    print(
        f"\n{len(bare)} runs a side of {steps} steps, {bare[0].tokens} tokens each (identical "
        f"per step on both sides; losses agree to {loss_gap:.1e}); load {os.getloadavg()[0]:.2f}"
    )
    verdict = "met" if overhead <= TARGET else "MISSED"
    print(f"overhead {overhead * 100:.1f}% (target ≤ {TARGET * 100:.0f}%): {verdict}")


if __name__ == "__main__":
    main()
