"""Every query on policy records."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from service.db.models import PolicyRecord, TrialSummary


def for_search(session: Session, search_id: int) -> PolicyRecord | None:
    """The recorded policy of a completed search."""
    return session.scalars(select(PolicyRecord).where(PolicyRecord.search_id == search_id)).first()


def best_for_dataset(session: Session, dataset_id: int) -> PolicyRecord | None:
    """The most accurate recorded policy for a dataset (newest on ties)."""
    stmt = (
        select(PolicyRecord)
        .where(PolicyRecord.dataset_id == dataset_id)
        .order_by(PolicyRecord.accuracy.desc().nulls_last(), PolicyRecord.id.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def best_trial_so_far(session: Session, search_id: int) -> TrialSummary | None:
    """The best COMPLETE trial carrying a policy (a running search's best so far).

    Final trials come first: once a contender of the final pick has been trained at final
    fidelity, the proxy values no longer decide (the final pick's winner is served).
    """
    stmt = (
        select(TrialSummary)
        .where(
            TrialSummary.search_id == search_id,
            TrialSummary.state == "COMPLETE",
            TrialSummary.policy.is_not(None),
        )
        .order_by(
            case((TrialSummary.role == "final", 0), else_=1),
            TrialSummary.value.desc().nulls_last(),
            TrialSummary.number,
        )
        .limit(1)
    )
    return session.scalars(stmt).first()


def upsert(
    session: Session,
    search_id: int,
    dataset_id: int,
    policy: dict[str, Any],
    accuracy: float | None,
) -> PolicyRecord:
    """Record (or replace) a search's policy."""
    record = for_search(session, search_id)
    if record is None:
        record = PolicyRecord(search_id=search_id, dataset_id=dataset_id)
        session.add(record)
    record.policy = policy
    record.accuracy = accuracy
    session.flush()
    return record
