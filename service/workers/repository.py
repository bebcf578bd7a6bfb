"""Where workers are recorded: their registry in the Optuna storage (written by each worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


def recently_seen(storage: BaseStorage, within_s: float) -> dict[str, dict[str, Any]]:
    """Registry entries of the workers seen in the last ``within_s`` seconds, by name."""
    from search.worker import workers_alive

    # The registry reader accepts any Optuna storage; passing ours avoids opening a new one.
    return workers_alive(storage, within_s=within_s)
