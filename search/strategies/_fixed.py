"""Strategies with nothing to search: one fixed policy (TrivialAugmentWide, no augmentation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna.distributions import BaseDistribution

from ops.policy import Policy
from search.strategies.base import Strategy


class TrivialAugmentStrategy(Strategy):
    """TrivialAugmentWide: one op at a uniformly drawn magnitude per image; no parameters."""

    name = "trivialaugment"
    searchable = False

    def policy_distributions(self) -> dict[str, BaseDistribution]:
        """No parameters."""
        return {}

    def build_policy(self, params: Mapping[str, Any]) -> Policy:
        """TrivialAugmentWide."""
        return Policy(kind="trivialaugment", wide=True)

    def grid(self) -> dict[str, list[Any]] | None:
        """The single (empty) point."""
        return {}


class NoAugmentStrategy(Strategy):
    """No augmentation; no parameters."""

    name = "none"
    searchable = False

    def policy_distributions(self) -> dict[str, BaseDistribution]:
        """No parameters."""
        return {}

    def build_policy(self, params: Mapping[str, Any]) -> Policy:
        """The identity policy."""
        return Policy(kind="none")

    def grid(self) -> dict[str, list[Any]] | None:
        """The single (empty) point."""
        return {}
