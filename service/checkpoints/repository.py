"""Every query on checkpoint records."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.models import CheckpointRecord, CheckpointVariant


def for_search(session: Session, search_id: int) -> CheckpointRecord | None:
    """The checkpoint record of a search."""
    stmt = select(CheckpointRecord).where(CheckpointRecord.search_id == search_id)
    return session.scalars(stmt).first()


def upsert(
    session: Session,
    search_id: int,
    artifact_id: str,
    path: str,
    sha256: str,
    card: dict[str, Any],
) -> CheckpointRecord:
    """Record (or replace) a search's checkpoint."""
    record = for_search(session, search_id)
    if record is None:
        record = CheckpointRecord(search_id=search_id)
        session.add(record)
    record.artifact_id = artifact_id
    record.path = path
    record.sha256 = sha256
    record.card = card
    session.flush()
    return record


def variants_of(session: Session, search_id: int) -> list[CheckpointVariant]:
    """A search's compressed variants, in request order."""
    stmt = (
        select(CheckpointVariant)
        .where(CheckpointVariant.search_id == search_id)
        .order_by(CheckpointVariant.id)
    )
    return list(session.scalars(stmt))


def variant(session: Session, search_id: int, name: str) -> CheckpointVariant | None:
    """One variant of a search by name (``onnx``, ``int8``, ``pruned-50``)."""
    stmt = select(CheckpointVariant).where(
        CheckpointVariant.search_id == search_id, CheckpointVariant.name == name
    )
    return session.scalars(stmt).first()


def unfinished_variants(session: Session) -> list[CheckpointVariant]:
    """Variants whose job has not ended (queued or running), oldest first."""
    stmt = (
        select(CheckpointVariant)
        .where(CheckpointVariant.state.in_(("queued", "running")))
        .order_by(CheckpointVariant.id)
    )
    return list(session.scalars(stmt))


def add_variant(session: Session, row: CheckpointVariant) -> CheckpointVariant | None:
    """Insert a variant row; None when a concurrent request inserted the same one first."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None
    return row
