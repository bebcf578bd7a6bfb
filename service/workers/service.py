"""The workers alive: those whose registry entry was refreshed recently."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.workers import repository
from service.workers.schemas import WorkerRead

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


def alive(storage: BaseStorage, within_s: float) -> list[WorkerRead]:
    """One entry per live worker: device, host, pid, state and current trial."""
    seen = repository.recently_seen(storage, within_s)
    out = []
    for name, info in sorted(seen.items()):
        current = info.get("current_trial")
        out.append(
            WorkerRead(
                name=name,
                device=info.get("device"),
                host=info.get("host"),
                pid=info.get("pid"),
                state=info.get("state"),
                current_trial=None if current is None else str(current),
                trials_done=int(info.get("trials_done", 0)),
                last_seen=info.get("last_seen"),
            )
        )
    return out
