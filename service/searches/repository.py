"""Every query on searches and their trial summaries."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from service.db.models import Dataset, Search, TrialSummary, User
from service.ownership import visible_to
from service.searches.states import STUDY_OPENING


def get(session: Session, search_id: int, user: User) -> Search | None:
    """The search if it exists and ``user`` may see it."""
    stmt = visible_to(select(Search).where(Search.id == search_id), Search.owner_id, user)
    return session.scalars(stmt).first()


def visible_ids(session: Session, user: User, ids: Collection[int]) -> set[int]:
    """Which of ``ids`` are searches ``user`` may see."""
    if not ids:
        return set()
    stmt = visible_to(select(Search.id).where(Search.id.in_(ids)), Search.owner_id, user)
    return set(session.scalars(stmt).all())


def get_any(session: Session, search_id: int) -> Search | None:
    """The search whoever owns it (for the reconciler)."""
    return session.get(Search, search_id)


def dataset_images(session: Session, search: Search) -> int | None:
    """Images of the dataset a search runs on (None when unknown)."""
    count = session.scalar(select(Dataset.num_images).where(Dataset.id == search.dataset_id))
    return int(count) if count else None


def list_page(
    session: Session,
    user: User,
    offset: int,
    limit: int,
    state: str | None = None,
    dataset_id: int | None = None,
) -> tuple[list[Search], int]:
    """A filtered page of the searches ``user`` may see, newest first, and their total."""
    base = visible_to(select(Search), Search.owner_id, user)
    if state is not None:
        base = base.where(Search.state == state)
    if dataset_id is not None:
        base = base.where(Search.dataset_id == dataset_id)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.scalars(base.order_by(Search.id.desc()).offset(offset).limit(limit)).all()
    return list(rows), total


def count_active_for(session: Session, owner_id: int, states: Sequence[str]) -> int:
    """How many of the owner's searches are in ``states``."""
    stmt = select(func.count()).where(Search.owner_id == owner_id, Search.state.in_(states))
    return session.scalar(stmt) or 0


def in_states(session: Session, states: Sequence[str]) -> list[Search]:
    """Every search in ``states``, highest priority first (the reconciler's work list)."""
    stmt = (
        select(Search).where(Search.state.in_(states)).order_by(Search.priority.desc(), Search.id)
    )
    return list(session.scalars(stmt).all())


def add(session: Session, search: Search) -> Search:
    """Insert a search (flushed so its id is known)."""
    session.add(search)
    session.flush()
    return search


def delete_search(session: Session, search: Search) -> None:
    """Delete a search and its cached trials (written by `save`)."""
    session.execute(delete(TrialSummary).where(TrialSummary.search_id == search.id))
    session.delete(search)


def trials_page(
    session: Session, search_id: int, offset: int, limit: int, role: str | None = None
) -> tuple[list[TrialSummary], int]:
    """A page of a search's trials by number, and their total."""
    base = select(TrialSummary).where(TrialSummary.search_id == search_id)
    if role is not None:
        base = base.where(TrialSummary.role == role)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.scalars(base.order_by(TrialSummary.number).offset(offset).limit(limit)).all()
    return list(rows), total


def trials_by_number(session: Session, search_id: int) -> dict[int, TrialSummary]:
    """Every cached trial of a search keyed by number."""
    rows = session.scalars(select(TrialSummary).where(TrialSummary.search_id == search_id)).all()
    return {row.number: row for row in rows}


def add_trial(session: Session, trial: TrialSummary) -> None:
    """Insert a trial summary."""
    session.add(trial)


def cancelled_unsettled(session: Session) -> list[int]:
    """Ids of cancelled searches the reconciler still has work on.

    Their study is still open (or being opened), or some of their trials were running at the
    last sync: those end after the cancel (stopped, pruned, failed once their worker is gone)
    and their summaries and progress must follow.
    """
    running = (
        select(TrialSummary.id)
        .where(TrialSummary.search_id == Search.id, TrialSummary.state == "RUNNING")
        .exists()
    )
    stmt = select(Search.id).where(
        Search.state == "cancelled",
        or_(Search.study_state.in_(("open", "finalizing", STUDY_OPENING)), running),
    )
    return list(session.scalars(stmt).all())


def save(session: Session) -> bool:
    """Write the pending changes if no other writer changed their search rows meanwhile.

    Each search row is written only if its ``version`` is still the one read (see
    ``service.db.models.Search``).

    Returns:
        True when written; False when another writer came first: the session is then rolled
        back, and the caller reads the row again and decides anew.
    """
    try:
        session.flush()
    except StaleDataError:
        session.rollback()
        return False
    return True
