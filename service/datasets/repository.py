"""Every query on datasets."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import Dataset, Search, User
from service.ownership import visible_to


def get(session: Session, dataset_id: int, user: User) -> Dataset | None:
    """The dataset if it exists and ``user`` may see it."""
    stmt = visible_to(select(Dataset).where(Dataset.id == dataset_id), Dataset.owner_id, user)
    return session.scalars(stmt).first()


def list_page(session: Session, user: User, offset: int, limit: int) -> tuple[list[Dataset], int]:
    """A page of the datasets ``user`` may see, newest first, and their total."""
    base = visible_to(select(Dataset), Dataset.owner_id, user)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.scalars(base.order_by(Dataset.id.desc()).offset(offset).limit(limit)).all()
    return list(rows), total


def add(session: Session, dataset: Dataset) -> Dataset:
    """Insert a dataset (flushed so its id is known)."""
    session.add(dataset)
    session.flush()
    return dataset


def delete(session: Session, dataset: Dataset) -> None:
    """Delete a dataset row."""
    session.delete(dataset)
    session.flush()


def search_ids_using(session: Session, dataset_id: int) -> list[int]:
    """Ids of the searches that refer to the dataset."""
    return list(session.scalars(select(Search.id).where(Search.dataset_id == dataset_id)).all())
