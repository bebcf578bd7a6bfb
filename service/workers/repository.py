"""Where workers are recorded: their registry in the Optuna storage (written by each worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


def records(storage: BaseStorage) -> dict[str, dict[str, Any]]:
    """Every registry record by worker name (stopped and lost workers included)."""
    from search.worker_registry import registry

    # The registry reader accepts any Optuna storage; passing ours avoids opening a new one.
    return registry(storage)
