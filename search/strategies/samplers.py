"""Optuna samplers and pruners built from a search spec."""

from __future__ import annotations

import math
import statistics
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


#: Trial user attrs the objective writes before training, read by `FidelityPruner`.
PLANNED_EPOCHS_ATTR = "planned_epochs"
CHANCE_ATTR = "chance"


class FidelityPruner(optuna.pruners.BasePruner):
    """A pruner that only lets ``inner`` judge a trial once the comparison means something.

    Contract: ``prune`` is False (1) before ``warmup_fraction`` of the trial's planned epochs
    (user attr ``planned_epochs``, written by the objective once the recipe is fixed for the
    data), and (2) while the median of the other trials' values at this epoch has not left
    chance level: it must lie ``lift`` of the way from chance (user attr ``chance``, one over
    the number of classes) to 1. Early epochs of a short proxy rank policies by how fast
    they learn, which is exactly the bias against strong augmentation. A trial without the
    attrs is never pruned.

    Args:
        inner: the pruner that decides once both gates are open.
        warmup_fraction: share of the planned epochs that always runs.
        lift: how far above chance the others' median must be, as a share of ``1 - chance``.
    """

    def __init__(
        self, inner: optuna.pruners.BasePruner, warmup_fraction: float = 0.5, lift: float = 0.25
    ) -> None:
        self.inner, self.warmup_fraction, self.lift = inner, warmup_fraction, lift

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether to stop the trial now (see the class contract)."""
        step = trial.last_step
        planned = trial.user_attrs.get(PLANNED_EPOCHS_ATTR)
        chance = trial.user_attrs.get(CHANCE_ATTR)
        if step is None or planned is None or chance is None:
            return False
        if step < math.ceil(self.warmup_fraction * float(planned)):
            return False
        others = [
            t.intermediate_values[step]
            for t in study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)
            )
            if step in t.intermediate_values and t.number != trial.number
        ]
        floor = float(chance) + self.lift * (1.0 - float(chance))
        if not others or statistics.median(others) < floor:
            return False
        return self.inner.prune(study, trial)


def make_pruner(spec: SearchSpec) -> optuna.pruners.BasePruner:
    """The pruner the spec asks for, behind `FidelityPruner`; steps are epochs."""
    inner: optuna.pruners.BasePruner
    if spec.pruner == "median":
        inner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    elif spec.pruner == "successive-halving":
        inner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    elif spec.pruner == "hyperband":
        # max_resource "auto": the epochs of the first complete trial (derived from the data).
        inner = optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource="auto", reduction_factor=3
        )
    else:
        return optuna.pruners.NopPruner()
    return FidelityPruner(inner)
