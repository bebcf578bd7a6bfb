"""The life of a self-training job in Optuna storage: create, advance, cancel, status.

A job is the study ``selftrain-<id>``. Its user attrs hold ``job`` (`SelfTrainingJob` JSON),
``state`` and ``priority``. Each step is one trial with the fixed params ``step`` (0: the
teacher, k: the k-th student) and ``attempt``, and the user attrs ``role`` (``teacher`` or
``student``) and ``step``. Steps run one after another: `advance` enqueues a step once the one
before it is COMPLETE, re-enqueues a step whose trials all failed (at most `MAX_ATTEMPTS`
trials per step; a trial whose worker died is also retried by Optuna's heartbeat callback),
and when the last student is done records the result: the best student by validation
accuracy (ties: lower validation loss, then the later student) with its checkpoint.

States: ``open`` -> ``done``; ``failed`` (a step failed `MAX_ATTEMPTS` times) and
``cancelled`` are the other ends. `advance` and `cancel` hold the job's lock (the per-search
lock of `search.locks` under the job's name), so any worker and the service may call them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState

from search.final_pick import VAL_LOSS_ATTR
from search.locks import database_lock
from search.self_training.spec import SelfTrainingJob
from search.storage import fail_stale_trials

OPEN, DONE, FAILED, CANCELLED = "open", "done", "failed", "cancelled"
STATES = (OPEN, DONE, FAILED, CANCELLED)
STUDY_PREFIX = "selftrain-"
MAX_ATTEMPTS = 3
_UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)


class JobNotFound(LookupError):
    """No study exists for this self-training job."""


def study_name(job_id: str) -> str:
    """The study name of a job (``selftrain-<id>``); ids follow the search ids' rules."""
    from search.lifecycle import study_name as search_study_name

    search_study_name(job_id)  # raises ValueError for an id outside the search ids' rules
    return STUDY_PREFIX + job_id


def job_of(study: optuna.Study) -> SelfTrainingJob:
    """The job stored in a job study."""
    return SelfTrainingJob.model_validate_json(study.user_attrs["job"])


def step_of(trial: FrozenTrial) -> int | None:
    """The step a trial runs (0: teacher); None for a trial no step was enqueued for."""
    step = trial.user_attrs.get("step")
    return None if step is None else int(step)


@dataclass
class JobStatus:
    """Where a job stands.

    Attributes:
        job_id: the job.
        state: one of `STATES`.
        iterations: students planned.
        steps: one row per step so far (``step``, ``role``, ``state``, ``val_accuracy``,
            ``test_accuracy``, ``pseudo_labels``, ``trial_number``, ``epochs``, ``attempts``).
        trainings: trials that trained (complete or failed): the job's cost.
        result: set when done: the best student and the teacher's figures.
        error: why the job failed, if it did.
    """

    job_id: str
    state: str
    iterations: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    trainings: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None


def _storage(storage: BaseStorage | str) -> BaseStorage:
    return optuna.storages.get_storage(storage) if isinstance(storage, str) else storage


def _lock(storage: BaseStorage, job_id: str) -> Any:
    backend = storage._backend if isinstance(storage, _CachedStorage) else storage
    engine = backend.engine if isinstance(backend, RDBStorage) else None
    return database_lock(engine, f"self-training:{job_id}", "lifecycle")


def create_job(storage: BaseStorage | str, job_id: str, job: SelfTrainingJob) -> optuna.Study:
    """Create the study of a job and enqueue its teacher; safe to call twice with one job.

    Raises:
        ValueError: the job exists with other settings, or the id is invalid.
    """
    name = study_name(job_id)
    study = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", load_if_exists=True
    )
    if "job" in study.user_attrs:
        if study.user_attrs["job"] != job.model_dump_json():
            raise ValueError(f"self-training job {job_id!r} already exists with other settings")
        return study
    _enqueue(study, 0, 0)
    study.set_user_attr("priority", job.options.priority)
    study.set_user_attr("state", OPEN)
    study.set_user_attr("job", job.model_dump_json())  # last: marks a fully created job
    return study


def _enqueue(study: optuna.Study, step: int, attempt: int) -> None:
    study.enqueue_trial(
        {"step": step, "attempt": attempt},
        user_attrs={"role": "teacher" if step == 0 else "student", "step": step},
        skip_if_exists=True,
    )


def load(storage: BaseStorage | str, job_id: str) -> optuna.Study:
    """The job's study.

    Raises:
        JobNotFound: no such job, or one not fully created.
    """
    try:
        study = optuna.load_study(study_name=study_name(job_id), storage=storage)
    except KeyError:
        raise JobNotFound(f"no self-training job {job_id!r}") from None
    if "job" not in study.user_attrs:
        raise JobNotFound(f"self-training job {job_id!r} is not fully created")
    return study


def _row(step: int, mine: list[FrozenTrial]) -> dict[str, Any]:
    done = [t for t in mine if t.state == TrialState.COMPLETE]
    shown = done[0] if done else max(mine, key=lambda t: t.number)
    attrs = shown.user_attrs
    return {
        "step": step,
        "role": "teacher" if step == 0 else "student",
        "state": shown.state.name,
        "val_accuracy": shown.value if shown.state == TrialState.COMPLETE else None,
        "val_loss": attrs.get(VAL_LOSS_ATTR),
        "test_accuracy": attrs.get("test_accuracy"),
        "pseudo_labels": attrs.get("pseudo_labels"),
        "trial_number": shown.number,
        "epochs": list(attrs.get("epochs") or []),
        "attempts": len(mine),
        "checkpoint": attrs.get("checkpoint"),
        "model_card": attrs.get("model_card"),
        "sha256": attrs.get("sha256"),
        "error": attrs.get("error"),
        "worker": attrs.get("worker"),
    }


def _by_step(trials: list[FrozenTrial]) -> dict[int, list[FrozenTrial]]:
    out: dict[int, list[FrozenTrial]] = {}
    for t in trials:
        step = step_of(t)
        if step is not None:
            out.setdefault(step, []).append(t)
    return out


def _status(study: optuna.Study, job_id: str, trials: list[FrozenTrial]) -> JobStatus:
    job = job_of(study)
    by_step = _by_step(trials)
    attrs = study.user_attrs
    trained = (TrialState.COMPLETE, TrialState.FAIL)
    return JobStatus(
        job_id=job_id,
        state=str(attrs.get("state", OPEN)),
        iterations=job.options.iterations,
        steps=[_row(k, by_step[k]) for k in sorted(by_step)],
        trainings=sum(1 for t in trials if t.state in trained and "epochs" in t.user_attrs),
        result=attrs.get("result"),
        error=attrs.get("error"),
    )


def status(storage: BaseStorage | str, job_id: str) -> JobStatus:
    """Describe a job without changing it."""
    study = load(storage, job_id)
    return _status(study, job_id, study.get_trials(deepcopy=False))


def advance(storage: BaseStorage | str, job_id: str) -> JobStatus:
    """Move a job on when its current step is over; idempotent (see the module doc)."""
    storage = _storage(storage)
    with _lock(storage, job_id):
        study = load(storage, job_id)
        if study.user_attrs.get("state") == OPEN:
            _advance_open(study, job_of(study), study.get_trials(deepcopy=False))
        return _status(study, job_id, study.get_trials(deepcopy=False))


def _advance_open(study: optuna.Study, job: SelfTrainingJob, trials: list[FrozenTrial]) -> None:
    by_step = _by_step(trials)
    done: dict[int, FrozenTrial] = {}
    for step in range(job.options.iterations + 1):
        mine = by_step.get(step, [])
        complete = [t for t in mine if t.state == TrialState.COMPLETE]
        if complete:
            done[step] = complete[0]
            continue
        if any(t.state in _UNFINISHED for t in mine):
            return
        if len(mine) >= MAX_ATTEMPTS:
            last = max(mine, key=lambda t: t.number).user_attrs.get("error", "unknown")
            study.set_user_attr("error", f"step {step} failed {len(mine)} times; last: {last}")
            study.set_user_attr("state", FAILED)
            return
        _enqueue(study, step, len(mine))
        return
    study.set_user_attr("result", _result(done))
    study.set_user_attr("state", DONE)


def _result(done: dict[int, FrozenTrial]) -> dict[str, Any]:
    """The best student (validation accuracy, then lower loss, then later) and the teacher."""

    def rank(step: int) -> tuple[float, float, int]:
        loss = done[step].user_attrs.get(VAL_LOSS_ATTR)
        return (done[step].value or 0.0, -loss if loss is not None else -float("inf"), step)

    best = max((s for s in done if s > 0), key=rank)
    attrs = done[best].user_attrs
    teacher = done[0]
    return {
        "best_step": best,
        "trial_number": done[best].number,
        "accuracy": done[best].value,
        "test_accuracy": attrs.get("test_accuracy"),
        "teacher_accuracy": teacher.value,
        "teacher_test_accuracy": teacher.user_attrs.get("test_accuracy"),
        "checkpoint": attrs.get("checkpoint"),
        "model_card": attrs.get("model_card"),
        "sha256": attrs.get("sha256"),
    }


def cancel(storage: BaseStorage | str, job_id: str) -> JobStatus:
    """Cancel an open job: its running step stops after its epoch, nothing new starts."""
    storage = _storage(storage)
    with _lock(storage, job_id):
        study = load(storage, job_id)
        if study.user_attrs.get("state") == OPEN:
            study.set_user_attr("state", CANCELLED)
        return _status(study, job_id, study.get_trials(deepcopy=False))


def fail_stale(storage: BaseStorage | str, job_id: str, max_retry: int | None = 2) -> list[int]:
    """Fail the job's trials whose worker stopped beating (they are retried); see
    `search.storage.fail_stale_trials`."""
    return fail_stale_trials(load(storage, job_id), max_retry)
