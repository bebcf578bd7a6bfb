"""Queries behind the workers listing (the trial summaries the reconciler keeps fresh)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import Search, TrialSummary, User
from service.ownership import visible_to


def running_trials(session: Session, user: User) -> list[TrialSummary]:
    """RUNNING trials of the searches ``user`` may see, that name their worker."""
    searches = visible_to(select(Search.id), Search, user).where(
        Search.state.in_(("running", "finalizing"))
    )
    stmt = (
        select(TrialSummary)
        .where(
            TrialSummary.state == "RUNNING",
            TrialSummary.worker.is_not(None),
            TrialSummary.search_id.in_(searches),
        )
        .order_by(TrialSummary.worker)
    )
    return list(session.scalars(stmt).all())
