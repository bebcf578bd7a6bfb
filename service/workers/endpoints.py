"""HTTP routes of the workers API."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import CurrentUser, RuntimeDep
from service.workers import service
from service.workers.schemas import WorkerRead

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("")
def list_workers(_user: CurrentUser, runtime: RuntimeDep) -> list[WorkerRead]:
    """The workers seen in the last few poll intervals, with their device and current trial."""
    window = max(60.0, 4 * runtime.settings.heartbeat_interval_s)
    return service.alive(runtime.storage, window)
