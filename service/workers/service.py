"""The workers registry as users see it: live and lost workers, and who may see what.

A worker writes its record every ``heartbeat_s`` (`search.worker_registry.REGISTER_INTERVAL_S`, 10 s,
or its trial heartbeat interval if shorter), also while it trains. A record older than
`search.worker_registry.LOST_AFTER_BEATS` beats (30 s by default) shows the worker ``lost``; lost
workers are listed for `LOST_SHOWN_S` and then left out, stopped workers at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from service.db.models import User
from service.searches import repository as searches
from service.workers import repository
from service.workers.schemas import WorkerRead

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

# How long a lost worker stays listed, for operators to notice it.
LOST_SHOWN_S = 3600.0


def _search_id(current_trial: Any) -> int | None:
    """The service's search id of a ``<search id>#<number>`` trial label, if it is one."""
    if not isinstance(current_trial, str):
        return None
    search, _, _ = current_trial.partition("#")
    return int(search) if search.isdigit() else None


def _entry(name: str, info: dict[str, Any], now: datetime) -> WorkerRead | None:
    """The full entry of one record; None for a stopped or long-lost worker."""
    from search.worker_registry import LOST_AFTER_BEATS, REGISTER_INTERVAL_S, is_lost

    if info.get("state") == "stopped":
        return None
    lost = is_lost(info, now)
    age = (now - datetime.fromisoformat(info["last_seen"])).total_seconds()
    if lost and age > LOST_SHOWN_S:
        return None
    current = None if lost or info.get("current_trial") is None else str(info["current_trial"])
    return WorkerRead(
        state="lost" if lost else "busy" if info.get("state") == "busy" else "idle",
        search_id=_search_id(current),
        current_trial=current,
        name=name,
        device=info.get("device"),
        host=info.get("host"),
        pid=info.get("pid"),
        trials_done=int(info.get("trials_done", 0)),
        last_seen=info.get("last_seen"),
        heartbeat_timeout_s=LOST_AFTER_BEATS
        * float(info.get("heartbeat_s") or REGISTER_INTERVAL_S),
    )


def listing(storage: BaseStorage) -> list[WorkerRead]:
    """Every live worker and every recently lost one, with all their fields, by name."""
    now = datetime.now(UTC)
    entries = (
        _entry(name, info, now) for name, info in sorted(repository.records(storage).items())
    )
    return [e for e in entries if e is not None]


def live_count(storage: BaseStorage) -> int:
    """Workers alive now (busy or idle)."""
    return sum(1 for w in listing(storage) if w.state != "lost")


def visible(session: Session, storage: BaseStorage, user: User) -> list[WorkerRead]:
    """The workers as ``user`` may see them: everything for admins; for other users only
    each worker's state, and its search and trial when the search is theirs."""
    workers = listing(storage)
    if user.is_admin:
        return workers
    ids = {w.search_id for w in workers if w.search_id is not None}
    own = searches.visible_ids(session, user, ids)
    return [
        WorkerRead(
            state=w.state,
            search_id=w.search_id if w.search_id in own else None,
            current_trial=w.current_trial if w.search_id in own else None,
        )
        for w in workers
    ]
