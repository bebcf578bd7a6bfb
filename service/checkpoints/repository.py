"""Every query on checkpoint records."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import CheckpointRecord


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
