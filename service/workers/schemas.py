"""Response models of the workers API."""

from __future__ import annotations

from pydantic import BaseModel


class WorkerRead(BaseModel):
    """A worker seen recently in the workers registry of the Optuna storage."""

    name: str
    device: str | None = None
    host: str | None = None
    pid: int | None = None
    state: str | None = None
    current_trial: str | None = None
    trials_done: int = 0
    last_seen: str | None = None
