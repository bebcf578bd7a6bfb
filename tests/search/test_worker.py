"""Worker processes: a SIGKILLed worker's trial is failed and retried; SIGTERM stops cleanly;
the loop runs trials back to back; a trial's attrs are written a few at a time; the worker's
TPE saves storage reads, not model inputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from search import lifecycle
from search.objective import FixedLengthTrial
from search.spec import SearchSpec
from search.storage import make_storage, set_trial_params, set_trial_user_attrs
from search.strategies import get_strategy, make_sampler
from search.worker import Worker
from search.worker_registry import workers_alive

pytestmark = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _spec(epochs: int) -> SearchSpec:
    return SearchSpec.model_validate(
        {
            "dataset": {"source": "digits"},
            "strategy": "randaugment",
            "n_trials": 1,
            "baselines": [],
            "sampler": "random",
            "train_size": 200,
            "recipe": {"arch": "resnet8", "epochs": epochs, "batch_size": 64},
        }
    )


def _start_worker(url: str, art: Path, train_fn: str = "None") -> subprocess.Popen[bytes]:
    code = (
        "from search.fleet import run_worker\n"
        "from search.objective import FixedLengthTrial\n"
        f"run_worker({url!r}, 'cpu', {str(art)!r}, heartbeat_interval=1, grace_period=2, "
        f"poll_interval=0.2, name='victim', train_fn={train_fn})\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )


def _wait_running(storage: optuna.storages.RDBStorage, search_id: str, min_epochs: int) -> None:
    study = optuna.load_study(study_name=lifecycle.study_name(search_id), storage=storage)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        running = study.get_trials(states=(TrialState.RUNNING,))
        if running and len(running[0].user_attrs.get("epochs", [])) >= min_epochs:
            return
        time.sleep(0.1)
    raise AssertionError("the worker never started a trial")


def _trials(storage: optuna.storages.BaseStorage, search_id: str) -> list[FrozenTrial]:
    study = optuna.load_study(study_name=lifecycle.study_name(search_id), storage=storage)
    return study.get_trials(deepcopy=False)


def test_sigkill_leaves_a_trial_that_is_failed_and_retried(tmp_path: Path) -> None:
    url, art = f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "art"
    storage = lifecycle.make_storage(url, heartbeat_interval=1, grace_period=2)
    lifecycle.create_search_study(storage, "k1", _spec(epochs=3))
    proc = _start_worker(url, art)
    _wait_running(storage, "k1", min_epochs=0)
    assert "victim" in workers_alive(url)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="search-k1", storage=storage)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]
    time.sleep(3.0)
    assert lifecycle.fail_stale(storage, "k1") == [0]
    killed, retry = study.get_trials()
    assert killed.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert retry.params == killed.params
    Worker(url, "cpu", art, heartbeat_interval=1, poll_interval=0.2, max_trials=1).run(max_idle=0)
    retried = study.get_trials()[1]
    assert retried.state == TrialState.COMPLETE and retried.params == killed.params
    assert retried.system_attrs["retry_history"] == [0]


def test_sigterm_fails_the_trial_cleanly_and_exits_zero(tmp_path: Path) -> None:
    url, art = f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "art"
    storage = lifecycle.make_storage(url, heartbeat_interval=1, grace_period=2)
    lifecycle.create_search_study(storage, "t1", _spec(epochs=20))
    proc = _start_worker(url, art)
    _wait_running(storage, "t1", min_epochs=1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    study = optuna.load_study(study_name="search-t1", storage=storage)
    stopped, retry = study.get_trials()
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs["error"] == "TrialStopped: worker terminated"
    assert len(stopped.user_attrs["epochs"]) < 20
    assert retry.state == TrialState.WAITING and retry.params == stopped.params
    assert "victim" not in workers_alive(url)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_stopped_worker_hands_its_trial_back_whatever_retries_it_used(
    tmp_path: Path, sig: signal.Signals
) -> None:
    url, art = f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "art"
    storage = lifecycle.make_storage(url, heartbeat_interval=1, grace_period=2)
    spec = _spec(epochs=1).model_copy(update={"baselines": ["none"]})
    study = lifecycle.create_search_study(storage, "h1", spec)
    (baseline,) = study.get_trials()
    # Retried twice already (after stale heartbeats): a stop is not its fault, it goes back.
    storage.set_trial_system_attr(baseline._trial_id, "retry_history", [7, 8])
    proc = _start_worker(url, art, train_fn="FixedLengthTrial(60, 60)")
    deadline = time.monotonic() + 90
    while not study.get_trials()[0].intermediate_values:  # a step of the baseline is done
        assert time.monotonic() < deadline and proc.poll() is None, "no trial started"
        time.sleep(0.1)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 0
    stopped, back = study.get_trials()
    assert stopped.state == TrialState.FAIL and len(stopped.intermediate_values) < 60
    assert stopped.user_attrs["error"] == "TrialStopped: worker terminated"
    assert stopped.user_attrs[lifecycle.STOPPED_ATTR] is True  # not counted as a failure
    assert back.state == TrialState.WAITING and back.params == stopped.params
    assert back.user_attrs["role"] == "baseline"
    assert back.system_attrs["retry_history"] == [7, 8, stopped.number]
    assert "victim" not in workers_alive(url)


def test_a_worker_runs_trials_back_to_back_and_the_final_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    spec = SearchSpec.model_validate(
        {"dataset": {"source": "digits"}, "strategy": "randaugment", "n_trials": 8,
         "baselines": [], "sampler": "tpe", "pruner": "none", "parallelism": 1}
    )  # fmt: skip
    storage = lifecycle.make_storage(url, heartbeat_interval=5)
    lifecycle.create_search_study(storage, "b2b", spec)
    # A poll interval longer than the whole search: the worker waits only when it is idle.
    worker = Worker(url, "cpu", tmp_path / "art", heartbeat_interval=5, poll_interval=30,
                    name="b2b", train_fn=FixedLengthTrial(0.0, 2))  # fmt: skip
    start = time.monotonic()
    # 8 search trials (TPE after 3), then the final pick's two best searched policies.
    assert worker.run(max_idle=0) == 10
    assert time.monotonic() - start < 30
    status = lifecycle.status(storage, "b2b")
    assert status.state == "done"
    assert status.count("search", "COMPLETE") == 8 and status.count("final", "COMPLETE") == 2
    search = [t for t in _trials(storage, "b2b") if lifecycle.role_of(t) == "search"]
    attrs = {"role", "worker", "device", "policy", "budget_claim", "duration_s"}
    strategy = get_strategy(spec.strategy, spec)
    for t in search:
        assert attrs <= set(t.user_attrs), t.user_attrs
        assert set(t.params) == set(strategy.distributions())  # written together, all there
        policy = strategy.policy_from_params(t.params).model_dump(mode="json")
        assert t.user_attrs["policy"] == policy
        assert t.user_attrs["worker"] == "b2b" and sorted(t.intermediate_values) == [1, 2]


def test_a_starting_point_that_is_a_baseline_reuses_its_result(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    spec = SearchSpec.model_validate(
        {"dataset": {"source": "digits"}, "strategy": "randaugment", "n_trials": 3,
         "baselines": ["none", "randaugment-2-9"], "sampler": "tpe", "parallelism": 1}
    )  # fmt: skip
    storage = lifecycle.make_storage(url, heartbeat_interval=5)
    lifecycle.create_search_study(storage, "reuse", spec)
    worker = Worker(url, "cpu", tmp_path / "art", heartbeat_interval=5, poll_interval=30,
                    name="reuse", train_fn=FixedLengthTrial(0.0, 2))  # fmt: skip
    worker.run(max_idle=0)
    assert lifecycle.status(storage, "reuse").state == "done"
    trials = _trials(storage, "reuse")
    (baseline,) = [t for t in trials if t.user_attrs.get("baseline") == "randaugment-2-9"]
    search = [t for t in trials if lifecycle.role_of(t) == "search"]
    assert len(search) == 3 and all(t.state == TrialState.COMPLETE for t in search)
    start = search[0]
    assert start.user_attrs["start_point"] == "randaugment-2-9"
    assert start.params["n"] == 2 and start.params["m"] == 9 and start.params["m_std"] == 0.0
    assert start.user_attrs["policy"] == baseline.user_attrs["policy"]
    # Its result is the baseline's, not a training of its own (whose value would differ).
    assert start.user_attrs[lifecycle.REUSED_ATTR] == baseline.number
    assert start.value == baseline.value
    assert start.intermediate_values == baseline.intermediate_values
    assert FixedLengthTrial(0.0, 2)(_Probe(start.params), "search", lambda: None) != start.value
    # The other search trials trained: they reuse nothing.
    assert all(lifecycle.REUSED_ATTR not in t.user_attrs for t in search[1:])


@dataclass
class _Probe:
    """What `FixedLengthTrial` reads of a trial: its params (it reports nothing at 0 steps)."""

    params: dict[str, Any]

    def report(self, value: float, step: int) -> None:
        pass


def test_several_attrs_and_params_are_written_together_and_never_to_a_finished_trial(
    tmp_path: Path,
) -> None:
    storage = optuna.storages.get_storage(
        make_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat_interval=None)
    )
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    set_trial_user_attrs(storage, trial._trial_id, {"a": 1, "b": {"x": [1, 2]}})
    set_trial_user_attrs(storage, trial._trial_id, {"a": 2, "c": "z"})
    assert storage.get_trial(trial._trial_id).user_attrs == {"a": 2, "b": {"x": [1, 2]}, "c": "z"}
    x, flag = FloatDistribution(0, 1), CategoricalDistribution([False, True])
    set_trial_params(storage, trial._trial_id, [("x", 0.5, x), ("flag", 1.0, flag)])
    assert storage.get_trial(trial._trial_id).params == {"x": 0.5, "flag": True}
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_trial_user_attrs(storage, trial._trial_id, {"a": 3, "d": 4})
    other = study.ask()
    with pytest.raises(ValueError):  # the study's "x" is a float in [0, 1]
        set_trial_params(storage, other._trial_id, [("x", 1.0, IntDistribution(0, 3)), ("y", 0, x)])


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # group=True
def test_the_workers_tpe_draws_what_grouped_tpe_draws() -> None:
    # The static space and the trial snapshot save storage reads, not model inputs: with a
    # parameterless baseline and a running trial for the constant liar, the draws are equal.
    spec = SearchSpec.model_validate(
        {"dataset": {"source": "digits"}, "strategy": "randaugment", "n_trials": 100,
         "baselines": ["none"], "sampler": "tpe", "pruner": "none"}
    )  # fmt: skip
    strategy = get_strategy(spec.strategy, spec)
    space = strategy.distributions()
    startup = len(spec.baselines) + max(3, min(10, spec.n_trials // 3))
    draws = []
    for sampler in (
        make_sampler(spec, strategy, seed=7),
        optuna.samplers.TPESampler(seed=7, multivariate=True, group=True, n_startup_trials=startup),
    ):
        study = optuna.create_study(sampler=sampler, direction="maximize")
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
        reference = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for i in range(30):
            params = reference.ask(space).params
            study.add_trial(
                optuna.trial.create_trial(params=params, distributions=space, value=i % 7 / 7)
            )
        strategy.suggest(study.ask())  # left running
        drawn = []
        for i in range(8):
            trial = study.ask()
            strategy.suggest(trial)
            drawn.append(trial.params)
            study.tell(trial, i / 8)
        draws.append(drawn)
    assert draws[0] == draws[1]


def _run_until_running(tmp_path: Path, search_id: str) -> tuple[Any, Worker, Any]:
    """A worker thread on a one-trial search, returned once its trial is running."""
    import threading

    url = f"sqlite:///{tmp_path / 'o.db'}"
    storage = lifecycle.make_storage(url, heartbeat_interval=5)
    lifecycle.create_search_study(storage, search_id, _spec(2))
    worker = Worker(url, "cpu", tmp_path / "art", heartbeat_interval=5, poll_interval=0.1,
                    name=search_id, train_fn=FixedLengthTrial(8.0, 40))  # fmt: skip
    thread = threading.Thread(target=worker.run, kwargs={"max_idle": 0})
    thread.start()
    study = optuna.load_study(study_name=lifecycle.study_name(search_id), storage=storage)
    deadline = time.monotonic() + 30
    while not any(t.state == TrialState.RUNNING for t in study.get_trials()):
        assert time.monotonic() < deadline, "the trial never started"
        time.sleep(0.05)
    return study, worker, thread


def test_a_running_trial_stops_when_its_search_is_answered(tmp_path: Path) -> None:
    # A preset's perfect final ends a search while search trials run (lifecycle): they stop
    # at their next epoch, pruned, instead of training to the end.
    study, _, thread = _run_until_running(tmp_path, "answered")
    start = time.monotonic()
    study.set_user_attr("state", lifecycle.DONE)
    thread.join(timeout=30)
    assert time.monotonic() - start < 4  # the trial was planned to run 8 s
    (trial,) = study.get_trials()
    assert trial.state == TrialState.PRUNED


def test_a_stopped_worker_hands_back_no_trial_of_an_ended_search(tmp_path: Path) -> None:
    study, worker, thread = _run_until_running(tmp_path, "ended")
    study.set_user_attr("state", lifecycle.CANCELLED)
    worker.stop_event.set()  # SIGTERM, as the runner sends once the search is over
    thread.join(timeout=30)
    # Stopped by its worker, but its search is over: no copy waits to run elsewhere.
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]
