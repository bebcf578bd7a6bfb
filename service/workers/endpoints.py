"""HTTP routes of the workers API."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import CurrentUser, RuntimeDep, SessionDep
from service.workers import service
from service.workers.schemas import WorkerRead

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("")
def list_workers(user: CurrentUser, session: SessionDep, runtime: RuntimeDep) -> list[WorkerRead]:
    """Live workers and recently lost ones; host, pid and other users' searches are admin-only."""
    return service.visible(session, runtime.storage, user)
