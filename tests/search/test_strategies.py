"""Every search strategy passes the same contract, under random and TPE samplers."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from ops.policy import Policy
from search.strategies import STRATEGIES, Strategy, get_strategy
from search.strategies._fast_autoaugment import FastAutoAugmentStrategy
from search.strategies._randaugment import RandAugmentStrategy
from search.strategies.base import BASE_CROP, BASE_HFLIP, CO_PREFIX

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=3, multivariate=True)


def _run(strategy: Strategy, sampler: str, seed: int, n: int = 6) -> list[Policy]:
    study = optuna.create_study(direction="maximize", sampler=_sampler(sampler, seed))
    policies: list[Policy] = []

    def objective(trial: optuna.Trial) -> float:
        policy = strategy.suggest(trial)
        policies.append(policy)
        # A value that depends on the policy, so TPE has something to model.
        return float(len(policy.model_dump_json()) % 97)

    study.optimize(objective, n_trials=n)
    return policies


@pytest.mark.parametrize("name", sorted(STRATEGIES))
class TestStrategyContract:
    """The contract of `Strategy`, run for every registered strategy."""

    @pytest.mark.parametrize("sampler", ["random", "tpe"])
    def test_suggest_returns_a_valid_policy_rebuilt_from_params(
        self, name: str, sampler: str
    ) -> None:
        strategy = get_strategy(name)
        study = optuna.create_study(direction="maximize", sampler=_sampler(sampler, 1))
        for _ in range(5):
            trial = study.ask()
            policy = strategy.suggest(trial)
            assert isinstance(policy, Policy)
            Policy.model_validate_json(policy.model_dump_json())
            assert strategy.policy_from_params(trial.params) == policy
            assert set(trial.params) == set(strategy.distributions())
            study.tell(trial, 0.5)

    @pytest.mark.parametrize("sampler", ["random", "tpe"])
    def test_deterministic_under_a_seeded_sampler(self, name: str, sampler: str) -> None:
        strategy = get_strategy(name)
        assert _run(strategy, sampler, seed=7) == _run(strategy, sampler, seed=7)

    def test_searchable_strategies_explore(self, name: str) -> None:
        strategy = get_strategy(name)
        distinct = {p.model_dump_json() for p in _run(strategy, "random", seed=3, n=8)}
        assert (len(distinct) > 1) == strategy.searchable

    def test_missing_params_name_the_parameter(self, name: str) -> None:
        strategy = get_strategy(name)
        if not strategy.distributions():
            # Nothing can be missing: the fixed policy is rebuilt from no params at all.
            assert strategy.policy_from_params({}) == strategy.build_policy({})
            return
        with pytest.raises(ValueError, match="params lack"):
            strategy.policy_from_params({})

    def test_grid_points_lie_in_the_space(self, name: str) -> None:
        strategy = get_strategy(name)
        grid = strategy.grid()
        if grid is None:
            return
        space = strategy.distributions()
        assert set(grid) == set(space)
        for param, values in grid.items():
            assert all(space[param]._contains(space[param].to_internal_repr(v)) for v in values)


def test_unknown_strategy_is_named() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'bogus'"):
        get_strategy("bogus")


def test_autoaugment_discretises_like_the_paper() -> None:
    strategy = get_strategy("autoaugment")
    params: dict[str, object] = {BASE_CROP: 4, BASE_HFLIP: False}
    for i in range(strategy.num_sub_policies):
        for j in range(2):
            params |= {f"op_{i}_{j}": "Rotate", f"p_{i}_{j}": 7, f"m_{i}_{j}": 9}
    policy = strategy.policy_from_params(params)
    assert len(policy.sub_policies) == 5
    step = policy.sub_policies[0][0]
    assert (step.op, step.p, step.magnitude) == ("Rotate", 0.7, 1.0)
    assert (policy.base.crop_padding, policy.base.hflip) == (4, False)


@pytest.mark.parametrize("name", ["autoaugment", "randaugment"])
def test_base_augmentation_is_searched_within_the_spec_choices(name: str) -> None:
    from search.spec import SearchSpec

    spec = SearchSpec.model_validate(
        {"dataset": {"source": "digits"}, "strategy": name,
         "base_space": {"crop_padding": [1, 3], "hflip": [False]}}
    )  # fmt: skip
    strategy = get_strategy(name, spec)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        policy = strategy.suggest(trial)
        assert policy.base.hflip is False
        seen.add(policy.base.crop_padding)
        study.tell(trial, 0.5)
    assert seen == {1, 3}
    assert (
        get_strategy("fast-autoaugment", spec)
        .distributions()
        .keys()
        .isdisjoint({BASE_CROP, BASE_HFLIP})
    )


@pytest.mark.parametrize(
    "base_space", [{"crop_padding": [2, 2]}, {"crop_padding": [-1]}, {"hflip": []}]
)
def test_bad_base_space_is_refused(base_space: dict[str, object]) -> None:
    from pydantic import ValidationError

    from search.spec import SearchSpec

    with pytest.raises(ValidationError):
        SearchSpec.model_validate({"dataset": {"source": "digits"}, "base_space": base_space})


def test_co_search_knobs_reach_policy_and_recipe() -> None:
    from search.spec import CoSearch, Range

    strategy = RandAugmentStrategy()
    strategy.co_search = CoSearch(
        mixup_alpha=Range(low=0.0, high=1.0),
        weight_decay=Range(low=1e-5, high=1e-2, log=True),
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    policy = strategy.suggest(trial)
    assert policy.mix.mixup_alpha == trial.params[CO_PREFIX + "mixup_alpha"]
    assert strategy.recipe_overrides(trial.params) == {
        "weight_decay": trial.params[CO_PREFIX + "weight_decay"]
    }
    assert strategy.grid() is None


def test_fast_autoaugment_merges_the_top_candidates_without_repeats() -> None:
    strategy = FastAutoAugmentStrategy()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for value in (0.1, 0.9, 0.5, 0.7):
        trial = study.ask()
        strategy.suggest(trial)
        study.tell(trial, value)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    merged = strategy.merge(trials)
    by_value = sorted(trials, key=lambda t: -(t.value or 0))[: strategy.top_n]
    expected = [s for t in by_value for s in strategy.policy_from_params(t.params).sub_policies]
    assert merged.sub_policies == expected
    with pytest.raises(ValueError, match="no complete candidate"):
        strategy.merge([])


@pytest.mark.parametrize("name", ["autoaugment", "randaugment"])
def test_starting_points_lie_in_the_space_and_rebuild_their_preset(name: str) -> None:
    from ops.presets import PRESETS

    strategy = get_strategy(name)
    points = strategy.starting_points()
    assert points, "a searchable strategy starts from the presets it can express"
    space = strategy.distributions()
    for preset, params in points.items():
        for param, value in params.items():
            dist = space[param]
            assert dist._contains(dist.to_internal_repr(value)), (preset, param, value)
        full = {**params, BASE_CROP: 0, BASE_HFLIP: False}
        policy = strategy.policy_from_params(full)
        if name == "randaugment":
            assert policy == PRESETS[preset]  # exactly the preset
        else:  # K sub-policies taken from the published table
            table = [tuple((s.op, s.p) for s in sub) for sub in PRESETS[preset].sub_policies]
            assert all(tuple((s.op, s.p) for s in sub) in table for sub in policy.sub_policies)


def test_starting_points_are_the_first_search_trials(tmp_path: object) -> None:
    import optuna

    from search import lifecycle
    from search.spec import SearchSpec

    spec = SearchSpec.model_validate(
        {
            "dataset": {"source": "digits"},
            "strategy": "randaugment",
            "n_trials": 3,
            "baselines": ["none"],
        }
    )
    storage = lifecycle.make_storage(f"sqlite:///{tmp_path}/o.db")
    lifecycle.create_search_study(storage, "sp", spec)
    study = optuna.load_study(study_name="search-sp", storage=storage)
    roles = [(t.user_attrs["role"], t.user_attrs.get("start_point")) for t in study.get_trials()]
    assert roles == [("baseline", None), ("search", "randaugment-2-9")]
