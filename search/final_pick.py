"""The final pick of a search: which contenders are retrained at final fidelity, and the winner.

The contenders are the best presets by proxy value (`pick_presets`, chosen and enqueued by
`enqueue_presets` as soon as every baseline is over, so their finals train beside the search
trials) and, once the search budget is spent, the best distinct searched policies
(`pick_searched`). Each is retrained with the final recipe, one ``final`` trial per contender
(fixed params ``final`` = contender index, ``attempt``; `enqueue_final`). `pick_result` names
the winner, the contender with the best validation accuracy at final fidelity (a tie between
a preset and a searched policy goes to the preset), and records every contender's proxy and
final figures and the Kendall tau between the two rankings (`rank_agreement`). A preset whose
final scores 1.000 on validation cannot be beaten (`saturated_presets`): the lifecycle then
ends the search early. The search's states and the stage machine are `search.lifecycle`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.roles import UNFINISHED, role_of
from search.spec import SearchSpec
from search.strategies import get_strategy

MAX_FINAL_ATTEMPTS = 3
#: Trials' user attr holding the validation cross-entropy (the tie-break of equal accuracies).
VAL_LOSS_ATTR = "val_loss"
#: Study attr: the preset contenders, chosen once every baseline is over (contender indices
#: 0 .. len - 1 of the final pick).
PRESET_PICK_ATTR = "final_pick_presets"


@dataclass
class BestPolicy:
    """The best policy found so far and where it came from."""

    value: float
    trial_number: int
    role: str
    policy: dict[str, Any]
    baseline: str | None = None
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    loss: float | None = None

    def rank(self) -> tuple[float, float, int]:
        """Sort key, best first: higher accuracy, then lower validation loss, then earlier."""
        return (-self.value, math.inf if self.loss is None else self.loss, self.trial_number)


def baselines_over(trials: list[FrozenTrial]) -> bool:
    """Whether the search has baselines and none is running or waiting (presets can be picked)."""
    baselines = [t for t in trials if role_of(t) == "baseline"]
    return bool(baselines) and not any(t.state in UNFINISHED for t in baselines)


def enqueue_presets(study: optuna.Study, spec: SearchSpec, baselines: list[FrozenTrial]) -> None:
    """Choose the preset contenders and enqueue their finals once every baseline is over."""
    if PRESET_PICK_ATTR in study.user_attrs or not baselines_over(baselines):
        return
    presets = [contender_attr(c) for c in pick_presets(baselines, spec)]
    study.set_user_attr(PRESET_PICK_ATTR, presets)
    for index, contender in enumerate(presets):
        enqueue_final(study, index, contender, attempt=0)


def preset_final_ready(study: optuna.Study, contender: int) -> bool:
    """Whether a final trial of a search still open is one of its early preset contenders."""
    return contender < len(study.user_attrs.get(PRESET_PICK_ATTR) or [])


def pick_presets(trials: list[FrozenTrial], spec: SearchSpec) -> list[BestPolicy]:
    """The preset contenders: the ``spec.final_pick.presets`` best baselines by proxy value."""
    return _best_distinct(trials, {"baseline"}, spec.final_pick.presets, [])


def pick_searched(
    trials: list[FrozenTrial], spec: SearchSpec, presets: list[dict[str, Any]]
) -> list[BestPolicy]:
    """The searched contenders: the ``spec.final_pick.candidates`` best searched policies.

    Searched policies are the search trials of strategies that train and the candidates of
    those that do not, one per distinct policy and recipe, none equal to a picked preset.
    """
    roles = {"candidate"}
    if get_strategy(spec.strategy, spec).trains_in_search:
        roles.add("search")
    return _best_distinct(trials, roles, spec.final_pick.candidates, presets)


def _best_distinct(
    trials: list[FrozenTrial], roles: set[str], limit: int, taken: list[dict[str, Any]]
) -> list[BestPolicy]:
    """The ``limit`` best complete trials of ``roles`` by proxy value, one per distinct policy
    and recipe and none equal to a ``taken`` contender; ties go to the lower validation loss,
    then to the earlier trial."""
    pool = [
        best_of(t)
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.value is not None
        and "policy" in t.user_attrs
        and role_of(t) in roles
    ]
    seen = {_policy_key(c["policy"], c.get("recipe_overrides", {})) for c in taken}
    picked: list[BestPolicy] = []
    for best in sorted(pool, key=BestPolicy.rank):
        key = _policy_key(best.policy, best.recipe_overrides)
        if len(picked) < limit and key not in seen:
            seen.add(key)
            picked.append(best)
    return picked


def _policy_key(policy: dict[str, Any], overrides: dict[str, Any]) -> str:
    return repr((sorted(policy.items()), sorted(overrides.items())))


def best_of(t: FrozenTrial) -> BestPolicy:
    return BestPolicy(
        value=float(t.value or 0.0),
        trial_number=t.number,
        role=role_of(t),
        policy=dict(t.user_attrs["policy"]),
        baseline=t.user_attrs.get("baseline"),
        recipe_overrides=dict(t.user_attrs.get("recipe_overrides", {})),
        loss=t.user_attrs.get(VAL_LOSS_ATTR),
    )


def contender_attr(best: BestPolicy) -> dict[str, Any]:
    return {
        "value": best.value,
        "trial_number": best.trial_number,
        "role": best.role,
        "baseline": best.baseline,
        "policy": best.policy,
        "recipe_overrides": best.recipe_overrides,
    }


def contender_label(contender: dict[str, Any]) -> str:
    """How a contender is named to users: the preset's name, or the trial it comes from."""
    if contender.get("baseline"):
        return str(contender["baseline"])
    return f"{contender.get('role', 'search')} #{contender.get('trial_number')}"


def enqueue_final(study: optuna.Study, index: int, contender: dict[str, Any] | BestPolicy,
                   attempt: int) -> None:  # fmt: skip
    c = contender_attr(contender) if isinstance(contender, BestPolicy) else contender
    study.enqueue_trial(
        {"final": index, "attempt": attempt},
        user_attrs={
            "role": "final",
            "contender": index,
            "label": contender_label(c),
            "proxy_value": c["value"],
            "policy": c["policy"],
            "source_trial": c["trial_number"],
            "source_role": c["role"],
            "baseline": c.get("baseline"),
            "recipe_overrides": c.get("recipe_overrides", {}),
        },
        skip_if_exists=True,
    )


def fixed_param(t: FrozenTrial, name: str) -> int:
    """The fixed param ``name`` an enqueued trial was given (``final``, ``attempt``; 0 if none)."""
    return int(t.system_attrs.get("fixed_params", {}).get(name, 0))


def pick_result(contenders: list[dict[str, Any]], done: dict[int, FrozenTrial]) -> dict[str, Any]:
    """The winner of the final pick and the pick's record.

    The best validation accuracy wins. A tie between a preset and a searched policy goes to
    the preset: the validation split cannot tell them apart (a small or easy one saturates at
    1.000 for every contender), and the preset carries evidence from other data sets, while a
    searched policy was selected as the best of many on this same split. Other ties go to the
    lower validation loss, then to the better proxy value. ``decided_by`` names the rule that
    chose the winner over the runner-up.
    """

    def rank(i: int) -> tuple[float, bool, float, float, int]:
        loss = done[i].user_attrs.get(VAL_LOSS_ATTR)
        return (done[i].value or 0.0, _is_preset(contenders[i]),
                -loss if loss is not None else -math.inf, contenders[i]["value"], -i)  # fmt: skip

    ranked = sorted(done, key=rank, reverse=True)
    index = ranked[0]
    final = done[index]
    attrs = final.user_attrs
    rows = [
        {
            "label": contender_label(c),
            "role": c["role"],
            "trial_number": c["trial_number"],
            "baseline": c.get("baseline"),
            "proxy_value": c["value"],
            "final_value": done[i].value if i in done else None,
            "final_loss": done[i].user_attrs.get(VAL_LOSS_ATTR) if i in done else None,
            "test_accuracy": done[i].user_attrs.get("test_accuracy") if i in done else None,
            "final_trial": done[i].number if i in done else None,
        }
        for i, c in enumerate(contenders)
    ]
    proxy_best = max(range(len(contenders)), key=lambda i: (contenders[i]["value"], -i))
    return {
        "trial_number": final.number,
        "accuracy": final.value,
        "test_accuracy": attrs.get("test_accuracy"),
        "policy": attrs["policy"],
        "source_role": attrs.get("source_role"),
        "baseline": attrs.get("baseline"),
        "checkpoint": attrs.get("checkpoint"),
        "model_card": attrs.get("model_card"),
        "sha256": attrs.get("sha256"),
        "final_pick": rows,
        "proxy_winner": contender_label(contenders[proxy_best]),
        "winner": contender_label(contenders[index]),
        "decided_by": _decided_by([rank(i) for i in ranked[:2]]),
        "saturated": saturated(final.value),
        "kendall_tau": rank_agreement(
            [r["proxy_value"] for r in rows if r["final_value"] is not None],
            [r["final_value"] for r in rows if r["final_value"] is not None],
        ),
    }


def _is_preset(contender: dict[str, Any]) -> bool:
    return contender.get("role") == "baseline"


def saturated(value: float | None) -> bool:
    """Whether a validation accuracy is perfect: no contender can score above it."""
    return value is not None and value >= 1.0 - 1e-9


#: What chose the winner over the runner-up, by the first field of their sort keys that differs.
DECIDED_BY = ("validation accuracy", "preset on a tie", "validation loss", "proxy value")


def _decided_by(keys: list[tuple[float, bool, float, float, int]]) -> str:
    if len(keys) < 2:
        return "only contender"
    first, second = keys
    return next((why for why, a, b in zip(DECIDED_BY, first, second, strict=False) if a != b),
                "contender order")  # fmt: skip


def saturated_presets(
    study: optuna.Study, trials: list[FrozenTrial]
) -> dict[int, FrozenTrial] | None:
    """The preset contenders' complete finals when one is at 1.000 validation, else None.

    Such a preset cannot be beaten by any policy on this validation split (ties go to
    presets, `pick_result`), so the search can end without training the rest of its budget.
    None until every preset contender has a complete final.
    """
    presets = study.user_attrs.get(PRESET_PICK_ATTR) or []
    done: dict[int, FrozenTrial] = {}
    for t in trials:
        if (role_of(t) == "final" and t.state == TrialState.COMPLETE
                and fixed_param(t, "final") < len(presets)):  # fmt: skip
            done.setdefault(fixed_param(t, "final"), t)
    if not presets or len(done) < len(presets):
        return None
    return done if any(saturated(t.value) for t in done.values()) else None


def rank_agreement(proxy: list[float], final: list[float]) -> float | None:
    """Kendall's tau-b between proxy and final values; None below 3 pairs or when undefined.

    1 means the proxy ranked the contenders as the final trainings did, -1 the reverse order.
    """
    if len(proxy) < 3:
        return None
    from scipy.stats import kendalltau

    tau = float(kendalltau(proxy, final).statistic)
    return None if math.isnan(tau) else tau
