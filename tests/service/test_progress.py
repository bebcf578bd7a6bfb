"""The progress cache of a search: budget, pruned work, skipped trials, final pick, and an ETA
that accounts for pruning, parallelism, waiting baselines and the final pick still to come
(unit checks on real Optuna trials; `test_search_eta.py` holds the ETA against a real run)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from optuna.trial import FrozenTrial, TrialState, create_trial

from search.lifecycle import StudyStatus
from search.spec import FINAL_EPOCHS_FACTOR, SearchSpec
from service.searches.eta import eta_s, final_work_ratio, lanes, makespan, planned_finals
from service.searches.final_pick import final_pick
from service.searches.schemas import SearchProgress
from service.searches.sync import progress, training_images

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _spec(**fields: Any) -> SearchSpec:
    base = {"dataset": {"source": "digits"}, "strategy": "randaugment", "n_trials": 6,
            "baselines": ["none", "trivialaugment-wide"], "parallelism": 2,
            "recipe": {"epochs": 4}, "final_pick": {"candidates": 1, "presets": 1}}  # fmt: skip
    return SearchSpec.model_validate({**base, **fields})


def _trial(
    number: int,
    role: str,
    state: TrialState,
    duration: float | None = None,
    value: float | None = None,
    epochs: int = 0,
    **attrs: Any,
) -> FrozenTrial:
    """A real FrozenTrial as a worker leaves it; running ones started ``duration`` s ago."""
    user_attrs: dict[str, Any] = {"role": role, "epochs": [0.5] * epochs, **attrs}
    finished = state in (TrialState.COMPLETE, TrialState.PRUNED)
    if finished and duration is not None:
        user_attrs["duration_s"] = duration
    trial = create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None, user_attrs=user_attrs
    )
    trial.number = number
    if state == TrialState.RUNNING:
        trial.datetime_start = NOW - timedelta(seconds=duration or 0.0)
    if state == TrialState.WAITING:
        trial.datetime_start = None
    return trial


def _status(trials: list[FrozenTrial], spec: SearchSpec, **fields: Any) -> StudyStatus:
    counts: dict[str, dict[str, int]] = {}
    for t in trials:
        role = str(t.user_attrs.get("role", "search"))
        counts.setdefault(role, {}).setdefault(t.state.name, 0)
        counts[role][t.state.name] += 1
    baselines = {
        str(t.user_attrs["baseline"]): t.value
        for t in trials
        if t.user_attrs.get("role") == "baseline" and t.state == TrialState.COMPLETE
    }
    return StudyStatus("1", fields.pop("state", "open"), spec.n_trials, counts, None,
                       {**dict.fromkeys(spec.baselines), **baselines}, **fields)  # fmt: skip


def _mid_search() -> list[FrozenTrial]:
    """One baseline done (10 s), one waiting; 2 complete search trainings (10 s), 2 pruned
    (2 s, 2 epochs each), one skipped, one running for 4 s with its slot claimed."""
    done = TrialState.COMPLETE
    return [
        _trial(0, "baseline", done, 10.0, 0.8, 4, baseline="none"),
        _trial(1, "baseline", TrialState.WAITING, baseline="trivialaugment-wide"),
        _trial(2, "search", done, 10.0, 0.7, 4, budget_claim=True),
        _trial(3, "search", TrialState.PRUNED, 2.0, epochs=2, budget_claim=True),
        _trial(4, "search", TrialState.PRUNED, 2.0, epochs=2, budget_claim=True),
        _trial(5, "search", TrialState.PRUNED, 0.1, skipped="search is finalizing"),
        _trial(6, "search", done, 10.0, 0.75, 4, budget_claim=True),
        _trial(7, "search", TrialState.RUNNING, 4.0, budget_claim=True),
    ]


def test_progress_counts_budget_pruned_work_and_skipped_apart() -> None:
    spec = _spec()
    trials = _mid_search()
    got = progress(_status(trials, spec), trials, spec, live_workers=2)
    assert got["budget_used"] == 5  # complete, pruned and the running one with its slot
    assert got["complete"] == 2 and got["pruned"] == 2 and got["pruned_epochs"] == 4
    assert got["skipped"] == 1  # turned away: neither pruned work nor budget
    assert got["finals"] == 2 and got["finals_done"] == 0 and got["final_pick"] is None
    assert got["lanes"] == 2 and got["best_search_value"] == 0.75
    assert SearchProgress.model_validate(got).budget_used == 5


def test_eta_uses_every_finished_search_training_lanes_and_the_final_pick() -> None:
    spec = _spec()
    trials = _mid_search()
    # Search trainings last mean(10, 2, 2, 10) = 6 s (the pruned ones count); baselines and
    # the final pick are never pruned: a proxy training lasts 10 s and the final recipe is
    # the proxy's trained 3x longer on the same images (no train_size): 30 s.
    # Search stage on 2 lanes, in the order workers take them: the running trial's last 2 s,
    # the waiting baseline (10 s, lane 1 ends at 10), the preset's final (30 s, enqueued when
    # the baselines are over: lane 2 from 2 s to 32 s), 1 unstarted search training
    # (6 - 5 in flight: lane 1 to 16 s). The searched final waits for the search trials only:
    # lane 1 from 16 s to 46 s.
    got = eta_s(trials, spec, "open", lanes=2, now=NOW)
    assert got == pytest.approx(46.0)
    # One lane: everything in a row.
    assert eta_s(trials, spec, "open", lanes=1, now=NOW) == pytest.approx(2 + 6 + 10 + 60)
    # Once the preset's final runs (5 s so far), it holds a lane beside the search trials.
    done, preset = trials[:1], {"contender": 0, "baseline": "none"}
    later = [*done, _trial(1, "baseline", TrialState.COMPLETE, 10.0, 0.6, 4, baseline="x"),
             *trials[2:], _trial(8, "final", TrialState.RUNNING, 5.0, **preset)]  # fmt: skip
    # Lanes: running search trial 2 s, preset final 25 s left, the search training 6 s (lane
    # 1: 2 -> 8), the searched final from 8 s: 38 s.
    assert eta_s(later, spec, "open", lanes=2, now=NOW) == pytest.approx(38.0)
    # Nothing finished: no estimate.
    assert eta_s(trials[1:2], spec, "open", lanes=2, now=NOW) is None
    assert eta_s(trials, spec, "done", lanes=2, now=NOW) is None


def test_a_starting_point_that_reuses_a_baseline_costs_no_training() -> None:
    spec = _spec(baselines=["none", "randaugment-2-9"])
    done = TrialState.COMPLETE
    trials = [_trial(0, "baseline", done, 10.0, 0.8, 4, baseline="none"),
              _trial(1, "baseline", done, 10.0, 0.7, 4, baseline="randaugment-2-9"),
              _trial(2, "search", TrialState.WAITING, start_point="randaugment-2-9")]  # fmt: skip
    # 6 search trainings of 10 s on 2 lanes, the preset's final (30 s) on one of them: the
    # starting point takes the baseline's result, so 5 trainings are left, not 6.
    reusing = eta_s(trials, spec, "open", lanes=2, now=NOW)
    other = [*trials[:2], _trial(2, "search", TrialState.WAITING, start_point="x")]
    assert eta_s(other, spec, "open", lanes=2, now=NOW) == pytest.approx(reusing + 10.0)
    # Its (near-instant) run is no training: the durations' means leave it out, so search
    # trainings are still expected to last as long as the proxy trainings (10 s).
    reused = _trial(2, "search", done, 0.05, 0.7, 4, budget_claim=True, reused_from=1)
    trained = _trial(2, "search", done, 10.0, 0.7, 4, budget_claim=True)
    running = _trial(3, "search", TrialState.RUNNING, 1.0, budget_claim=True)
    got = eta_s([*trials[:2], reused, running], spec, "open", lanes=2, now=NOW)
    assert got == pytest.approx(eta_s([*trials[:2], trained, running], spec, "open", lanes=2,
                                      now=NOW))  # fmt: skip
    assert got > 30.0 + 4 * 10.0 / 2


def test_eta_in_the_final_pick_counts_the_contenders_left() -> None:
    spec = _spec()
    done = TrialState.COMPLETE
    trials = [*_mid_search()[:5], _trial(6, "search", done, 10.0, 0.75, 4, budget_claim=True),
              _trial(7, "search", done, 10.0, 0.7, 4, budget_claim=True),
              _trial(8, "search", done, 10.0, 0.72, 4, budget_claim=True),
              _trial(9, "baseline", done, 10.0, 0.6, 4, baseline="trivialaugment-wide"),
              _trial(10, "final", done, 24.0, 0.9, 12, contender=0),
              _trial(11, "final", TrialState.RUNNING, 20.0, contender=1),
              _trial(12, "final", TrialState.WAITING, contender=1)]  # fmt: skip
    # Finals last 24 s (the one done); the running one has 4 s left; its duplicate waiting
    # trial holds no place of its own.
    assert eta_s(trials, spec, "finalizing", lanes=2, now=NOW) == pytest.approx(4.0)


def test_lanes_and_makespan() -> None:
    assert lanes(4, live_workers=2, running=1) == 2
    assert lanes(4, live_workers=None, running=3) == 3
    assert lanes(2, live_workers=8, running=0) == 2
    assert lanes(4, live_workers=0, running=0) == 1
    assert makespan([3, 1, 1, 1], 2) == 3 and makespan([1] * 5, 2) == 3 and makespan([], 3) == 0


def test_final_work_ratio_is_planned_final_work_over_proxy_work() -> None:
    # Fixed epochs on the same images: the epochs decide.
    assert final_work_ratio(_spec(final_recipe={"epochs": 10}), None) == 2.5
    # Derived epochs or sizes unknown: the spec's factor.
    assert final_work_ratio(_spec(recipe={}, train_size=100), None) == FINAL_EPOCHS_FACTOR
    # Known sizes: proxy 4 epochs on 200 images, final 12 epochs on 1000.
    assert final_work_ratio(_spec(train_size=200), 1000) == pytest.approx(12 * 1000 / (4 * 200))
    spec = _spec(recipe={}, train_size=400)  # derived from the data: 500 vs 1500 steps
    proxy, final = spec.recipe.for_size(400), spec.final.for_size(1150)
    expected = (final.epochs or 0) * 1150 / ((proxy.epochs or 0) * 400)
    assert final_work_ratio(spec, 1150) == pytest.approx(expected)
    assert training_images(_spec(holdout_fraction=0.2), 1000) == 640
    assert training_images(_spec(), None) is None
    assert planned_finals(_spec(baselines=[])) == 1
    assert planned_finals(_spec(n_trials=1, final_pick={"candidates": 3, "presets": 2})) == 3


def _finals(values: list[float | None]) -> list[FrozenTrial]:
    labels = ["search #5", "search #3", "none"]
    proxies = [0.9, 0.8, 0.7]
    out = []
    for i, value in enumerate(values):
        state = TrialState.COMPLETE if value is not None else TrialState.RUNNING
        out.append(_trial(20 + i, "final", state, 5.0, value, contender=i, label=labels[i],
                          proxy_value=proxies[i], source_role="baseline" if i == 2 else "search",
                          baseline="none" if i == 2 else None, source_trial=[5, 3, 0][i]))  # fmt: skip
    return out


def test_final_pick_rows_while_running_and_after_the_result() -> None:
    running = final_pick(_finals([0.91, None, None]), None)
    assert running is not None
    assert running["done"] == 1 and running["size"] == 3 and running["winner"] is None
    assert running["proxy_winner"] == "search #5" and running["proxy_reliable"] is None
    assert [r["state"] for r in running["contenders"]] == ["COMPLETE", "RUNNING", "RUNNING"]
    trials = _finals([0.91, 0.95, 0.97])
    result = {"winner": "none", "proxy_winner": "search #5", "kendall_tau": -1.0,
              "final_pick": [{"label": "search #5", "final_value": 0.91, "final_trial": 20,
                              "test_accuracy": 0.9},
                             {"label": "search #3", "final_value": 0.95, "final_trial": 21},
                             {"label": "none", "final_value": 0.97, "final_trial": 22,
                              "test_accuracy": 0.96}]}  # fmt: skip
    done = final_pick(trials, result)
    assert done is not None and done["done"] == 3 and done["kendall_tau"] == -1.0
    assert [r["winner"] for r in done["contenders"]] == [False, False, True]
    assert done["contenders"][2]["test_accuracy"] == 0.96
    assert done["proxy_reliable"] is False
    agreed = final_pick(trials, {**result, "winner": "search #5", "kendall_tau": 0.8})
    assert agreed is not None and agreed["proxy_reliable"] is True
    assert final_pick(_mid_search(), None) is None


def test_each_queued_training_pays_the_workers_handover() -> None:
    spec = _spec(n_trials=4, baselines=[], final_pick={"candidates": 1, "presets": 0})
    trials = []
    for i in range(2):  # one worker: 10 s trainings, 1 s from one to the next
        t = _trial(i, "search", TrialState.COMPLETE, 10.0, 0.5, 4, budget_claim=True, worker="w")
        t.datetime_start = NOW + timedelta(seconds=11 * i)
        t.datetime_complete = t.datetime_start + timedelta(seconds=10)
        trials.append(t)
    # Two search trainings and one final (same recipe length x 3) left, one lane, 1 s each.
    assert eta_s(trials, spec, "open", lanes=1, now=NOW) == pytest.approx(2 * 11 + 31)
