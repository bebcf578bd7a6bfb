"""HTTP routes of the workers API."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import CurrentUser, SessionDep
from service.workers import service
from service.workers.schemas import WorkerRead

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("")
def list_workers(session: SessionDep, user: CurrentUser) -> list[WorkerRead]:
    """The workers currently running a trial, with their device and trial."""
    return service.alive(session, user)
