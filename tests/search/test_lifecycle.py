"""The search lifecycle in Optuna storage, driven by a cheap objective (no training)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from ops.policy import load_policy
from search import lifecycle
from search.objective import claim_budget_slot
from search.spec import SearchSpec
from search.strategies import get_strategy

optuna.logging.set_verbosity(optuna.logging.WARNING)
BASELINE_VALUES = {"none": 0.50, "randaugment-2-9": 0.40}


def _spec(**kw: object) -> SearchSpec:
    return SearchSpec.model_validate(
        {
            "dataset": {"source": "digits"},
            "strategy": "randaugment",
            "n_trials": 3,
            "baselines": list(BASELINE_VALUES),
            "sampler": "random",
            **kw,
        }
    )


def cheap_objective(search_value: float) -> Callable[[optuna.Trial], float]:
    """Roles and attrs as the real objective records them; values fixed per role."""

    def objective(trial: optuna.Trial) -> float:
        spec = lifecycle.spec_of(trial.study)
        role = str(trial.user_attrs.get("role", "search"))
        trial.set_user_attr("role", role)
        if role == "search":
            policy = get_strategy(spec.strategy, spec).suggest(trial)
        else:
            policy = load_policy(trial.user_attrs["policy"])
        trial.set_user_attr("policy", policy.model_dump(mode="json"))
        if role == "baseline":
            return BASELINE_VALUES[trial.user_attrs["baseline"]]
        return 0.99 if role == "final" else search_value

    return objective


@pytest.fixture
def storage(tmp_path: Path) -> optuna.storages.RDBStorage:
    return lifecycle.make_storage(
        f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=1, grace_period=1
    )


def _drain(study: optuna.Study, objective: Callable[[optuna.Trial], float], n: int) -> None:
    study.optimize(objective, n_trials=n)


def test_study_name_validates_ids() -> None:
    assert lifecycle.study_name("abc-1") == "search-abc-1"
    with pytest.raises(ValueError, match="invalid search id"):
        lifecycle.study_name("../x")


def test_create_enqueues_baselines_once(storage: optuna.storages.RDBStorage) -> None:
    spec = _spec()
    study = lifecycle.create_search_study(storage, "s1", spec)
    lifecycle.create_search_study(storage, "s1", spec)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.WAITING] * 2
    assert [t.user_attrs["baseline"] for t in trials] == list(BASELINE_VALUES)
    assert {t.user_attrs["role"] for t in trials} == {"baseline"}
    assert study.user_attrs["state"] == "open"
    assert lifecycle.spec_of(study) == spec
    with pytest.raises(ValueError, match="different spec"):
        lifecycle.create_search_study(storage, "s1", _spec(n_trials=4))
    with pytest.raises(lifecycle.SearchNotFound):
        lifecycle.advance(storage, "nope")


def test_search_runs_to_done_with_one_final(storage: optuna.storages.RDBStorage) -> None:
    lifecycle.create_search_study(storage, "s2", _spec())
    study = lifecycle.load_search_study(storage, "s2")
    _drain(study, cheap_objective(0.8), 4)  # two baselines, two search trials
    status = lifecycle.advance(storage, "s2")
    assert status.state == "open" and status.count("search", "COMPLETE") == 2
    _drain(study, cheap_objective(0.8), 1)
    status = lifecycle.advance(storage, "s2")
    lifecycle.advance(storage, "s2")  # idempotent: still one final trial
    assert status.state == "finalizing"
    finals = [t for t in study.get_trials() if lifecycle.role_of(t) == "final"]
    assert len(finals) == 1 and finals[0].state == TrialState.WAITING
    assert status.best is not None and status.best.role == "search"
    assert finals[0].user_attrs["policy"] == status.best.policy
    assert status.baselines == BASELINE_VALUES
    _drain(study, cheap_objective(0.8), 1)
    status = lifecycle.advance(storage, "s2")
    assert status.state == "done"
    assert status.result is not None and status.result["accuracy"] == 0.99
    assert status.result["policy"] == status.best.policy
    assert status.count("search", "COMPLETE") == 3


def test_a_baseline_can_win(storage: optuna.storages.RDBStorage) -> None:
    lifecycle.create_search_study(storage, "s3", _spec(n_trials=1))
    study = lifecycle.load_search_study(storage, "s3")
    _drain(study, cheap_objective(0.1), 3)
    status = lifecycle.advance(storage, "s3")
    assert status.state == "finalizing"
    assert status.best is not None and status.best.baseline == "none"
    final = study.get_trials()[-1]
    assert final.user_attrs["baseline"] == "none"
    assert load_policy(final.user_attrs["policy"]).kind == "none"


def test_cancel_and_resume(storage: optuna.storages.RDBStorage) -> None:
    lifecycle.create_search_study(storage, "s4", _spec(n_trials=1))
    assert lifecycle.cancel(storage, "s4").state == "cancelled"
    assert lifecycle.advance(storage, "s4").state == "cancelled"
    assert lifecycle.resume(storage, "s4").state == "open"


def test_failed_final_is_retried_then_the_search_fails(
    storage: optuna.storages.RDBStorage,
) -> None:
    lifecycle.create_search_study(storage, "s5", _spec(n_trials=1, baselines=["none"]))
    study = lifecycle.load_search_study(storage, "s5")
    _drain(study, cheap_objective(0.7), 2)
    assert lifecycle.advance(storage, "s5").state == "finalizing"

    def broken(trial: optuna.Trial) -> float:
        trial.set_user_attr("error", "RuntimeError: out of memory")
        raise RuntimeError("out of memory")

    for _ in range(lifecycle.MAX_FINAL_ATTEMPTS):
        study.optimize(broken, n_trials=1, catch=(RuntimeError,))
        status = lifecycle.advance(storage, "s5")
    assert status.state == "failed"
    assert status.error is not None and "out of memory" in status.error
    assert status.count("final", "FAIL") == lifecycle.MAX_FINAL_ATTEMPTS


def test_fail_stale_fails_and_requeues_with_the_same_params(
    storage: optuna.storages.RDBStorage,
) -> None:
    lifecycle.create_search_study(storage, "s6", _spec(baselines=[]))
    study = lifecycle.load_search_study(storage, "s6")
    trial = study.ask()
    get_strategy("randaugment").suggest(trial)
    storage.record_heartbeat(trial._trial_id)  # a worker that then died
    assert lifecycle.fail_stale(storage, "s6") == []
    time.sleep(2.2)
    assert lifecycle.fail_stale(storage, "s6") == [trial.number]
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    assert trials[1].state == TrialState.WAITING and trials[1].params == trials[0].params


def test_at_most_the_budget_completes_under_racing_claims(
    storage: optuna.storages.RDBStorage,
) -> None:
    lifecycle.create_search_study(storage, "s7", _spec(n_trials=1, baselines=[]))
    study = lifecycle.load_search_study(storage, "s7")
    a, b = study.ask(), study.ask()
    for t in (a, b):
        t.set_user_attr("role", "search")
    # Both flag before either reads: both give the slot up (safe, never over budget).
    a.set_user_attr("finishing", True)
    with pytest.raises(optuna.TrialPruned):
        claim_budget_slot(study, b, 1)
    with pytest.raises(optuna.TrialPruned):
        claim_budget_slot(study, a, 1)
    study.tell(a, state=TrialState.PRUNED)
    study.tell(b, state=TrialState.PRUNED)
    # One after the other: the first completes, the second is pruned.
    c, d = study.ask(), study.ask()
    claim_budget_slot(study, c, 1)
    study.tell(c, 0.5)
    with pytest.raises(optuna.TrialPruned):
        claim_budget_slot(study, d, 1)
