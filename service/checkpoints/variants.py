"""Compressed variants of a final checkpoint: requests, their worker jobs, verified files.

A request writes a variant row (``queued``); `sync` then enqueues its job in the Optuna
storage (`search.compress.queue`) and follows it: when the job is done the file is copied out
of the artifact store into the checkpoint folder (its sha256 checked again) and the row turns
``ready`` with the variant's card; a failed job turns it ``failed`` with the job's error. The
reconciler syncs every unfinished variant on each pass, and a request syncs the one it asks
for, so a poll sees a finished job at once.

Each sync talks to the Optuna storage before it changes the row: on SQLite the session holds
the database's write lock from its first write to its commit, which would keep Optuna's own
writes waiting. So the request that writes a new row does not enqueue; the next sync does.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from service.checkpoints import repository
from service.checkpoints.schemas import DEFAULT_SPARSITY, VariantCreate, VariantRead
from service.checkpoints.service import checkpoint_dir, get, sha256_of
from service.db.models import CheckpointRecord, CheckpointVariant, User, utcnow
from service.errors import Conflict, InvalidInput
from service.searches import service as searches
from service.searches.states import SearchState
from service.settings import Settings

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

logger = logging.getLogger(__name__)
QUEUED, RUNNING, READY, FAILED = "queued", "running", "ready", "failed"
EXTENSIONS = {"onnx": ".onnx", "int8": ".onnx", "pruned": ".safetensors"}


def variant_name(create: VariantCreate) -> tuple[str, float | None]:
    """The variant's name (``onnx``, ``int8``, ``pruned-50``) and its sparsity, if any.

    Sparsity is kept to two decimals, so that 0.5 and 0.501 are one variant.

    Raises:
        InvalidInput: a sparsity for a format other than ``pruned``.
    """
    if create.format != "pruned":
        if create.sparsity is not None:
            raise InvalidInput(f"sparsity applies to the pruned format only, not {create.format}")
        return create.format, None
    sparsity = round(create.sparsity if create.sparsity is not None else DEFAULT_SPARSITY, 2)
    return f"pruned-{sparsity * 100:g}", sparsity


def download_url(row: CheckpointVariant) -> str:
    """The API path that downloads a variant (or answers 202 while it is made)."""
    query = f"format={row.format}"
    if row.sparsity is not None:
        query += f"&sparsity={row.sparsity:g}"
    return f"/api/v1/searches/{row.search_id}/checkpoint?{query}"


def read(row: CheckpointVariant) -> VariantRead:
    """The API view of a variant row."""
    return VariantRead(
        search_id=row.search_id, name=row.name, format=row.format, sparsity=row.sparsity,
        state=row.state, sha256=row.sha256, card=dict(row.card or {}), error=row.error,
        download_url=download_url(row), created_at=row.created_at, updated_at=row.updated_at,
    )  # fmt: skip


def request(
    session: Session,
    storage: BaseStorage,
    settings: Settings,
    search_id: int,
    user: User,
    create: VariantCreate,
    *,
    retry: bool = False,
) -> CheckpointVariant:
    """The variant asked for, its job queued when it is new (or, with ``retry``, failed).

    Raises:
        NotFound: unknown search, or a completed search without its checkpoint file.
        Conflict: the search has not completed.
        InvalidInput: a sparsity for a format other than ``pruned``.
    """
    name, sparsity = variant_name(create)
    search = searches.get(session, search_id, user)
    if search.state != SearchState.COMPLETED:
        raise Conflict(
            f"search {search_id} is {search.state}: compressed checkpoints are made from the "
            "final checkpoint of a completed search"
        )
    get(session, search.id, user)  # the float checkpoint must be there
    row = repository.variant(session, search.id, name)
    if row is None:
        new = CheckpointVariant(search_id=search.id, name=name, format=create.format,
                                sparsity=sparsity, state=QUEUED, request=_key(search.id, name),
                                card={})  # fmt: skip
        added = repository.add_variant(session, new)
        if added is None:  # a concurrent request wrote it first
            added = repository.variant(session, search.id, name)
        if added is None:
            raise Conflict(f"the {name} variant of search {search_id} changed; ask again")
        return added
    sync(session, storage, settings, row)
    if row.state == FAILED and retry:
        row.request, row.state, row.error = _key(search.id, name), QUEUED, None
        row.updated_at = utcnow()
    return row


def _key(search_id: int, name: str) -> str:
    return f"search-{search_id}-{name}-{uuid.uuid4().hex[:12]}"


def _enqueue(storage: BaseStorage, row: CheckpointVariant, record: CheckpointRecord) -> None:
    from search.compress.queue import CompressionJob, enqueue

    enqueue(
        storage,
        CompressionJob(
            request=row.request,
            search_id=str(row.search_id),
            format=row.format,  # type: ignore[arg-type]  # one of FORMATS, set from VariantCreate
            sparsity=row.sparsity,
            checkpoint=record.artifact_id,
            sha256=record.sha256,
            float_size_bytes=Path(record.path).stat().st_size,
            card=dict(record.card),
        ),
    )


def sync(
    session: Session, storage: BaseStorage, settings: Settings, row: CheckpointVariant
) -> None:
    """Bring an unfinished variant up to its job's state (idempotent); a ready one whose file
    is gone turns failed, so that it can be requested again.

    A new row's job is queued here (see the module's note on SQLite's write lock).
    """
    from search.compress.queue import outcome

    if row.state == READY and not (row.path and Path(row.path).is_file()):
        _fail(row, "its file is missing from the checkpoint folder")
    if row.state not in (QUEUED, RUNNING):
        return
    result = outcome(storage, row.request)
    if result is None:
        record = repository.for_search(session, row.search_id)
        if record is None or not Path(record.path).is_file():
            _fail(row, "the search's float checkpoint is missing from the store")
        else:
            _enqueue(storage, row, record)
        return
    if result.state == "done":
        try:
            row.path = str(_fetch(settings, row, str(result.artifact), str(result.sha256)))
        except Exception as exc:
            logger.exception("variant %s of search %s: fetch failed", row.name, row.search_id)
            _fail(row, f"the variant's file could not be stored: {exc}")
            return
        row.artifact_id, row.sha256 = result.artifact, result.sha256
        row.card, row.state = dict(result.card or {}), READY
    elif result.state == "failed":
        _fail(row, result.error or "the job failed")
    elif result.state != row.state:
        row.state = result.state
    else:
        return
    row.updated_at = utcnow()


def _fail(row: CheckpointVariant, error: str) -> None:
    row.state, row.error, row.updated_at = FAILED, error, utcnow()


def _fetch(settings: Settings, row: CheckpointVariant, artifact_id: str, sha256: str) -> Path:
    """Copy a variant out of the artifact store into the checkpoint folder, checking it."""
    import optuna

    from search.checkpoints import make_artifact_store

    target_dir = checkpoint_dir(settings)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"search-{row.search_id}-{row.name}{EXTENSIONS[row.format]}"
    tmp = target.with_name(target.name + ".partial")
    tmp.unlink(missing_ok=True)
    optuna.artifacts.download_artifact(
        artifact_store=make_artifact_store(settings.artifact_store_location),
        file_path=str(tmp),
        artifact_id=artifact_id,
    )
    digest = sha256_of(tmp)
    if digest != sha256:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"it hashes to {digest}, the worker recorded {sha256}")
    os.replace(tmp, target)
    return target


def unfinished(session: Session) -> list[int]:
    """Ids of the queued and running variants (the reconciler syncs each in its own
    transaction)."""
    return [row.id for row in repository.unfinished_variants(session)]


def sync_by_id(session: Session, storage: BaseStorage, settings: Settings, row_id: int) -> None:
    """`sync` the variant of this id, if it still exists."""
    row = session.get(CheckpointVariant, row_id)
    if row is not None:
        sync(session, storage, settings, row)


def listing(session: Session, search_id: int, user: User) -> list[CheckpointVariant]:
    """A search's variants (NotFound for another user's search)."""
    search = searches.get(session, search_id, user)
    return repository.variants_of(session, search.id)
