"""Unlabelled image sets and self-training jobs: registration, launch, cancel, checkpoints.

Decoding is delegated to ``search.datasets.unlabelled`` (same archive checks and memory
limits as labelled uploads); a job's study is created in the Optuna storage at launch and the
reconciler follows it (`service.self_training.sync`).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.datasets import service as datasets
from service.datasets.redaction import public_message
from service.db.models import CheckpointRecord, Dataset, Search, SelfTraining, UnlabelledSet, User
from service.errors import Conflict, Forbidden, InvalidInput, NotFound, QuotaExceeded
from service.policies import repository as policies
from service.searches import service as searches
from service.searches.states import SearchState
from service.self_training import repository
from service.self_training.schemas import SelfTrainingCreate
from service.settings import Settings

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from search.datasets.unlabelled import UnlabelledSpec
    from search.self_training import SelfTrainingJob


def get_unlabelled(session: Session, unlabelled_id: int, user: User) -> UnlabelledSet:
    """The set, or NotFound (also for another user's set)."""
    row = repository.get_unlabelled(session, unlabelled_id, user)
    if row is None:
        raise NotFound(f"unlabelled image set {unlabelled_id} not found")
    return row


def _spec(dataset: Dataset, source: str, path: Path) -> UnlabelledSpec:
    from search.datasets.unlabelled import UnlabelledSpec

    if dataset.channels not in (1, 3) or not dataset.image_size:
        raise Conflict(f"dataset {dataset.id} has no decoded image shape to match")
    # Stored datasets are square (their first side is recorded); a manifest or folder of
    # another shape is decoded to it as well.
    side = int(dataset.image_size)
    return UnlabelledSpec(
        source="archive" if source == "archive" else "folder",
        path=str(path),
        channels=int(dataset.channels),  # type: ignore[arg-type]
        image_size=(side, side),
    )


def _decode(spec: UnlabelledSpec, settings: Settings, shown_as: str) -> tuple[int, str]:
    """Decode once (count and hash); errors name the user's path, never a server folder."""
    from search.datasets import DatasetError
    from search.datasets.unlabelled import images_hash, load_unlabelled

    try:
        images = load_unlabelled(spec, datasets.decode_limits(settings))
    except (DatasetError, ValueError, OSError) as exc:
        names = {spec.path: shown_as, Path(spec.path).name: shown_as}
        shown = public_message(str(exc), names, settings, archive=shown_as)
        raise InvalidInput(f"cannot load unlabelled images: {shown}") from exc
    return int(images.shape[0]), images_hash(images)


def _add(
    session: Session, dataset: Dataset, spec: UnlabelledSpec, name: str, user: User,
    settings: Settings, shown_as: str,
) -> UnlabelledSet:  # fmt: skip
    count, digest = _decode(spec, settings, shown_as)
    row = UnlabelledSet(
        dataset_id=dataset.id,
        owner_id=user.id,
        name=name,
        source=spec.source,
        spec=spec.model_dump(mode="json"),
        num_images=count,
        content_hash=digest,
    )
    repository.add(session, row)
    return row


def register_folder(
    session: Session, dataset_id: int, raw_path: str, name: str | None, user: User,
    settings: Settings,
) -> UnlabelledSet:  # fmt: skip
    """Attach a server folder (admins only, under the allowed roots, like dataset paths)."""
    dataset = datasets.get(session, dataset_id, user)
    if not user.is_admin:
        raise Forbidden("only admins may register server paths")
    real = datasets.resolve_server_path(raw_path, settings)
    spec = _spec(dataset, "folder", real)
    return _add(session, dataset, spec, name or real.name, user, settings, raw_path)


def register_archive(
    session: Session, dataset_id: int, archive: Path, name: str, user: User, settings: Settings
) -> UnlabelledSet:
    """Attach an uploaded archive (stored by `service.datasets.service.store_upload`)."""
    try:
        dataset = datasets.get(session, dataset_id, user)
        return _add(session, dataset, _spec(dataset, "archive", archive), name, user, settings,
                    name)  # fmt: skip
    except BaseException:
        archive.unlink(missing_ok=True)
        raise


def list_unlabelled(
    session: Session, user: User, dataset_id: int | None, offset: int, limit: int
) -> tuple[list[UnlabelledSet], int]:
    """A page of the sets the caller may see."""
    return repository.unlabelled_page(session, user, dataset_id, offset, limit)


def delete_unlabelled(session: Session, unlabelled_id: int, user: User) -> None:
    """Delete a set no self-training job refers to (its uploaded archive goes with it)."""
    row = get_unlabelled(session, unlabelled_id, user)
    using = repository.jobs_using(session, row.id)
    if using:
        raise Conflict(f"unlabelled set {unlabelled_id} is used by self-trainings {using}")
    if row.source == "archive":
        Path(row.spec["path"]).unlink(missing_ok=True)
    repository.delete(session, row)


def _options(body: SelfTrainingCreate) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude={"unlabelled_id"})


def job_spec(session: Session, row: SelfTraining) -> SelfTrainingJob:
    """The job a row stands for, built from its search, policy, unlabelled set and options.

    Raises:
        InvalidInput: options the job model refuses (the message names the field).
        Conflict: the search has no recorded policy.
    """
    from search.self_training import SelfTrainingJob
    from search.spec import SearchSpec

    search = session.get(Search, row.search_id)
    unlabelled = session.get(UnlabelledSet, row.unlabelled_id)
    policy = policies.for_search(session, row.search_id)
    if search is None or unlabelled is None or policy is None:
        raise Conflict(f"search {row.search_id} has no recorded policy")
    try:
        return SelfTrainingJob.model_validate(
            {
                "search_id": str(search.id),
                "search": SearchSpec.model_validate(search.spec),
                "policy": policy.policy,
                "unlabelled": unlabelled.spec,
                "options": row.options,
            }
        )
    except ValidationError as exc:
        raise InvalidInput(f"invalid self-training: {searches._errors_text(exc)}") from exc


def launch(
    session: Session,
    search_id: int,
    body: SelfTrainingCreate | None,
    user: User,
    settings: Settings,
) -> SelfTraining:
    """Validate and store a job on a completed search as ``queued``; the reconciler creates
    its study once the row is committed (a SQLite file takes one writer at a time)."""
    search = searches.get(session, search_id, user)
    if body is None:
        raise InvalidInput("a JSON body with at least 'unlabelled_id' is required")
    if search.state != SearchState.COMPLETED:
        raise Conflict(f"search {search_id} is {search.state}; self-training needs it completed")
    unlabelled = get_unlabelled(session, body.unlabelled_id, user)
    if unlabelled.dataset_id != search.dataset_id:
        raise InvalidInput(
            f"unlabelled set {unlabelled.id} belongs to dataset {unlabelled.dataset_id}, "
            f"not to the search's dataset {search.dataset_id}"
        )
    if repository.count_unfinished_for(session, user.id) >= settings.max_concurrent_searches:
        raise QuotaExceeded(
            f"self-trainings unfinished reach the limit of {settings.max_concurrent_searches}"
        )
    row = SelfTraining(
        search_id=search.id, unlabelled_id=unlabelled.id, owner_id=user.id,
        options=_options(body), state="queued",
    )  # fmt: skip
    job_spec(session, row)  # refuses invalid options before anything is stored
    repository.add(session, row)
    return row


def get(session: Session, job_id: int, user: User) -> SelfTraining:
    """The job, or NotFound (also for another user's)."""
    row = repository.get_job(session, job_id, user)
    if row is None:
        raise NotFound(f"self-training {job_id} not found")
    return row


def of_search(
    session: Session, search_id: int, user: User, offset: int, limit: int
) -> tuple[list[SelfTraining], int]:
    """A page of the jobs of a search the caller may see."""
    search = searches.get(session, search_id, user)
    return repository.jobs_of_search(session, search.id, offset, limit)


def cancel(session: Session, job_id: int, user: User, storage: BaseStorage) -> SelfTraining:
    """Cancel a running job: its step stops after the current epoch, nothing more starts."""
    from search.self_training import JobNotFound
    from search.self_training import cancel as cancel_job

    row = get(session, job_id, user)
    if row.state not in repository.UNFINISHED:
        raise Conflict(f"self-training {job_id} is {row.state}; it can no longer be cancelled")
    with contextlib.suppress(JobNotFound):  # its study never got created: nothing runs
        cancel_job(storage, str(row.id))
    row.state = "cancelled"
    row.finished_at = datetime.now(UTC)
    return row


def checkpoint_record(session: Session, job_id: int, user: User) -> CheckpointRecord:
    """The best student's checkpoint as a record `service.checkpoints.service` can serve.

    Raises:
        NotFound: no checkpoint yet, or its file is gone.
    """
    row = get(session, job_id, user)
    if row.checkpoint_path is None or row.sha256 is None:
        raise NotFound(f"self-training {job_id} has no checkpoint yet (it is {row.state})")
    if not Path(row.checkpoint_path).is_file():
        raise NotFound(f"the checkpoint file of self-training {job_id} is missing")
    # Not added to the session: a view for the verified download of the checkpoints service.
    return CheckpointRecord(
        search_id=row.search_id, artifact_id="", path=row.checkpoint_path, sha256=row.sha256,
        card=row.card,
    )  # fmt: skip


def before_search_delete(session: Session, search_id: int, storage: BaseStorage) -> None:
    """Refuse to delete a search while a self-training on it is unfinished; otherwise remove
    its jobs' studies and checkpoint files (their rows go with the search's row).

    Raises:
        Conflict: a job on the search is queued or running.
    """
    import optuna

    from search.self_training.lifecycle import study_name as job_study

    jobs, _ = repository.jobs_of_search(session, search_id, 0, 10_000)
    unfinished = [j.id for j in jobs if j.state in repository.UNFINISHED]
    if unfinished:
        raise Conflict(
            f"search {search_id} has unfinished self-trainings {unfinished}; cancel them first"
        )
    for job in jobs:
        with contextlib.suppress(KeyError):  # a job cancelled before its study was created
            optuna.delete_study(study_name=job_study(str(job.id)), storage=storage)
        if job.checkpoint_path:
            Path(job.checkpoint_path).unlink(missing_ok=True)
