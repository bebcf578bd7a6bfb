"""EDA's space for text: the rate of each text op and the augmented copies per sentence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna.distributions import BaseDistribution, IntDistribution

from ops.policy import Policy, TextAugment, TextOpName, TextOpStep
from ops.text_presets import EDA_ALPHA, EDA_COPIES
from search.strategies.base import Strategy

#: Rates are searched in levels of 0.05 (``rate = level * 0.05``, magnitude = level / 10) up to
#: 0.5, the EDA paper's sweep; level 0 switches an op off.
RATE_LEVELS = 10
RATE_STEP = 0.05
#: Copies per sentence: the EDA paper's n_aug went from 1 to 32; past 16 it gained nothing.
COPIES_RANGE = (1, 16)
#: Parameter name of each op's rate level.
RATE_PARAMS: dict[str, TextOpName] = {
    "rate_sr": "SynonymReplacement",
    "rate_ri": "RandomInsertion",
    "rate_rs": "RandomSwap",
    "rate_rd": "RandomDeletion",
}
_EDA_LEVEL = round(EDA_ALPHA / RATE_STEP)


class EdaStrategy(Strategy):
    """Easy data augmentation for text: a rate per op and the copies per sentence.

    EDA's defaults (rate 0.1 for every op, 9 copies) are the first point the sampler sees.
    """

    name = "eda"
    searchable = True

    def policy_distributions(self) -> dict[str, BaseDistribution]:
        """One rate level per op (int 0..10) and ``copies`` (int 1..16, log scale)."""
        space: dict[str, BaseDistribution] = {
            param: IntDistribution(0, RATE_LEVELS) for param in RATE_PARAMS
        }
        space["copies"] = IntDistribution(*COPIES_RANGE, log=True)
        return space

    def build_policy(self, params: Mapping[str, Any]) -> Policy:
        """A ``text`` policy with every op (an op at level 0 is off)."""
        steps = [
            TextOpStep(op=op, magnitude=int(params[param]) / RATE_LEVELS)
            for param, op in RATE_PARAMS.items()
        ]
        return Policy(kind="text", text=TextAugment(ops=steps, copies=int(params["copies"])))

    def starting_points(self) -> dict[str, dict[str, Any]]:
        """EDA's defaults."""
        point: dict[str, Any] = dict.fromkeys(RATE_PARAMS, _EDA_LEVEL)
        return {"eda": {**point, "copies": EDA_COPIES}}
