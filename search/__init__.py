"""augsearch search package: datasets, trainer, strategies, Optuna objective and workers.

``search.run`` is imported lazily so that ``import search`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run"]


def __getattr__(name: str) -> Any:
    if name == "run":
        from search.runner import run

        return run
    raise AttributeError(f"module 'search' has no attribute {name!r}")
