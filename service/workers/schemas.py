"""Response models of the workers API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

WorkerState = Literal["busy", "idle", "lost"]


class WorkerRead(BaseModel):
    """A worker of the registry in the Optuna storage.

    Admins see every field. Other users see only ``state``, and ``search_id`` and
    ``current_trial`` when the worker trains one of their own searches; the other fields are
    null for them (a worker's name is its host and pid).

    Attributes:
        state: ``busy`` (training a trial), ``idle`` (looking for work), or ``lost`` (no
            heartbeat for ``heartbeat_timeout_s``: killed, or its host is down).
        search_id: the search of its current trial.
        current_trial: ``<search id>#<trial number>``.
        name: its name in the registry (``host:pid`` by default).
        device: the torch device it trains on.
        host: its host.
        pid: its process id.
        trials_done: trials it has run.
        last_seen: when its record was last written (its last heartbeat), ISO 8601 UTC.
        heartbeat_timeout_s: how old ``last_seen`` may grow before the worker is lost.
    """

    state: WorkerState
    search_id: int | None = None
    current_trial: str | None = None
    name: str | None = None
    device: str | None = None
    host: str | None = None
    pid: int | None = None
    trials_done: int | None = None
    last_seen: str | None = None
    heartbeat_timeout_s: float | None = None
