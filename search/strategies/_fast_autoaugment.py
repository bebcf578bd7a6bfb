"""Fast AutoAugment's space: candidates scored by density matching, the best ones merged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from ops.policy import OpStep, Policy
from search.strategies._autoaugment import sub_policies_from_params, sub_policy_distributions
from search.strategies.base import Strategy


class FastAutoAugmentStrategy(Strategy):
    """Fast AutoAugment (Lim et al. 2019), density matching without retraining.

    A search trial suggests K sub-policies (AutoAugment's space). Its value is the mean, over
    the folds, of the accuracy that the fold's augmentation-free model reaches on its held-out
    part augmented by the candidate (see `search.fast_autoaugment`): a candidate that keeps
    images "in distribution" scores high. The sub-policies of the ``top_n`` best candidates are
    merged into one policy (`merge`), which is then trained as a ``candidate`` trial to be
    compared with the baselines. Differences from the paper: TPE runs over all folds at once
    (one score per candidate averaged over folds) instead of one TPE run per fold.
    """

    name = "fast-autoaugment"
    searchable = True
    trains_in_search = False

    @property
    def top_n(self) -> int:
        """How many best candidates are merged."""
        return self.spec.fast_autoaugment.top_n if self.spec is not None else 3

    def policy_distributions(self) -> dict[str, BaseDistribution]:
        """Distributions of the K sub-policies of one candidate."""
        return sub_policy_distributions(self.num_sub_policies)

    def build_policy(self, params: Mapping[str, Any]) -> Policy:
        """A ``subpolicies`` candidate from the bins in ``params``."""
        return Policy(
            kind="subpolicies",
            sub_policies=sub_policies_from_params(params, self.num_sub_policies),
        )

    def merge(self, trials: Sequence[FrozenTrial]) -> Policy:
        """The union of the sub-policies of the ``top_n`` best complete trials (no repeats).

        Raises:
            ValueError: if no complete trial with a value is given.
        """
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        if not done:
            raise ValueError("fast-autoaugment: no complete candidate to merge")
        best = sorted(done, key=lambda t: (-float(t.value or 0.0), t.number))[: self.top_n]
        merged: list[list[OpStep]] = []
        seen: set[str] = set()
        for trial in best:
            for sub in self.policy_from_params(trial.params).sub_policies:
                key = repr([(s.op, s.p, s.magnitude) for s in sub])
                if key not in seen:
                    seen.add(key)
                    merged.append(sub)
        first = self.policy_from_params(best[0].params)
        return Policy(kind="subpolicies", sub_policies=merged, mix=first.mix)
