"""RandAugment's space: number of ops N, magnitude M and magnitude noise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

from ops.policy import Policy
from search.strategies.base import Strategy

N_RANGE = (1, 3)
#: M is searched in timm's levels 0..10 (``m = level / 10``); m_std in [0, 0.1] (timm mstd <= 1).
M_LEVELS = 10
M_STD_MAX = 0.1
GRID_M_STD = (0.0, 0.05)


class RandAugmentStrategy(Strategy):
    """RandAugment(N, M) over the 14 standard ops with optional Gaussian magnitude noise."""

    name = "randaugment"
    searchable = True
    searches_base = True

    def policy_distributions(self) -> dict[str, BaseDistribution]:
        """``n`` (int), ``m`` (int level) and ``m_std`` (float)."""
        return {
            "n": IntDistribution(*N_RANGE),
            "m": IntDistribution(0, M_LEVELS),
            "m_std": FloatDistribution(0.0, M_STD_MAX),
        }

    def build_policy(self, params: Mapping[str, Any]) -> Policy:
        """A ``randaugment`` policy."""
        return Policy(
            kind="randaugment",
            n=int(params["n"]),
            m=int(params["m"]) / M_LEVELS,
            m_std=float(params["m_std"]),
        )

    def grid(self) -> dict[str, list[Any]] | None:
        """Every N, M level, two noise levels and every base choice, if no knob is co-searched."""
        if self.co_search is not None and self.co_search.knobs():
            return None
        return {
            "n": list(range(N_RANGE[0], N_RANGE[1] + 1)),
            "m": list(range(M_LEVELS + 1)),
            "m_std": list(GRID_M_STD),
            **self.base_grid(),
        }
