"""RandAugment's space: number of ops N, magnitude M and magnitude noise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

from ops.policy import Policy
from search.strategies.base import Strategy

#: N up to 4 ops per image: strong augmentation must be expressible, not only the paper's 2.
N_RANGE = (1, 4)
#: M is searched in timm's levels 0..10 (``m = level / 10``, 10 = the widest range); m_std in
#: [0, 0.5] (timm's ``mstd`` up to 5 levels: magnitudes spread over most of the range).
M_LEVELS = 10
M_STD_MAX = 0.5
GRID_M_STD = (0.0, 0.25)
#: The presets this space can express exactly, enqueued as the sampler's first points.
STARTING_POINTS: dict[str, dict[str, Any]] = {"randaugment-2-9": {"n": 2, "m": 9, "m_std": 0.0}}


class RandAugmentStrategy(Strategy):
    """RandAugment(N, M) over the 14 standard ops with optional Gaussian magnitude noise.

    RandAugment(2, 9) is the first point the sampler sees (`starting_points`).
    """

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

    def starting_points(self) -> dict[str, dict[str, Any]]:
        """RandAugment(2, 9) with the preset's own base (no crop, no flip) where the space has it.

        The point is then the ``randaugment-2-9`` baseline exactly, whose proxy result the
        search trial reuses instead of training it again (`search.objective`).
        """
        return {
            name: self.with_preset_base(name, params) for name, params in STARTING_POINTS.items()
        }

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
