"""LLM teaching as a job: a learning run of mode ``teach`` (:mod:`neurons.learning.llm_teach`
says what teaching is).

A teaching job is a row of ``learning_runs``, whose columns fit it as they are: ``config``
holds the validated :class:`TeachConfig` (nodes resolved when it was created), ``mode`` is
``teach``, ``dataset`` ``prompts``, the rounds are the four phases below, and ``result`` holds
what each phase produced, which is also how a resumed job skips the phases already done. Its
lease and status moves are the learning runs' runtime (:class:`~neurons.learning.jobs.
LearningKind` hands ``teach`` rows to :func:`execute_teaching`). The phases:

1. ``answering``: the teacher's greedy answers to the training prompts and the held-out ones;
2. ``before``: the student's agreement with the teacher on the held-out prompts;
3. ``fine-tuning``: a fine-tuning job (its id kept in the result) trains the student on the
   answers and deploys ``tuned`` to the student's node only. A resumed teaching job waits
   for the same job, starting it again if it was left failed or cancelled (it resumes from
   its checkpoint); cancelling the teaching job cancels it;
4. ``after``: the tuned model's agreement on the held-out prompts. The final result is the
   report: agreement before and after (token F1 and opening), and the gain.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from neurons.errors import (
    InvalidRequestError,
    JobStateError,
    ModelNotFoundError,
    NeuronsError,
    NodeNotFoundError,
)
from neurons.jobs import JobStopped, StopReason, StopSignal
from neurons.ollama.names import ModelName

if TYPE_CHECKING:
    from neurons.finetune.service import FineTuningService
    from neurons.network.health import HealthMonitor

__all__ = ["PHASES", "TEACH_MODE", "TeachConfig", "execute_teaching", "resolve_nodes"]

TEACH_MODE = "teach"
PHASES: tuple[str, ...] = ("answering", "before", "fine-tuning", "after")
POLL_S = 0.5
# The fine-tuning job's ends; any other status means it still has to run.
_ENDED = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class TeachConfig:
    """One teaching job as asked for. Empty ``prompts`` means the 48 packaged training
    prompts with :data:`~neurons.learning.llm_teach.HELD_OUT_PROMPTS` held out; given
    ``prompts`` without ``held_out`` give up every fifth (at least one) to be held out.
    Empty nodes are chosen when the job is created (:func:`resolve_nodes`); empty ``tuned``
    is ``<student>-from-<teacher>``."""

    teacher: str
    student: str
    teacher_node: str = ""
    student_node: str = ""
    tuned: str = ""
    prompts: tuple[str, ...] = ()
    held_out: tuple[str, ...] = ()
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    num_predict: int = 32
    seed: int = 1

    def __post_init__(self) -> None:
        teacher = ModelName.parse(self.teacher)  # InvalidModelNameError names the bad name
        student = ModelName.parse(self.student)
        if teacher == student:
            raise InvalidRequestError(
                f"teacher and student are the same model ({teacher.display}): a model has "
                "nothing to learn from its own answers; name two different models"
            )
        tuned = ModelName.parse(self.tuned or _tuned_name(teacher, student))
        if tuned in (teacher, student):
            raise InvalidRequestError("tuned must differ from both the teacher and the student")
        object.__setattr__(self, "tuned", tuned.display)
        object.__setattr__(self, "teacher", teacher.display)
        object.__setattr__(self, "student", student.display)
        for name in ("prompts", "held_out"):
            object.__setattr__(self, name, _prompt_list(name, getattr(self, name)))
        train, held_out = self.split()
        if not train or not held_out:
            raise InvalidRequestError("prompts: give at least 2 (some are held out to measure)")
        overlap = sorted(set(train) & set(held_out))
        if overlap:
            raise InvalidRequestError(f"held_out prompts are also training prompts: {overlap}")
        if not 1 <= self.num_predict <= 1024:
            raise InvalidRequestError("num_predict must be 1-1024")
        if not isinstance(self.hyperparameters, Mapping):
            raise InvalidRequestError("hyperparameters must be an object")
        from neurons.finetune.presets import Hyperparameters

        Hyperparameters.from_dict(dict(self.hyperparameters))  # names the bad one (400)

    def split(self) -> tuple[list[str], list[str]]:
        """The training prompts and the held-out ones."""
        from neurons.learning.llm_teach import HELD_OUT_PROMPTS, training_prompts

        if not self.prompts:
            return training_prompts(), list(self.held_out or HELD_OUT_PROMPTS)
        if self.held_out:
            return list(self.prompts), list(self.held_out)
        held = list(self.prompts[4::5]) or list(self.prompts[-1:])
        return [p for p in self.prompts if p not in held], held

    def to_dict(self) -> dict[str, Any]:
        """The stored config: the fields, plus what a ``learning_runs`` row needs."""
        data = asdict(self)
        data.update(prompts=list(self.prompts), held_out=list(self.held_out))
        return {**data, "mode": TEACH_MODE, "dataset": "prompts", "rounds": len(PHASES)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TeachConfig:
        from neurons.learning.choices import checked_fields

        fields_ = {k: v for k, v in data.items() if k not in ("mode", "dataset", "rounds")}
        checked = checked_fields(cls, fields_, "teaching")
        for name in ("teacher", "student"):
            if not isinstance(checked.get(name), str) or not checked[name].strip():
                raise InvalidRequestError(f"{name} is required: a model name")
        return cls(**checked)


def _tuned_name(teacher: ModelName, student: ModelName) -> str:
    return f"{_stem(student)}-from-{_stem(teacher)}:latest"


def _stem(name: ModelName) -> str:
    """The repository part of a name and its tag, as one name-safe word."""
    model = name.display.rsplit("/", 1)[-1]
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in model).strip("-.")


def _prompt_list(name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidRequestError(f"{name} must be a list of strings")
    kept = tuple(v.strip() for v in value if v.strip())
    if len(set(kept)) != len(kept):
        raise InvalidRequestError(f"{name} repeat a prompt")
    return kept


async def resolve_nodes(monitor: HealthMonitor, config: TeachConfig) -> TeachConfig:
    """``config`` with both nodes named: a named node must exist and hold its model; an
    unnamed one is the first healthy node holding it (the student's preferring a node other
    than the teacher's). :class:`ModelNotFoundError` names a model that no node holds."""
    if not monitor.views:
        await monitor.check_all()

    def pick(model: str, node: str, role: str, avoid: str = "") -> str:
        if node:
            view = monitor.find(node)
            if view is None:
                raise NodeNotFoundError(f"no node named '{node}' (for the {role})")
            if not view.has(model):
                raise ModelNotFoundError(f"{role} model {model} is not on node {node}")
            return view.name
        holders = [v.name for v in monitor.eligible(model)]
        if not holders:
            raise ModelNotFoundError(f"no healthy node holds the {role} model {model}")
        return next((h for h in holders if h != avoid), holders[0])

    teacher_node = pick(config.teacher, config.teacher_node, "teacher")
    student_node = pick(config.student, config.student_node, "student", avoid=teacher_node)
    data = {**asdict(config), "teacher_node": teacher_node, "student_node": student_node}
    return TeachConfig(**data)


# (phases done, the result so far) -> whether the job is still this runner's
Progress = Callable[[int, dict[str, Any]], Awaitable[bool]]


async def execute_teaching(
    config: TeachConfig,
    done: Mapping[str, Any],
    fine_tuning: FineTuningService,
    stop: StopSignal,
    progress: Progress,
) -> dict[str, Any]:
    """Run the phases not in ``done`` (a resumed job's stored result); each phase's outcome
    goes to ``progress`` before the next starts. The final report."""
    from neurons.client import NodeClient
    from neurons.learning.llm_teach import agreement, answers

    state = dict(done)
    train, held_out = config.split()
    http = fine_tuning.network.http
    if not fine_tuning.network.monitor.views:  # a process that has not probed yet (a shell)
        await fine_tuning.network.monitor.check_all()

    def node(name: str) -> NodeClient:
        view = fine_tuning.network.monitor.find(name)
        if view is None:
            raise NodeNotFoundError(f"no node named '{name}'")
        return NodeClient(view.url, name=view.name, client=http)

    async def ask(where: str, model: str, prompts: Sequence[str]) -> list[str]:
        replies = []
        for prompt in prompts:  # one at a time, so a cancel lands between two answers
            if stop.is_set():
                raise JobStopped(stop.reason)
            opts = {"seed": config.seed, "num_predict": config.num_predict}
            replies += await answers(node(where), model, [prompt], **opts)
        return replies

    async def advance(phase: str, **values: Any) -> None:
        state.update(values, phase=phase)
        if not await progress(PHASES.index(phase) + 1, state):
            raise JobStopped(stop.reason)

    if "teacher_answers" not in state:
        taught = await ask(config.teacher_node, config.teacher, train)
        reference = await ask(config.teacher_node, config.teacher, held_out)
        await advance("answering", taught=taught, teacher_answers=reference)
    reference = list(state["teacher_answers"])
    if "before" not in state:
        base = await ask(config.student_node, config.student, held_out)
        await advance("before", before=agreement(base, reference).to_dict())
    if "after" not in state:
        if "fine_tuning_job" not in state:
            job_id = await _create_job(config, fine_tuning, train, list(state["taught"]))
            await advance("before", fine_tuning_job=job_id)  # kept before it runs: resumable
        await _fine_tune(fine_tuning, str(state["fine_tuning_job"]), stop)
        await advance("fine-tuning")
        tuned = await ask(config.student_node, config.tuned, held_out)
        after = agreement(tuned, reference)
        before = state["before"]
        state.update(after=after.to_dict(), gain=after.f1 - float(before["f1"]))
    return _report(config, state, len(train), len(held_out))


async def _create_job(
    config: TeachConfig, fine_tuning: FineTuningService, train: list[str], taught: list[str]
) -> str:
    from neurons.learning.llm_teach import chat_jsonl

    text = chat_jsonl(zip(train, taught, strict=True))
    if not text:
        raise NeuronsError(f"{config.teacher} gave no answers to learn from")
    teacher, tuned = ModelName.parse(config.teacher), ModelName.parse(config.tuned)
    relative = f"teach/{_stem(teacher)}-to-{_stem(tuned)}.jsonl"
    path = fine_tuning.data_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(path.write_text, text, encoding="utf-8")
    created = await fine_tuning.create(
        base_model=config.student,
        target_model_name=config.tuned,
        training_data_path=relative,
        data_type="conversation",
        hyperparameters=dict(config.hyperparameters) or None,
        target_capabilities=["text_generation", "instruction_following"],
        nodes=[config.student_node],
    )
    return created.job_id


async def _fine_tune(
    fine_tuning: FineTuningService, job_id: str, stop: StopSignal
) -> dict[str, Any]:
    """Run (or wait for) the fine-tuning job to its end; its metrics. A cancel of the teaching
    job cancels it; a shutdown leaves it to the fine-tuning supervisor (it resumes on its
    own, and the resumed teaching job waits for it again)."""
    record = await asyncio.to_thread(fine_tuning.store.fine_tuning.get, job_id)
    if record.status in ("pending", "failed", "cancelled"):
        await fine_tuning.start(job_id)
    while True:
        record = await asyncio.to_thread(fine_tuning.store.fine_tuning.get, job_id)
        if record.status in _ENDED:
            break
        if stop.is_set():
            if stop.reason == StopReason.CANCEL:
                with contextlib.suppress(JobStateError):
                    await fine_tuning.cancel(job_id)
            raise JobStopped(stop.reason)
        await asyncio.sleep(POLL_S)
    if record.status != "completed":
        raise NeuronsError(f"fine-tuning job {job_id} ended {record.status}: {record.error}")
    return dict(record.metrics)


def _report(config: TeachConfig, state: Mapping[str, Any], train: int, held: int) -> dict[str, Any]:
    return {
        "phase": "done",
        "teacher": config.teacher,
        "teacher_node": config.teacher_node,
        "student": config.student,
        "student_node": config.student_node,
        "tuned": config.tuned,
        "fine_tuning_job": state.get("fine_tuning_job"),
        "train_count": train,
        "held_out_count": held,
        "teacher_answers": list(state["teacher_answers"]),
        "before": state["before"],
        "after": state["after"],
        "gain": state["gain"],
        "taught": list(state.get("taught", [])),
    }
