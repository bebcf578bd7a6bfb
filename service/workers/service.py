"""The workers alive: those running a trial whose heartbeat Optuna still accepts."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.db.models import User
from service.workers import repository
from service.workers.schemas import WorkerRead


def alive(session: Session, user: User) -> list[WorkerRead]:
    """One entry per worker with its device and current trial.

    Idle workers hold no trial and so leave no trace in the storage; they are not listed.
    """
    return [
        WorkerRead(
            worker=t.worker or "",
            device=t.device,
            search_id=t.search_id,
            trial_number=t.number,
            role=t.role,
            started_at=t.started_at,
        )
        for t in repository.running_trials(session, user)
    ]
