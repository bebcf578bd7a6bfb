"""The ``eda`` strategy (its generic contract runs in tests/search/test_strategies.py)."""

from __future__ import annotations

from typing import get_args

import optuna

from ops.policy import TextOpName
from ops.text_presets import eda_policy
from search.strategies import get_strategy
from search.strategies._eda import RATE_PARAMS


def test_starting_point_is_eda_defaults() -> None:
    strategy = get_strategy("eda")
    assert strategy.policy_from_params(strategy.starting_points()["eda"]) == eda_policy()
    assert tuple(RATE_PARAMS.values()) == get_args(TextOpName)


def test_levels_map_to_rates_and_copies() -> None:
    strategy = get_strategy("eda")
    policy = strategy.policy_from_params(
        {"rate_sr": 10, "rate_ri": 0, "rate_rs": 3, "rate_rd": 1, "copies": 16}
    )
    assert policy.kind == "text" and policy.text is not None and policy.text.copies == 16
    assert [round(s.rate, 3) for s in policy.text.ops] == [0.5, 0.0, 0.15, 0.05]


def test_eda_searches_under_tpe() -> None:
    strategy = get_strategy("eda")
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4)
    )
    study.enqueue_trial(strategy.starting_points()["eda"])

    def objective(trial: optuna.Trial) -> float:
        policy = strategy.suggest(trial)
        assert policy.text is not None
        # Best near a swap rate of 0.2 with few copies: something for TPE to find.
        return -abs(policy.text.ops[2].rate - 0.2) - 0.01 * policy.text.copies

    study.optimize(objective, n_trials=25)
    assert study.trials[0].params["copies"] == 9
    first = study.trials[0].value
    assert first is not None and study.best_value > first
