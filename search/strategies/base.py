"""The `Strategy` plug-in point: a search space over augmentation policies."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import BaseTrial, FrozenTrial

from ops.policy import BaseAugment, MixConfig, Policy

if TYPE_CHECKING:
    from search.spec import BaseSpace, CoSearch, SearchSpec

#: Prefix of the co-searched recipe knobs' parameter names.
CO_PREFIX = "co_"
_MIX_KNOBS = ("mixup_alpha", "label_smoothing")
#: Parameter names of the searched base augmentation (random crop with padding, mirror).
BASE_CROP = "base_crop_padding"
BASE_HFLIP = "base_hflip"


class Strategy(ABC):
    """A search space over policies, sampled only through ``trial.suggest_*``.

    Contract (checked for every implementation by ``tests/search/test_strategies.py``):

    - ``name`` is the spec's strategy name; ``searchable`` says whether there is anything to
      search (``False``: one fixed policy, no parameters).
    - `distributions` is the whole, static parameter space (names -> Optuna distributions).
      `suggest` draws every parameter of it through ``trial.suggest_*`` and nothing else, so
      any Optuna sampler (random, TPE, grid, CMA-ES on numeric spaces) can drive it.
    - `policy_from_params` rebuilds from a trial's ``params`` exactly the policy `suggest`
      returned for that trial (a stored trial is enough to reproduce its policy).
    - strategies with ``searches_base`` also draw the policy's base augmentation (random crop
      padding ``base_crop_padding``, horizontal flip ``base_hflip``) from the spec's
      ``base_space``; the base is often worth more than any op on a small dataset.
    - `recipe_overrides` gives the co-searched recipe knobs (e.g. ``weight_decay``) from params.
    - `grid` returns a finite grid (param -> values) where the space allows one, else None.
    - `starting_points` gives params (a subset of the space; the rest is sampled) that put
      published presets where the sampler starts; they are enqueued as the first search
      trials, so the search begins from what presets give.
    - ``trains_in_search`` is False when a search trial's value is not a proxy training's
      validation accuracy (fast-autoaugment scores candidates without training); such
      strategies implement `merge`, whose policy is then trained as a ``candidate`` trial.

    Args:
        spec: the search spec (sub-policy count, co-searched knobs); None for defaults.
    """

    name: ClassVar[str]
    searchable: ClassVar[bool]
    trains_in_search: ClassVar[bool] = True
    searches_base: ClassVar[bool] = False

    def __init__(self, spec: SearchSpec | None = None) -> None:
        from search.spec import BaseSpace

        self.spec = spec
        self.num_sub_policies = spec.num_sub_policies if spec is not None else 5
        self.co_search: CoSearch | None = spec.co_search if spec is not None else None
        self.base_space: BaseSpace = spec.base_space if spec is not None else BaseSpace()

    @abstractmethod
    def policy_distributions(self) -> dict[str, BaseDistribution]:
        """The policy's own parameters (without co-searched recipe knobs)."""

    @abstractmethod
    def build_policy(self, params: Mapping[str, Any]) -> Policy:
        """The policy described by the policy parameters in ``params``."""

    def distributions(self) -> dict[str, BaseDistribution]:
        """The whole parameter space, policy and co-searched knobs, in a fixed order."""
        space = self.policy_distributions()
        if self.searches_base:
            space[BASE_CROP] = CategoricalDistribution(tuple(self.base_space.crop_padding))
            space[BASE_HFLIP] = CategoricalDistribution(tuple(self.base_space.hflip))
        if self.co_search is not None:
            for knob, rng in self.co_search.knobs().items():
                space[CO_PREFIX + knob] = FloatDistribution(rng.low, rng.high, log=rng.log)
        return space

    def suggest(self, trial: BaseTrial) -> Policy:
        """Draw every parameter through ``trial.suggest_*`` and return the policy."""
        params: dict[str, Any] = {}
        for name, dist in self.distributions().items():
            params[name] = _suggest(trial, name, dist)
        return self.policy_from_params(params)

    def policy_from_params(self, params: Mapping[str, Any]) -> Policy:
        """Rebuild the policy of a trial from its params.

        Raises:
            ValueError: if a parameter of the space is missing.
        """
        missing = [name for name in self.distributions() if name not in params]
        if missing:
            raise ValueError(f"strategy {self.name!r}: params lack {', '.join(missing)}")
        policy = self.build_policy(params)
        if self.searches_base:
            base = BaseAugment(crop_padding=int(params[BASE_CROP]), hflip=bool(params[BASE_HFLIP]))
            policy = policy.model_copy(update={"base": base})
        mix = {k: float(params[CO_PREFIX + k]) for k in _MIX_KNOBS if CO_PREFIX + k in params}
        if mix:
            merged = MixConfig(**{**policy.mix.model_dump(), **mix})
            policy = policy.model_copy(update={"mix": merged})
        return policy

    def recipe_overrides(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Trainer-recipe fields set by co-searched knobs (``weight_decay``)."""
        key = CO_PREFIX + "weight_decay"
        return {"weight_decay": float(params[key])} if key in params else {}

    def grid(self) -> dict[str, list[Any]] | None:
        """A finite grid over the whole space, or None if the space is not finite."""
        return None

    def starting_points(self) -> dict[str, dict[str, Any]]:
        """Params of the space's first trials by the preset they come from (none by default)."""
        return {}

    def with_preset_base(self, preset: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` plus the base params that give the preset's own base, where the searched
        base can express it (else they stay to the sampler)."""
        from ops.presets import PRESETS

        base = PRESETS[preset].base
        space = self.distributions()
        point = dict(params)
        for name, value in ((BASE_CROP, base.crop_padding), (BASE_HFLIP, base.hflip)):
            choices = getattr(space.get(name), "choices", ())
            if value in choices:
                point[name] = value
        return point

    def base_grid(self) -> dict[str, list[Any]]:
        """The grid of the searched base augmentation (empty without ``searches_base``)."""
        space = self.distributions()
        return {
            name: list(cast(CategoricalDistribution, space[name]).choices)
            for name in (BASE_CROP, BASE_HFLIP)
            if name in space
        }

    def merge(self, trials: Sequence[FrozenTrial]) -> Policy:
        """Merge complete search trials into one policy (strategies without training)."""
        raise NotImplementedError(f"strategy {self.name!r} does not merge candidates")


def _suggest(trial: BaseTrial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise TypeError(f"unsupported distribution {dist!r} for {name!r}")
