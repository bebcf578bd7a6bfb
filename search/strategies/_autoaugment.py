"""AutoAugment's space: K sub-policies of two ops, each with a probability and a magnitude."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from ops.catalogue import OPS
from ops.policy import OpStep, Policy
from search.strategies.base import Strategy

#: AutoAugment's op set (Cubuk et al. 2019, without SamplePairing), as far as the catalogue has it.
AUTOAUGMENT_OPS: tuple[str, ...] = tuple(
    name
    for name in (
        "ShearX",
        "ShearY",
        "TranslateX",
        "TranslateY",
        "Rotate",
        "AutoContrast",
        "Invert",
        "Equalize",
        "Solarize",
        "Posterize",
        "Contrast",
        "Color",
        "Brightness",
        "Sharpness",
        "Cutout",
    )
    if name in OPS
)
#: Discretisation of AutoAugment: 11 probabilities (0, 0.1, ..., 1) and 10 magnitudes (bin / 9).
P_BINS = 11
M_BINS = 10
OPS_PER_SUB_POLICY = 2


def sub_policy_distributions(k: int) -> dict[str, BaseDistribution]:
    """Distributions of ``k`` sub-policies: ``op_i_j``, ``p_i_j``, ``m_i_j``.

    Probability and magnitude are integer bins (AutoAugment's discretisation), which keeps the
    space identical under every sampler and makes trials directly comparable with the paper's
    tables.
    """
    space: dict[str, BaseDistribution] = {}
    for i in range(k):
        for j in range(OPS_PER_SUB_POLICY):
            space[f"op_{i}_{j}"] = CategoricalDistribution(AUTOAUGMENT_OPS)
            space[f"p_{i}_{j}"] = IntDistribution(0, P_BINS - 1)
            space[f"m_{i}_{j}"] = IntDistribution(0, M_BINS - 1)
    return space


def sub_policies_from_params(params: Mapping[str, Any], k: int) -> list[list[OpStep]]:
    """The ``k`` sub-policies described by ``op_i_j`` / ``p_i_j`` / ``m_i_j`` params."""
    return [
        [
            OpStep(
                op=str(params[f"op_{i}_{j}"]),
                p=int(params[f"p_{i}_{j}"]) / (P_BINS - 1),
                magnitude=int(params[f"m_{i}_{j}"]) / (M_BINS - 1),
            )
            for j in range(OPS_PER_SUB_POLICY)
        ]
        for i in range(k)
    ]


class AutoAugmentStrategy(Strategy):
    """K sub-policies of two (op, probability, magnitude) steps; one drawn per image."""

    name = "autoaugment"
    searchable = True
    searches_base = True

    def policy_distributions(self) -> dict[str, BaseDistribution]:
        """Distributions of the K sub-policies."""
        return sub_policy_distributions(self.num_sub_policies)

    def starting_points(self) -> dict[str, dict[str, Any]]:
        """K sub-policies of each published AutoAugment table, spread evenly over it.

        A K-subset of a 25-sub-policy table is not the preset itself (the preset is trained
        as a baseline), but it puts the published op choices and magnitudes where the
        sampler starts.
        """
        from ops.presets import AUTOAUGMENT_PRESETS, PRESETS

        points: dict[str, dict[str, Any]] = {}
        k = self.num_sub_policies
        for name in AUTOAUGMENT_PRESETS:
            table = PRESETS[name].sub_policies or []
            picked = [table[(i * len(table)) // k] for i in range(k)] if len(table) >= k else []
            params: dict[str, Any] = {}
            for i, sub in enumerate(picked):
                for j, step in enumerate(sub[:OPS_PER_SUB_POLICY]):
                    params[f"op_{i}_{j}"] = step.op
                    params[f"p_{i}_{j}"] = round(step.p * (P_BINS - 1))
                    params[f"m_{i}_{j}"] = round(step.magnitude * (M_BINS - 1))
            if params and all(params[f"op_{i}_{j}"] in AUTOAUGMENT_OPS for i in range(k)
                              for j in range(OPS_PER_SUB_POLICY)):  # fmt: skip
                points[name] = params
        return points

    def build_policy(self, params: Mapping[str, Any]) -> Policy:
        """A ``subpolicies`` policy from the bins in ``params``."""
        return Policy(
            kind="subpolicies",
            sub_policies=sub_policies_from_params(params, self.num_sub_policies),
        )
