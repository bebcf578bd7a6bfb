"""Every query on unlabelled image sets and self-training jobs."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import SelfTraining, UnlabelledSet, User
from service.ownership import visible_to

UNFINISHED = ("queued", "running")


def get_unlabelled(session: Session, unlabelled_id: int, user: User) -> UnlabelledSet | None:
    """The set if it exists and ``user`` may see it."""
    stmt = select(UnlabelledSet).where(UnlabelledSet.id == unlabelled_id)
    return session.scalars(visible_to(stmt, UnlabelledSet.owner_id, user)).first()


def unlabelled_page(
    session: Session, user: User, dataset_id: int | None, offset: int, limit: int
) -> tuple[list[UnlabelledSet], int]:
    """A page of the sets ``user`` may see (of one dataset if given), newest first."""
    base = visible_to(select(UnlabelledSet), UnlabelledSet.owner_id, user)
    if dataset_id is not None:
        base = base.where(UnlabelledSet.dataset_id == dataset_id)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.scalars(base.order_by(UnlabelledSet.id.desc()).offset(offset).limit(limit))
    return list(rows.all()), total


def add(session: Session, row: UnlabelledSet | SelfTraining) -> None:
    """Insert a row (flushed so its id is known)."""
    session.add(row)
    session.flush()


def delete(session: Session, row: UnlabelledSet) -> None:
    """Delete a set row."""
    session.delete(row)
    session.flush()


def jobs_using(session: Session, unlabelled_id: int) -> list[int]:
    """Ids of the self-training jobs on a set."""
    stmt = select(SelfTraining.id).where(SelfTraining.unlabelled_id == unlabelled_id)
    return list(session.scalars(stmt).all())


def get_job(session: Session, job_id: int, user: User) -> SelfTraining | None:
    """The job if it exists and ``user`` may see it."""
    stmt = select(SelfTraining).where(SelfTraining.id == job_id)
    return session.scalars(visible_to(stmt, SelfTraining.owner_id, user)).first()


def get_job_any(session: Session, job_id: int) -> SelfTraining | None:
    """The job, whoever owns it (the reconciler)."""
    return session.get(SelfTraining, job_id)


def jobs_of_search(
    session: Session, search_id: int, offset: int, limit: int
) -> tuple[list[SelfTraining], int]:
    """A page of a search's jobs, newest first."""
    base = select(SelfTraining).where(SelfTraining.search_id == search_id)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.scalars(base.order_by(SelfTraining.id.desc()).offset(offset).limit(limit))
    return list(rows.all()), total


def unfinished_ids(session: Session) -> list[int]:
    """Ids of the jobs the reconciler follows."""
    stmt = select(SelfTraining.id).where(SelfTraining.state.in_(UNFINISHED))
    return list(session.scalars(stmt.order_by(SelfTraining.id)).all())


def count_unfinished_for(session: Session, user_id: int) -> int:
    """Unfinished jobs of one user (the concurrency quota)."""
    stmt = select(func.count()).where(
        SelfTraining.owner_id == user_id, SelfTraining.state.in_(UNFINISHED)
    )
    return session.scalar(stmt) or 0
