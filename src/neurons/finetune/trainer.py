"""The LoRA training core: split, train with PEFT, evaluate, checkpoint, resume.

It does not care where the model came from (a GGUF loaded into transformers, or a model
already in transformers format): :func:`train_lora` takes a causal LM and its tokenizer.

**Labels** come from :mod:`neurons.finetune.labels` (re-exported here): chat examples train
on the assistant turns and their end-of-turn marker, text examples on every token; examples
are cut to ``max_seq_length``, and one left with no token to train on is dropped and counted.

**Split.** ``eval_fraction`` of the examples are held out by a seeded shuffle (at least one
when there are two or more); the evaluation loss on them is the token-weighted mean, taken
before training and after.

**Device.** A CUDA GPU when ``hp.device`` allows and torch sees one (bf16 autocast over the
fp32 weights), else the CPU in fp32. AdamW over the LoRA weights, gradients clipped to norm
1.0 as HF ``Trainer`` does; a step's loss is the mean over its trained tokens, however they
split into accumulated micro-batches.

**Events.** Progress goes out through ``emit`` as plain JSON-able dicts, each with ``type``::

    {"type": "data", "n_train": 90, "n_eval": 10, "dropped": 0, "total_steps": 69}
    {"type": "log", "message": "Training on the CPU (2 threads)"}
    {"type": "resumed", "step": 20}                      (a checkpoint was loaded)
    {"type": "phase", "phase": "training"}
    {"type": "eval", "when": "before", "eval_loss": 2.31}
    {"type": "step", "step": 1, "total_steps": 69, "epoch": 1, "epochs": 3, "loss": 2.4,
     "lr": 2e-05, "tokens": 812, "elapsed_s": 1.3}
    {"type": "epoch", "epoch": 1, "epochs": 3, "loss": 2.1}
    {"type": "checkpoint", "step": 20}
    {"type": "phase", "phase": "evaluating"}
    {"type": "eval", "when": "after", "eval_loss": 1.2}

``step`` is 1-based and counts optimizer steps over all epochs; ``tokens`` are the tokens the
step ran through the model (prompt and trained ones, padding excluded); ``elapsed_s`` is the
training time so far, resumed runs included. ``epochs`` is the number of epochs the run will
touch (fewer than asked when ``max_steps`` ends it early). Without held-out examples there are
no ``eval`` events. ``log`` events are lines for the job's log (the device; an unreadable
checkpoint that was discarded).

**Checkpoints** (``workdir/checkpoint``, one file, replaced atomically) hold the adapter
weights, the optimizer and scheduler state, the step and the RNG state. They are written every
``checkpoint_steps`` optimizer steps, at the end of each epoch, and when ``should_stop()``
turns true (it is asked between steps). With the same hyperparameters and data a new call
continues from the checkpoint: each epoch's order derives from ``seed`` and the epoch number,
so a resumed run sees the same batches, and on the CPU it ends with the same weights as an
uninterrupted one.

**Per-step cost.** The loop adds nothing per step beyond the one ``.item()`` on the loss it
reports: batches are padded from lists tokenised up front, events are small dicts, and the
checkpoint (with its fsync) is written only at the points above.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import time
import warnings
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_scheduler

from neurons.errors import InvalidRequestError
from neurons.finetune.examples import Example
from neurons.finetune.labels import IGNORE, Encoded, encode_example, encode_examples
from neurons.finetune.presets import Hyperparameters

__all__ = [
    "CHECKPOINT",
    "IGNORE",
    "Encoded",
    "TrainResult",
    "collate",
    "encode_example",
    "encode_examples",
    "epoch_order",
    "resolve_device",
    "split_indices",
    "train_lora",
]

MAX_GRAD_NORM = 1.0  # HF Trainer's default clip; keeps a too-high learning rate from exploding
CHECKPOINT = "checkpoint"
_CHECKPOINT_VERSION = 1
# Settings that do not change what is trained, so a checkpoint survives a change of them
_NOT_FINGERPRINTED = ("checkpoint_steps", "device", "preset")

Emit = Callable[[dict[str, Any]], None]


# -- split --------------------------------------------------------------------------------------


def split_indices(n: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, eval) indices of ``n`` examples: a seeded shuffle, ``eval_fraction`` held out
    (rounded, at least one when ``n >= 2`` and the fraction is positive, never all)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_eval = 0
    if eval_fraction > 0 and n >= 2:
        n_eval = min(n - 1, max(1, round(n * eval_fraction)))
    return sorted(order[n_eval:]), sorted(order[:n_eval])


# -- training -------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What :func:`train_lora` did. ``model`` is the PEFT model (on the CPU when training
    ends normally) for the caller to save or export; ``train_loss`` is the last epoch's mean.
    ``steps``, ``train_tokens`` and ``train_seconds`` include the runs before a resume."""

    stopped: bool
    steps: int
    total_steps: int
    epochs: int
    train_loss: float | None
    eval_loss_before: float | None
    eval_loss_after: float | None
    train_tokens: int
    train_seconds: float
    n_train: int
    n_eval: int
    dropped: int
    model: PeftModel

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds > 0 else 0.0

    def metrics(self) -> dict[str, Any]:
        """The JSON-able numbers (everything but the model)."""
        # not asdict(): it would deep-copy the model
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        data["tokens_per_second"] = self.tokens_per_second
        return data


@dataclass
class _State:
    """The loop's position, saved in checkpoints (plain numbers only)."""

    step: int = 0
    epochs_done: int = 0
    epoch_loss_sum: float = 0.0  # token-weighted: sum of loss * trained tokens
    epoch_tokens: int = 0
    last_epoch_loss: float | None = None
    eval_loss_before: float | None = None
    train_tokens: int = 0
    train_seconds: float = 0.0


@dataclass(frozen=True)
class _Plan:
    steps_per_epoch: int
    total_steps: int
    epochs: int
    examples_per_step: int

    @classmethod
    def of(cls, n_train: int, hp: Hyperparameters) -> _Plan:
        per_step = hp.batch_size * hp.gradient_accumulation_steps
        per_epoch = math.ceil(n_train / per_step)
        total = per_epoch * hp.epochs
        if hp.max_steps is not None:
            total = min(total, hp.max_steps)
        return cls(per_epoch, total, math.ceil(total / per_epoch), per_step)


def resolve_device(setting: str) -> torch.device:
    """``cuda`` when the setting allows it and torch sees a GPU, else the CPU."""
    if setting in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def train_lora(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    hp: Hyperparameters,
    workdir: Path,
    *,
    emit: Emit,
    should_stop: Callable[[], bool],
) -> TrainResult:
    """Train a LoRA adapter on ``model`` (which PEFT changes in place) and evaluate it.

    Resumes from ``workdir/checkpoint`` when there is one; returns ``stopped=True`` (after
    writing a checkpoint, without the final evaluation) when ``should_stop()`` turns true.
    :class:`~neurons.errors.InvalidRequestError` when no example has a token to train on,
    or when the checkpoint was written for other hyperparameters or data.
    """
    encoded, dropped = encode_examples(tokenizer, examples, hp.max_seq_length)
    if not encoded:
        raise InvalidRequestError(
            f"none of the {len(examples)} examples has a token to train on within "
            f"max_seq_length={hp.max_seq_length} (chat examples train on assistant turns)"
        )
    train_idx, eval_idx = split_indices(len(encoded), hp.eval_fraction, hp.seed)
    train = [encoded[i] for i in train_idx]
    held_out = [encoded[i] for i in eval_idx]
    plan = _Plan.of(len(train), hp)
    n_train, n_eval, total = len(train), len(held_out), plan.total_steps
    emit(dict(type="data", n_train=n_train, n_eval=n_eval, dropped=dropped, total_steps=total))

    device = resolve_device(hp.device)
    emit({"type": "log", "message": _device_line(device, hp.device)})
    torch.manual_seed(hp.seed)  # the LoRA A matrices are drawn at random
    peft_model = _wrap(model, hp).to(device)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    scheduler = get_scheduler(
        # transformers' "constant" ignores warmup; "constant_with_warmup" with 0 is the same
        "constant_with_warmup" if hp.lr_scheduler == "constant" else hp.lr_scheduler,
        optimizer,
        num_warmup_steps=hp.warmup_steps,
        num_training_steps=plan.total_steps,
    )
    loop = _Loop(peft_model, tokenizer, hp, plan, device, optimizer, scheduler, params)
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = workdir / CHECKPOINT
    fingerprint = _fingerprint(hp, train, held_out)
    state = _State()
    if checkpoint.exists():
        loaded = loop.load(checkpoint, fingerprint)
        if loaded is None:  # torn by a machine crash: the start is the last safe point
            checkpoint.unlink()
            emit({"type": "log", "message": "Unreadable checkpoint; training from the start"})
        else:
            state = loaded
            emit({"type": "resumed", "step": state.step})

    def result(stopped: bool, eval_after: float | None = None) -> TrainResult:
        return TrainResult(
            stopped=stopped,
            steps=state.step,
            total_steps=plan.total_steps,
            epochs=state.epochs_done,
            train_loss=state.last_epoch_loss,
            eval_loss_before=state.eval_loss_before,
            eval_loss_after=eval_after,
            train_tokens=state.train_tokens,
            train_seconds=state.train_seconds,
            n_train=n_train,
            n_eval=n_eval,
            dropped=dropped,
            model=peft_model,
        )

    emit({"type": "phase", "phase": "training"})
    if state.step == 0 and state.eval_loss_before is None and held_out:
        if should_stop():
            return result(stopped=True)  # nothing done yet: nothing to save
        state.eval_loss_before = loop.eval_loss(held_out)
        emit({"type": "eval", "when": "before", "eval_loss": state.eval_loss_before})

    saved_at = state.step if checkpoint.exists() else -1
    segment_start = time.perf_counter()
    seconds_before = state.train_seconds
    order: list[int] = []
    while state.step < plan.total_steps:
        if should_stop():
            if saved_at != state.step:
                loop.save(checkpoint, fingerprint, state)
                emit({"type": "checkpoint", "step": state.step})
            return result(stopped=True)
        epoch, position = divmod(state.step, plan.steps_per_epoch)
        if position == 0 or not order:
            order = epoch_order(len(train), hp.seed, epoch)
        start = position * plan.examples_per_step
        batch = [train[i] for i in order[start : start + plan.examples_per_step]]
        lr = float(optimizer.param_groups[0]["lr"])
        loss, tokens, trained = loop.step(batch)
        state.step += 1
        state.train_tokens += tokens
        state.train_seconds = seconds_before + (time.perf_counter() - segment_start)
        state.epoch_loss_sum += loss * trained
        state.epoch_tokens += trained
        emit(
            {
                "type": "step",
                "step": state.step,
                "total_steps": plan.total_steps,
                "epoch": epoch + 1,
                "epochs": plan.epochs,
                "loss": loss,
                "lr": lr,
                "tokens": tokens,
                "elapsed_s": round(state.train_seconds, 3),
            }
        )
        epoch_end = position + 1 == plan.steps_per_epoch or state.step == plan.total_steps
        if epoch_end:
            state.last_epoch_loss = state.epoch_loss_sum / max(state.epoch_tokens, 1)
            state.epochs_done = epoch + 1
            state.epoch_loss_sum, state.epoch_tokens = 0.0, 0
            loss_of_epoch = state.last_epoch_loss
            emit(dict(type="epoch", epoch=epoch + 1, epochs=plan.epochs, loss=loss_of_epoch))
        if epoch_end or state.step % hp.checkpoint_steps == 0:
            loop.save(checkpoint, fingerprint, state)
            saved_at = state.step
            emit({"type": "checkpoint", "step": state.step})
        # the checkpoint's own time counts: it is part of what a job costs per step
        state.train_seconds = seconds_before + (time.perf_counter() - segment_start)

    emit({"type": "phase", "phase": "evaluating"})
    eval_after = loop.eval_loss(held_out) if held_out else None
    if eval_after is not None:
        emit({"type": "eval", "when": "after", "eval_loss": eval_after})
    peft_model.to(torch.device("cpu"))
    return result(stopped=False, eval_after=eval_after)


def _device_line(device: torch.device, setting: str) -> str:
    if device.type == "cuda":
        return f"Training on the GPU ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    line = f"Training on the CPU ({threads} thread{'s' if threads != 1 else ''})"
    return line + ("; torch sees no CUDA GPU" if setting == "cuda" else "")


def _wrap(model: PreTrainedModel, hp: Hyperparameters) -> PeftModel:
    config = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,  # type: ignore[arg-type]  # PEFT types it int; floats work
        lora_dropout=hp.lora_dropout,
        target_modules=list(hp.target_modules),
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # PEFT 0.21 reads transformers 5's deprecated ``is_gradient_checkpointing``; nothing
        # for us to change, and pytest turns warnings into errors.
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)
        wrapped = get_peft_model(model, config)
    assert isinstance(wrapped, PeftModel)
    return wrapped


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The order of epoch ``epoch`` (0-based): a function of seed and epoch only, so a resumed
    run replays the same batches."""
    order = list(range(n))
    random.Random(f"{seed}/{epoch}").shuffle(order)
    return order


def collate(chunk: Sequence[Encoded], pad_id: int) -> tuple[torch.Tensor, ...]:
    """One micro-batch: right-padded ids, attention mask and labels (padding is IGNORE)."""
    width = max(len(e.input_ids) for e in chunk)
    ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
    labels = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    for row, e in enumerate(chunk):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return ids, mask, labels


def _fingerprint(hp: Hyperparameters, train: list[Encoded], held_out: list[Encoded]) -> str:
    settings = {k: v for k, v in hp.to_dict().items() if k not in _NOT_FINGERPRINTED}
    sha = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for part in (train, held_out):
        sha.update(b"|")
        for example in part:
            sha.update(array("q", example.input_ids).tobytes())
            sha.update(array("q", example.labels).tobytes())
    return sha.hexdigest()


def _loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross entropy. The labels shift left, not the logits: slicing the
    [batch, seq, vocab] logits would copy them (gigabytes with a 262k vocabulary)."""
    shifted = F.pad(labels[:, 1:], (0, 1), value=IGNORE)
    return F.cross_entropy(
        logits.view(-1, logits.size(-1)).float(),
        shifted.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )


class _Loop:
    """One optimizer step, evaluation, checkpoint save and load: what the loop in
    :func:`train_lora` calls, kept apart so the loop reads as the schedule it is."""

    def __init__(
        self,
        model: PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        hp: Hyperparameters,
        plan: _Plan,
        device: torch.device,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        params: list[torch.nn.Parameter],
    ) -> None:
        self.model = model
        self.hp = hp
        self.plan = plan
        self.device = device
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.params = params
        pad = tokenizer.pad_token_id
        if not isinstance(pad, int):
            pad = tokenizer.eos_token_id if isinstance(tokenizer.eos_token_id, int) else 0
        self.pad_id: int = pad  # attention masks it out; which id does not matter

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        # On a GPU, bf16 autocast over fp32 weights: the usual mixed precision. The CPU runs
        # plain fp32 (CPU autocast is slower on most machines and changes the numbers).
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batches(self, examples: Sequence[Encoded]) -> Iterator[tuple[torch.Tensor, ...]]:
        size = self.hp.batch_size
        for i in range(0, len(examples), size):
            ids, mask, labels = collate(examples[i : i + size], self.pad_id)
            yield ids.to(self.device), mask.to(self.device), labels.to(self.device)

    def step(self, examples: Sequence[Encoded]) -> tuple[float, int, int]:
        """One optimizer step over ``examples`` (up to batch × accumulation of them): the
        token-weighted mean loss, the tokens run, the tokens trained."""
        trained = sum(e.trainable for e in examples)
        tokens = sum(len(e.input_ids) for e in examples)
        total = torch.zeros((), device=self.device)
        for ids, mask, labels in self._batches(examples):
            with self._autocast():
                logits = self.model(input_ids=ids, attention_mask=mask).logits
            # Divided by the whole step's trained tokens, so accumulated micro-batches weigh
            # every token alike (as one big batch would), whatever their padding.
            loss = _loss_sum(logits, labels) / trained
            loss.backward()  # type: ignore[no-untyped-call]
            total += loss.detach()
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total.item(), tokens, trained  # the one host sync of the step

    @torch.no_grad()
    def eval_loss(self, examples: Sequence[Encoded]) -> float:
        """Token-weighted mean loss over ``examples``, dropout off."""
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for ids, mask, labels in self._batches(examples):
            with self._autocast():
                logits = self.model(input_ids=ids, attention_mask=mask).logits
            total += _loss_sum(logits, labels).double()
        self.model.train()
        return total.item() / sum(e.trainable for e in examples)

    def _trainable(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def save(self, path: Path, fingerprint: str, state: _State) -> None:
        """Write the checkpoint next to ``path`` and rename it over ``path``: a crash leaves
        the previous checkpoint or the new one, never half of one."""
        payload = {
            "version": _CHECKPOINT_VERSION,
            "fingerprint": fingerprint,
            "state": asdict(state),
            "epoch": state.step // self.plan.steps_per_epoch,
            "position": state.step % self.plan.steps_per_epoch,
            "adapter": {n: p.detach().cpu() for n, p in self._trainable().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
        }
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # makes the rename itself durable

    def load(self, path: Path, fingerprint: str) -> _State | None:
        """Restore the checkpoint; its state, or None when the file cannot be read."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a torn file fails anywhere in torch's unpickler, with any type
            return None
        if not isinstance(payload, dict):
            return None
        if payload.get("version") != _CHECKPOINT_VERSION or payload["fingerprint"] != fingerprint:
            raise InvalidRequestError(
                f"the checkpoint in {path.parent} was written for other hyperparameters or "
                "training data; delete it to train from the start"
            )
        trainable = self._trainable()
        saved: dict[str, torch.Tensor] = payload["adapter"]
        if set(saved) != set(trainable):
            raise InvalidRequestError(f"the checkpoint in {path.parent} is for another model")
        with torch.no_grad():
            for name, param in trainable.items():
                param.copy_(saved[name])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["rng_cpu"])
        if self.device.type == "cuda" and payload["rng_cuda"] is not None:
            torch.cuda.set_rng_state(payload["rng_cuda"])
        return _State(**payload["state"])


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every OS opens directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
