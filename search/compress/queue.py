"""The queue of compression jobs: trials of the Optuna study ``augsearch-compressions``.

The service enqueues a job as a WAITING trial whose user attrs hold the request key and the
`CompressionJob`; a worker runs it (`search.compress.jobs`) and records on the trial the
variant's artifact id, sha256 and card, or its ``error``. A request is followed across the
retries of its trial by its key (`outcome`). This module imports neither torch nor optuna at
import time: the API reads its models and bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

JOBS_STUDY = "augsearch-compressions"
REQUEST_ATTR, JOB_ATTR = "request", "job"
Format = Literal["onnx", "int8", "pruned"]
FORMATS: tuple[Format, ...] = ("onnx", "int8", "pruned")
#: Bounds and default of the pruned variant's target sparsity (share of zero weights).
MIN_SPARSITY, MAX_SPARSITY, DEFAULT_SPARSITY = 0.05, 0.95, 0.5


class CompressionJob(BaseModel):
    """One variant to make.

    Attributes:
        request: the requester's key, unique per request (a retry of a failed variant is a
            new request).
        search_id: the search whose final model is compressed.
        format: the variant.
        sparsity: target sparsity (``pruned`` only).
        checkpoint: artifact id of the float safetensors file.
        sha256: its sha256 (verified before use).
        float_size_bytes: its size.
        card: its model card.
    """

    model_config = ConfigDict(extra="forbid")

    request: str = Field(min_length=1, max_length=100)
    search_id: str
    format: Format
    sparsity: float | None = Field(default=None, ge=MIN_SPARSITY, le=MAX_SPARSITY)
    checkpoint: str
    sha256: str
    float_size_bytes: int = Field(ge=0)
    card: dict[str, Any]


@dataclass(frozen=True)
class JobOutcome:
    """Where a request stands: ``queued``, ``running``, ``done`` or ``failed``."""

    state: str
    artifact: str | None = None
    sha256: str | None = None
    card: dict[str, Any] | None = None
    error: str | None = None


def jobs_study(storage: BaseStorage) -> optuna.Study:
    """The study holding the compression jobs (created on first use)."""
    import optuna

    return optuna.create_study(
        storage=storage, study_name=JOBS_STUDY, direction="maximize", load_if_exists=True
    )


def _trials_of(study: optuna.Study, request: str) -> list[FrozenTrial]:
    return [
        t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(REQUEST_ATTR) == request
    ]


def enqueue(storage: BaseStorage, job: CompressionJob) -> None:
    """Queue a job, unless a trial of its request exists already (idempotent)."""
    study = jobs_study(storage)
    if _trials_of(study, job.request):
        return
    study.enqueue_trial(
        {}, user_attrs={REQUEST_ATTR: job.request, JOB_ATTR: job.model_dump(mode="json")}
    )


def outcome(storage: BaseStorage, request: str) -> JobOutcome | None:
    """Where a request stands across its retries; None when it was never queued."""
    from optuna.trial import TrialState

    trials = _trials_of(jobs_study(storage), request)
    if not trials:
        return None
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            attrs = trial.user_attrs
            return JobOutcome("done", attrs.get("artifact"), attrs.get("sha256"), attrs.get("card"))
    states = {t.state for t in trials}
    if TrialState.RUNNING in states:
        return JobOutcome("running")
    if TrialState.WAITING in states:
        return JobOutcome("queued")
    last = max(trials, key=lambda t: t.number)
    error = last.user_attrs.get("error") or f"the job ended {last.state.name.lower()}"
    return JobOutcome("failed", error=str(error))
