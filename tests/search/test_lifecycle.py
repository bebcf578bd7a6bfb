"""The search lifecycle in Optuna storage, driven by a cheap objective (no training)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from ops.policy import load_policy
from search import final_pick, lifecycle
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


FINAL_VALUES = {"none": 0.90, "randaugment-2-9": 0.97}


def cheap_objective(
    search_value: float, final_values: dict[str, float] | None = None
) -> Callable[[optuna.Trial], float]:
    """Roles and attrs as the real objective records them; values fixed per role.

    Final trials of a preset score ``final_values[preset]``, of a searched policy 0.95.
    """
    finals = FINAL_VALUES if final_values is None else final_values

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
        if role == "final":
            return finals.get(trial.user_attrs.get("baseline") or "", 0.95)
        return search_value

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
    # Random search enqueues no starting point: it stays the unbiased reference method.
    assert [t.state for t in trials] == [TrialState.WAITING] * 2
    assert [t.user_attrs["baseline"] for t in trials] == list(BASELINE_VALUES)
    assert {t.user_attrs["role"] for t in trials} == {"baseline"}
    assert study.user_attrs["state"] == "open"
    assert lifecycle.spec_of(study) == spec
    with pytest.raises(ValueError, match="different spec"):
        lifecycle.create_search_study(storage, "s1", _spec(n_trials=4))
    with pytest.raises(lifecycle.SearchNotFound):
        lifecycle.advance(storage, "nope")


def _finals(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if lifecycle.role_of(t) == "final"]


def test_search_runs_to_done_through_the_final_pick(storage: optuna.storages.RDBStorage) -> None:
    lifecycle.create_search_study(storage, "s2", _spec(final_pick={"candidates": 2, "presets": 2}))
    study = lifecycle.load_search_study(storage, "s2")
    _drain(study, cheap_objective(0.8), 2)  # the two baselines
    status = lifecycle.advance(storage, "s2")
    lifecycle.advance(storage, "s2")  # idempotent: one final trial per preset
    # The presets' finals are enqueued as soon as the baselines are over, best proxy first:
    # they train beside the search trials.
    assert status.state == "open"
    finals = _finals(study)
    assert [t.user_attrs["baseline"] for t in finals] == ["none", "randaugment-2-9"]
    assert [t.user_attrs["contender"] for t in finals] == [0, 1]
    _drain(study, cheap_objective(0.8), 4)  # the waiting finals first, then two search trials
    status = lifecycle.advance(storage, "s2")
    assert status.state == "open" and status.count("search", "COMPLETE") == 2
    assert [t.state for t in _finals(study)] == [TrialState.COMPLETE] * 2
    _drain(study, cheap_objective(0.8), 1)
    status = lifecycle.advance(storage, "s2")
    lifecycle.advance(storage, "s2")
    assert status.state == "finalizing"
    finals = _finals(study)
    # Then the two best distinct searched policies.
    assert [t.user_attrs["source_role"] for t in finals] == ["baseline", "baseline", "search",
                                                             "search"]  # fmt: skip
    assert [t.state for t in finals[2:]] == [TrialState.WAITING] * 2
    assert status.best is not None and finals[2].user_attrs["policy"] == status.best.policy
    assert status.baselines == BASELINE_VALUES
    _drain(study, cheap_objective(0.8), 1)
    assert lifecycle.advance(storage, "s2").state == "finalizing"  # one contender still to train
    _drain(study, cheap_objective(0.8), 1)
    status = lifecycle.advance(storage, "s2")
    assert status.state == "done" and status.result is not None
    # The preset the proxy ranked last wins at final fidelity, and is served.
    assert status.result["winner"] == "randaugment-2-9"
    assert status.result["proxy_winner"].startswith("search #")
    assert status.result["accuracy"] == 0.97
    assert load_policy(status.result["policy"]).kind == "randaugment"
    rows = status.result["final_pick"]
    assert [r["final_value"] for r in rows] == [0.90, 0.97, 0.95, 0.95]
    assert status.result["kendall_tau"] is not None and status.result["kendall_tau"] < 0
    assert status.count("search", "COMPLETE") == 3


def test_final_pick_sizes_and_a_searched_winner(storage: optuna.storages.RDBStorage) -> None:
    spec = _spec(n_trials=1, final_pick={"candidates": 1, "presets": 1})
    lifecycle.create_search_study(storage, "s3", spec)
    study = lifecycle.load_search_study(storage, "s3")
    _drain(study, cheap_objective(0.1, {"none": 0.5}), 3)
    assert lifecycle.advance(storage, "s3").state == "finalizing"
    finals = _finals(study)
    assert [t.user_attrs["label"] for t in finals] == ["none", "search #2"]
    _drain(study, cheap_objective(0.1, {"none": 0.5}), 2)
    status = lifecycle.advance(storage, "s3")
    assert status.result is not None and status.result["winner"] == "search #2"
    assert status.result["kendall_tau"] is None  # fewer than three contenders


def test_final_pick_ties_go_to_the_lower_validation_loss(
    storage: optuna.storages.RDBStorage,
) -> None:
    # Every contender saturates the validation split: the proxy's favourite must not win by
    # default; the one whose validation loss is lowest does.
    spec = _spec(n_trials=1, final_pick={"candidates": 1, "presets": 2})
    lifecycle.create_search_study(storage, "s3b", spec)
    study = lifecycle.load_search_study(storage, "s3b")
    _drain(study, cheap_objective(0.9), 3)
    assert lifecycle.advance(storage, "s3b").state == "finalizing"
    losses = {"search #2": 0.30, "none": 0.20, "randaugment-2-9": 0.05}
    saturated = cheap_objective(0.9, {"none": 1.0, "randaugment-2-9": 1.0})

    def objective(trial: optuna.Trial) -> float:
        value = saturated(trial)
        if trial.user_attrs.get("role") == "final":
            trial.set_user_attr(final_pick.VAL_LOSS_ATTR, losses[trial.user_attrs["label"]])
            return 1.0
        return value

    _drain(study, objective, 3)
    status = lifecycle.advance(storage, "s3b")
    assert status.result is not None
    assert status.result["proxy_winner"] == "search #2"
    assert status.result["winner"] == "randaugment-2-9"
    rows = {r["label"]: r["final_loss"] for r in status.result["final_pick"]}
    assert rows == losses
    # Both presets tie at 1.000: among them the loss decides.
    assert status.result["decided_by"] == "validation loss" and status.result["saturated"]


def _contender(label: str, role: str, proxy: float) -> dict[str, object]:
    baseline = label if role == "baseline" else None
    return {"value": proxy, "trial_number": 1, "role": role, "baseline": baseline,
            "policy": {"kind": "none"}, "recipe_overrides": {}}  # fmt: skip


def _final(value: float, loss: float) -> FrozenTrial:
    return optuna.trial.create_trial(
        value=value, user_attrs={final_pick.VAL_LOSS_ATTR: loss, "policy": {"kind": "none"}}
    )


def test_a_tie_between_a_preset_and_a_searched_policy_goes_to_the_preset() -> None:
    contenders = [_contender("trivialaugment-wide", "baseline", 0.9),
                  _contender("search", "search", 0.95)]  # fmt: skip
    # Equal accuracy: the searched policy's lower loss does not beat the preset.
    tied = final_pick.pick_result(contenders, {0: _final(1.0, 0.09), 1: _final(1.0, 0.07)})
    assert tied["winner"] == "trivialaugment-wide" and tied["decided_by"] == "preset on a tie"
    assert tied["saturated"] is True
    # A better accuracy wins whatever the roles.
    ahead = final_pick.pick_result(contenders, {0: _final(0.98, 0.05), 1: _final(0.99, 0.2)})
    assert ahead["winner"] == "search #1" and ahead["decided_by"] == "validation accuracy"
    assert ahead["saturated"] is False
    alone = final_pick.pick_result(contenders, {1: _final(0.99, 0.2)})
    assert alone["decided_by"] == "only contender"


def test_a_preset_final_at_1_ends_the_search(storage: optuna.storages.RDBStorage) -> None:
    # The preset's final reaches 1.000 on validation while the search still has budget: no
    # policy can beat it there (ties go to presets), so the search ends and serves it.
    spec = _spec(n_trials=6, final_pick={"candidates": 2, "presets": 1})
    lifecycle.create_search_study(storage, "sat", spec)
    study = lifecycle.load_search_study(storage, "sat")
    perfect = cheap_objective(0.8, {"none": 1.0})
    _drain(study, perfect, 2)  # the baselines
    assert lifecycle.advance(storage, "sat").state == "open"
    _drain(study, perfect, 2)  # the preset's final (none, best by proxy), one search trial
    assert [t.value for t in _finals(study)] == [1.0]
    study.enqueue_trial({"rate": 0}, user_attrs={"role": "search"})  # waits: pruned at the end
    status = lifecycle.advance(storage, "sat")
    assert status.state == "done" and status.result is not None
    assert status.result["winner"] == "none" and status.result["saturated"] is True
    assert status.result["ended_early"] == {"search_trials": 1, "n_trials": 6}
    assert [r["label"] for r in status.result["final_pick"]] == ["none"]
    assert not [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert lifecycle.advance(storage, "sat").state == "done"


def test_a_saturated_preset_does_not_end_the_search_when_asked_not_to(
    storage: optuna.storages.RDBStorage,
) -> None:
    spec = _spec(n_trials=2, final_pick={"candidates": 1, "presets": 1,
                                         "end_when_saturated": False})  # fmt: skip
    lifecycle.create_search_study(storage, "sat2", spec)
    study = lifecycle.load_search_study(storage, "sat2")
    perfect = cheap_objective(0.8, {"none": 1.0})
    _drain(study, perfect, 2)  # the baselines
    lifecycle.advance(storage, "sat2")
    _drain(study, perfect, 2)  # the preset's final, one search trial
    assert lifecycle.advance(storage, "sat2").state == "open"
    _drain(study, perfect, 1)
    assert lifecycle.advance(storage, "sat2").state == "finalizing"
    _drain(study, perfect, 1)
    status = lifecycle.advance(storage, "sat2")
    assert status.result is not None and "ended_early" not in status.result
    assert status.result["winner"] == "none" and status.count("search", "COMPLETE") == 2


def test_proxy_ties_rank_by_validation_loss() -> None:
    spec = _spec(n_trials=3, final_pick={"candidates": 2, "presets": 1})

    def trial(number: int, role: str, loss: float | None, **attrs: object) -> FrozenTrial:
        user_attrs = {"role": role, "policy": {"kind": "randaugment", "n": number}, **attrs}
        if loss is not None:
            user_attrs[final_pick.VAL_LOSS_ATTR] = loss
        t = optuna.trial.create_trial(value=1.0, user_attrs=user_attrs)
        t.number = number
        return t

    trials = [
        trial(0, "baseline", 0.4, baseline="none"),
        trial(1, "baseline", 0.1, baseline="randaugment-2-9"),
        trial(2, "search", None),  # no loss recorded (an older trial): ranks after those with one
        trial(3, "search", 0.3),
        trial(4, "search", 0.2),
    ]
    best = lifecycle.best_policy(trials, spec)
    assert best is not None and best.trial_number == 1
    presets = final_pick.pick_presets(trials, spec)
    assert [(b.trial_number, b.loss) for b in presets] == [(1, 0.1)]
    picked = final_pick.pick_searched(trials, spec, [])
    assert [(b.trial_number, b.loss) for b in picked] == [(4, 0.2), (3, 0.3)]


def test_stopped_trials_never_count_as_failures(storage: optuna.storages.RDBStorage) -> None:
    # Trials handed back by terminated workers are not failures of the search's own: however
    # many there are, the search stays open; as many real failures end it.
    spec = _spec(n_trials=2, baselines=["none"])
    lifecycle.create_search_study(storage, "s9", spec)
    study = lifecycle.load_search_study(storage, "s9")
    _drain(study, cheap_objective(0.7), 1)  # the baseline

    def failing(stopped: bool) -> Callable[[optuna.Trial], float]:
        def objective(trial: optuna.Trial) -> float:
            trial.set_user_attr("role", "search")
            trial.set_user_attr("error", "TrialStopped: worker terminated")
            if stopped:
                trial.set_user_attr(lifecycle.STOPPED_ATTR, True)
            raise RuntimeError("stopped")

        return objective

    limit = max(5, 2 * spec.n_trials) + 1
    study.optimize(failing(True), n_trials=limit, catch=(RuntimeError,))
    assert lifecycle.advance(storage, "s9").state == "open"
    study.optimize(failing(False), n_trials=limit, catch=(RuntimeError,))
    assert lifecycle.advance(storage, "s9").state == "failed"


def test_rank_agreement() -> None:
    assert final_pick.rank_agreement([0.1, 0.2, 0.3], [0.5, 0.6, 0.7]) == pytest.approx(1.0)
    assert final_pick.rank_agreement([0.1, 0.2, 0.3], [0.7, 0.6, 0.5]) == pytest.approx(-1.0)
    assert final_pick.rank_agreement([0.1, 0.2], [0.5, 0.6]) is None
    assert final_pick.rank_agreement([0.1, 0.1, 0.1], [0.5, 0.6, 0.7]) is None


def test_cancel_and_resume(storage: optuna.storages.RDBStorage) -> None:
    lifecycle.create_search_study(storage, "s4", _spec(n_trials=1))
    assert lifecycle.cancel(storage, "s4").state == "cancelled"
    assert lifecycle.advance(storage, "s4").state == "cancelled"
    assert lifecycle.resume(storage, "s4").state == "open"


def test_failed_final_is_retried_then_the_search_fails(
    storage: optuna.storages.RDBStorage,
) -> None:
    spec = _spec(n_trials=1, baselines=["none"], final_pick={"candidates": 1, "presets": 0})
    lifecycle.create_search_study(storage, "s5", spec)
    study = lifecycle.load_search_study(storage, "s5")
    _drain(study, cheap_objective(0.7), 2)
    assert lifecycle.advance(storage, "s5").state == "finalizing"

    def broken(trial: optuna.Trial) -> float:
        trial.set_user_attr("error", "RuntimeError: out of memory")
        raise RuntimeError("out of memory")

    for _ in range(final_pick.MAX_FINAL_ATTEMPTS):
        study.optimize(broken, n_trials=1, catch=(RuntimeError,))
        status = lifecycle.advance(storage, "s5")
    assert status.state == "failed"
    assert status.error is not None and "out of memory" in status.error
    assert status.count("final", "FAIL") == final_pick.MAX_FINAL_ATTEMPTS


def test_a_failed_contender_is_dropped_and_the_others_decide(
    storage: optuna.storages.RDBStorage,
) -> None:
    spec = _spec(n_trials=1, baselines=["none"], final_pick={"candidates": 1, "presets": 1})
    lifecycle.create_search_study(storage, "s8", spec)
    study = lifecycle.load_search_study(storage, "s8")
    _drain(study, cheap_objective(0.7), 2)
    assert lifecycle.advance(storage, "s8").state == "finalizing"

    def preset_breaks(trial: optuna.Trial) -> float:
        if trial.user_attrs.get("baseline") == "none":
            raise RuntimeError("out of memory")
        return 0.9

    for _ in range(final_pick.MAX_FINAL_ATTEMPTS + 1):
        study.optimize(preset_breaks, n_trials=1, catch=(RuntimeError,))
        status = lifecycle.advance(storage, "s8")
    assert status.state == "done" and status.result is not None
    assert status.result["winner"].startswith("search #")
    assert [r["final_value"] for r in status.result["final_pick"]] == [None, 0.9]


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


def test_at_most_the_budget_trains_under_racing_claims(
    storage: optuna.storages.RDBStorage,
) -> None:
    lifecycle.create_search_study(storage, "s7", _spec(n_trials=1, baselines=[]))
    study = lifecycle.load_search_study(storage, "s7")
    a, b = study.ask(), study.ask()
    for t in (a, b):
        t.set_user_attr("role", "search")
    # a flags, b flags and reads a's flag: b steps back (and withdraws its flag), a takes it.
    a.set_user_attr(lifecycle.CLAIM_ATTR, True)
    with pytest.raises(optuna.TrialPruned):
        claim_budget_slot(study, b, 1)
    study.tell(b, state=TrialState.PRUNED)
    claim_budget_slot(study, a, 1)
    trials = study.get_trials()
    assert trials[1].user_attrs[lifecycle.SKIPPED_ATTR]
    assert lifecycle.budget_used(trials) == 1  # a holds the slot; b did not train
    # a is pruned while training: it still counts, and the next trial finds the budget spent.
    study.tell(a, state=TrialState.PRUNED)
    c = study.ask()
    with pytest.raises(optuna.TrialPruned):
        claim_budget_slot(study, c, 1)
    assert lifecycle.budget_used(study.get_trials()) == 1


def test_pruned_trainings_spend_the_budget_so_the_search_ends(
    storage: optuna.storages.RDBStorage,
) -> None:
    lifecycle.create_search_study(storage, "s9", _spec(n_trials=3, baselines=["none"]))
    study = lifecycle.load_search_study(storage, "s9")

    def pruned_search(trial: optuna.Trial) -> float:
        role = str(trial.user_attrs.get("role", "search"))
        if role == "search":
            trial.set_user_attr("role", "search")
            claim_budget_slot(study, trial, 3)
            get_strategy("randaugment").suggest(trial)
            raise optuna.TrialPruned("pruned at epoch 3")
        trial.set_user_attr("policy", trial.user_attrs["policy"])
        return 0.5

    _drain(study, pruned_search, 4)  # the baseline, then three pruned search trainings
    status = lifecycle.advance(storage, "s9")
    assert status.count("search", "PRUNED") == 3
    assert status.state == "finalizing"  # no search trial completed: the presets still compete
    assert [t.user_attrs["label"] for t in _finals(study)] == ["none"]


def test_a_preset_final_at_1_ends_the_final_pick(storage: optuna.storages.RDBStorage) -> None:
    # The preset's final finishes after the budget is spent: the searched final still waiting
    # cannot beat it, so the pick ends without it.
    spec = _spec(n_trials=1, final_pick={"candidates": 1, "presets": 1})
    lifecycle.create_search_study(storage, "sat3", spec)
    study = lifecycle.load_search_study(storage, "sat3")
    perfect = cheap_objective(0.8, {"none": 1.0})
    _drain(study, perfect, 3)  # the baselines and the search trial, before any advance
    assert lifecycle.advance(storage, "sat3").state == "finalizing"
    assert [t.user_attrs["label"] for t in _finals(study)] == ["none", "search #2"]
    _drain(study, perfect, 1)  # the preset's final, first in the queue
    status = lifecycle.advance(storage, "sat3")
    assert status.state == "done" and status.result is not None
    assert status.result["winner"] == "none" and status.result["saturated"] is True
    assert "ended_early" not in status.result
    assert [r["final_value"] for r in status.result["final_pick"]] == [1.0, None]
    assert [t.state for t in _finals(study)] == [TrialState.COMPLETE, TrialState.PRUNED]
