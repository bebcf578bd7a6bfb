"""The reconciler's part in self-training: follow each running job's study.

Each pass reaps the job's stale trials (also when no worker is alive), advances it, copies its
steps into the row, and once it is done copies the best student's checkpoint out of the
artifact store (sha256 checked) next to the searches' checkpoints.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.self_training import repository

if TYPE_CHECKING:
    from search.self_training import JobStatus
    from service.db.models import SelfTraining
    from service.runtime import Runtime
    from service.settings import Settings

log = logging.getLogger(__name__)
#: Fields of a job's step copied into the row (the rest stays in the study).
STEP_FIELDS = (
    "step", "role", "state", "val_accuracy", "test_accuracy", "pseudo_labels", "epochs",
    "attempts", "error",
)  # fmt: skip


def fetch_checkpoint(
    settings: Settings, result: dict[str, Any], name: str
) -> tuple[Path, dict[str, Any]]:
    """Copy a checkpoint artifact into the checkpoint folder as ``name``, checking its sha256;
    returns its path and model card."""
    import optuna

    from search.checkpoints import load_model_card, make_artifact_store
    from service.checkpoints.service import checkpoint_dir, sha256_of

    store = make_artifact_store(settings.artifact_store_location)
    target_dir = checkpoint_dir(settings)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / name
    tmp = target.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    optuna.artifacts.download_artifact(
        artifact_store=store, file_path=str(tmp), artifact_id=str(result["checkpoint"])
    )
    digest = sha256_of(tmp)
    if digest != result.get("sha256"):
        tmp.unlink(missing_ok=True)
        raise ValueError(f"{name} hashes to {digest}, the worker recorded {result.get('sha256')}")
    os.replace(tmp, target)
    card = load_model_card(store, str(result["model_card"])).model_dump(mode="json")
    return target, card


def apply_status(row: SelfTraining, status: JobStatus, settings: Settings) -> None:
    """Copy a job's status into its row; record the best student when it is done."""
    from search.self_training import lifecycle

    row.steps = [{k: s.get(k) for k in STEP_FIELDS} for s in status.steps]
    row.trainings = status.trainings
    teacher = [s for s in status.steps if s["step"] == 0 and s["val_accuracy"] is not None]
    row.teacher_value = teacher[0]["val_accuracy"] if teacher else None
    students = [s["val_accuracy"] for s in status.steps if s["step"] > 0]
    done = [v for v in students if v is not None]
    row.best_value = max(done) if done else None
    if status.state == lifecycle.DONE and status.result:
        result = status.result
        path, card = fetch_checkpoint(settings, result, f"self-training-{row.id}.safetensors")
        row.checkpoint_path, row.sha256, row.card = str(path), str(result["sha256"]), card
        row.best_step, row.best_value = int(result["best_step"]), result.get("accuracy")
        _finish(row, "completed")
    elif status.state == lifecycle.FAILED:
        row.error = status.error or "the self-training failed"
        _finish(row, "failed")
    elif status.state == lifecycle.CANCELLED:
        _finish(row, "cancelled")


def _finish(row: SelfTraining, state: str) -> None:
    row.state = state
    row.finished_at = datetime.now(UTC)


def _step(runtime: Runtime, job_id: int) -> None:
    """Follow one job in one transaction: open its study when queued, else sync it."""
    from search.self_training import JobNotFound, advance, create_job, fail_stale

    with runtime.transaction() as session:
        row = repository.get_job_any(session, job_id)
        if row is None or row.state not in repository.UNFINISHED:
            return
        storage = runtime.storage
        if row.state == "queued":
            from service.errors import DomainError
            from service.self_training.service import job_spec

            try:
                create_job(storage, str(job_id), job_spec(session, row))
            except (DomainError, ValueError) as exc:
                row.error = getattr(exc, "message", str(exc))
                _finish(row, "failed")
                return
            row.state = "running"
        try:
            fail_stale(storage, str(job_id))
            status = advance(storage, str(job_id))
        except JobNotFound:
            row.error = "its study is missing from the Optuna storage"
            _finish(row, "failed")
            return
        apply_status(row, status, runtime.settings)


def sync_all(runtime: Runtime) -> int:
    """One pass over the queued and running jobs; returns how many were followed."""
    with runtime.transaction() as session:
        ids = repository.unfinished_ids(session)
    for job_id in ids:
        try:
            _step(runtime, job_id)
        except Exception:
            log.exception("syncing self-training %s failed; retrying next pass", job_id)
    return len(ids)
