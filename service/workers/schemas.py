"""Response models of the workers API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class WorkerRead(BaseModel):
    """A worker seen running a trial (alive: Optuna fails trials whose heartbeat stops)."""

    worker: str
    device: str | None
    search_id: int
    trial_number: int
    role: str
    started_at: datetime | None
