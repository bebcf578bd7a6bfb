"""Optuna samplers and pruners built from a search spec."""

from __future__ import annotations

from collections.abc import Container
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, CmaEsSampler, GridSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

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


class _StaticSpaceTPESampler(TPESampler):
    """Multivariate TPE over the strategy's declared space, with the constant liar.

    A strategy draws its whole, static space in every search trial (the `Strategy` contract),
    so the space is given rather than inferred: ``group=True`` would get the same single
    group, but by decomposing the distributions of every complete trial again at each trial.
    The baselines, candidates and finals carry no parameters and so do not enter the model,
    as with grouping.

    Two storage round trips per trial are saved, neither of which changes what the model
    sees. The relative params are not copied into the trial's system attrs (the constant
    liar's way of showing other workers a running trial's params before it suggests them):
    the objective suggests every parameter right after sampling, so its params are stored a
    few milliseconds later anyway. And the liar's running trials come from the study's
    snapshot of the trials for this trial (taken once the trial exists, by the objective's
    start check or by this sampler's first look) rather than from one more read of every
    unfinished trial a moment later.
    """

    def __init__(self, space: dict[str, BaseDistribution], **kwargs: Any) -> None:
        super().__init__(multivariate=True, constant_liar=True, **kwargs)
        self._static_space = {k: d for k, d in sorted(space.items()) if not d.single()}

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._static_space)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        snapshot: Any = _SnapshotStudy(study)
        return self._sample_relative(snapshot, trial, search_space)


class _SnapshotStudy:
    """A study whose trials are always read from its snapshot for the current trial."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        return self._study._get_trials(deepcopy, states, use_cache=True)


def make_sampler(spec: SearchSpec, strategy: Strategy, seed: int) -> BaseSampler:
    """The sampler the spec asks for.

    TPE keeps Optuna 5's defaults (multivariate, constant liar) over the strategy's static
    space (`_StaticSpaceTPESampler`): baseline trials carry no parameters, so Optuna's
    inferred intersection space (hence the multivariate model) would be empty. Its random
    start-up counts the baselines, since Optuna counts every complete trial, so it is
    ``len(baselines)`` + 3..10 search trials.

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
    return _StaticSpaceTPESampler(
        strategy.distributions(), seed=seed, n_startup_trials=len(spec.baselines) + startup
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
