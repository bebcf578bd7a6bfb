"""Worker processes: a SIGKILLed worker's trial is failed and retried; SIGTERM stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search import lifecycle
from search.spec import SearchSpec
from search.worker import Worker, workers_alive

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


def _start_worker(url: str, art: Path) -> subprocess.Popen[bytes]:
    code = (
        "from search.fleet import run_worker\n"
        f"run_worker({url!r}, 'cpu', {str(art)!r}, heartbeat_interval=1, grace_period=2, "
        "poll_interval=0.2, name='victim')\n"
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
