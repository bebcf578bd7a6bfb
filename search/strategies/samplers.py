"""Optuna samplers and pruners built from a search spec."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, CmaEsSampler, GridSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial

from search.strategies.base import Strategy

if TYPE_CHECKING:
    from search.spec import SearchSpec


class _StaticSpaceCmaEsSampler(CmaEsSampler):
    """CMA-ES over the strategy's declared space.

    Optuna's CMA-ES infers its space as the intersection over complete trials; baseline trials
    carry no parameters, so that intersection would be empty and every trial would fall back
    to random sampling. The space is static here, so it is given instead of inferred.
    """

    def __init__(self, space: dict[str, BaseDistribution], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._static_space = space

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {k: d for k, d in self._static_space.items() if not d.single()}


def make_sampler(spec: SearchSpec, strategy: Strategy, seed: int) -> BaseSampler:
    """The sampler the spec asks for.

    TPE keeps Optuna 5's defaults (multivariate, constant liar) plus ``group=True``: baseline
    trials carry no parameters, and without grouping the intersection space (hence the
    multivariate model) would be empty. Its random start-up counts the baselines, since
    Optuna counts every complete trial, so it is ``len(baselines)`` + 3..10 search trials.

    Raises:
        ValueError: grid over a space without a finite grid.
    """
    if not strategy.searchable or spec.sampler == "random":
        return RandomSampler(seed=seed)
    if spec.sampler == "grid":
        grid = strategy.grid()
        if grid is None:
            raise ValueError(f"strategy {strategy.name!r} has no finite grid")
        return GridSampler(grid, seed=seed)
    startup = max(3, min(10, spec.n_trials // 3))
    if spec.sampler == "cmaes":
        return _StaticSpaceCmaEsSampler(
            strategy.distributions(), seed=seed, n_startup_trials=startup
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return TPESampler(
            seed=seed,
            multivariate=True,
            group=True,
            n_startup_trials=len(spec.baselines) + startup,
        )


def make_pruner(spec: SearchSpec) -> optuna.pruners.BasePruner:
    """The pruner the spec asks for; steps are epochs of the trial recipe."""
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if spec.pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(spec.recipe.epochs, 2), reduction_factor=3
        )
    return optuna.pruners.NopPruner()
