"""Search strategies: the spaces of augmentation policies searched with Optuna.

``Strategy`` is the plug-in point (see its docstring for the contract); `get_strategy` builds
one from a spec; `make_sampler` / `make_pruner` build the Optuna pieces the spec asks for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search.strategies._autoaugment import AUTOAUGMENT_OPS, AutoAugmentStrategy
from search.strategies._eda import EdaStrategy
from search.strategies._fast_autoaugment import FastAutoAugmentStrategy
from search.strategies._fixed import NoAugmentStrategy, TrivialAugmentStrategy
from search.strategies._randaugment import RandAugmentStrategy
from search.strategies.base import CO_PREFIX, Strategy
from search.strategies.samplers import make_pruner, make_sampler

if TYPE_CHECKING:
    from search.spec import SearchSpec

#: Every strategy by its spec name.
STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        AutoAugmentStrategy,
        RandAugmentStrategy,
        TrivialAugmentStrategy,
        NoAugmentStrategy,
        FastAutoAugmentStrategy,
        EdaStrategy,
    )
}


def get_strategy(name: str, spec: SearchSpec | None = None) -> Strategy:
    """Build the strategy called ``name`` for ``spec``.

    Raises:
        ValueError: naming the known strategies, if ``name`` is unknown.
    """
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}") from None
    return cls(spec)


__all__ = [
    "AUTOAUGMENT_OPS",
    "CO_PREFIX",
    "STRATEGIES",
    "AutoAugmentStrategy",
    "EdaStrategy",
    "FastAutoAugmentStrategy",
    "NoAugmentStrategy",
    "RandAugmentStrategy",
    "Strategy",
    "TrivialAugmentStrategy",
    "get_strategy",
    "make_pruner",
    "make_sampler",
]
