"""Faults on PostgreSQL: SIGKILL mid-trial, SIGTERM to a multi-worker parent, raising trials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from scaletools import (
    assert_budget_exact,
    assert_retried,
    drive,
    fixed_spec,
    start_worker,
    stop_all,
    trials_of,
    wait_for,
)

from search import lifecycle
from search.objective import FixedLengthTrial
from search.storage import make_storage
from search.worker import Worker
from search.worker_registry import workers_alive

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _running(storage: optuna.storages.BaseStorage, sid: str) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials_of(storage, sid) if t.state == TrialState.RUNNING]


def test_sigkilled_trial_is_retried_by_another_worker_with_the_same_params(
    pg_url: str, tmp_path: Path
) -> None:
    storage = make_storage(pg_url, heartbeat_interval=1, grace_period=4)
    lifecycle.create_search_study(storage, "kill", fixed_spec(3, parallelism=1))
    victim = start_worker(pg_url, tmp_path / "art", "victim", seconds=30, steps=30)
    survivor: subprocess.Popen[bytes] | None = None
    try:
        wait_for(
            lambda: any(t.intermediate_values for t in _running(storage, "kill")),
            60,
            "the victim to be mid-trial",
        )
        killed = _running(storage, "kill")[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        survivor = start_worker(pg_url, tmp_path / "art", "survivor", seconds=0.5, max_idle=3)
        drive(storage, ["kill"], timeout_s=90)
        assert survivor.wait(timeout=30) == 0
    finally:
        stop_all([victim] + ([survivor] if survivor else []))
    trials = trials_of(storage, "kill")
    assert_budget_exact(trials, 3)
    failed = trials[killed.number]
    assert failed.state == TrialState.FAIL
    retry = assert_retried(trials, killed.number, "survivor")
    assert retry.system_attrs["retry_history"] == [killed.number]


def test_sigterm_to_the_parent_drains_every_worker_and_exits_zero(
    pg_url: str, tmp_path: Path
) -> None:
    storage = make_storage(pg_url, heartbeat_interval=1)
    lifecycle.create_search_study(storage, "term", fixed_spec(4, parallelism=2))
    code = (
        "import sys\n"
        "from search.objective import FixedLengthTrial\n"
        "from search.fleet import run_worker_processes\n"
        f"sys.exit(run_worker_processes({pg_url!r}, ['cpu', 'cpu'], {str(tmp_path)!r}, "
        "heartbeat_interval=1, poll_interval=0.2, train_fn=FixedLengthTrial(60, 60)))\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], env={**os.environ})
    try:
        wait_for(lambda: len(_running(storage, "term")) == 2, 90, "both workers to start")
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 0
    finally:
        stop_all([parent])
    trials = trials_of(storage, "term")
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stopped) == 2
    assert {t.user_attrs["error"] for t in stopped} == {"TrialStopped: worker terminated"}
    retries = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs["failed_trial"] for t in retries) == sorted(
        t.number for t in stopped
    )
    assert not _running(storage, "term")
    assert set(workers_alive(storage)) <= {"victim", "survivor"}  # the earlier test's


def test_a_trial_that_raises_is_failed_with_its_error_and_the_worker_goes_on(
    pg_url: str, tmp_path: Path
) -> None:
    storage = make_storage(pg_url, heartbeat_interval=1)
    folder = tmp_path / "gone"
    folder.mkdir()
    spec = fixed_spec(1, dataset={"source": "imagefolder", "path": str(folder)})
    lifecycle.create_search_study(storage, "bad", spec)
    lifecycle.create_search_study(storage, "good", fixed_spec(1, seed=3))
    # A real training of the "bad" search: its dataset folder holds no image, so loading fails.
    worker = Worker(pg_url, artifact_store=tmp_path / "art", heartbeat_interval=1,
                    poll_interval=0.1, max_trials=2, search_ids=["bad"])  # fmt: skip
    assert worker.run(max_idle=1.0) == 2
    bad = trials_of(storage, "bad")
    assert [t.state for t in bad] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs["error"] for t in bad), [t.user_attrs for t in bad]
    # The same process serves the next search.
    worker.search_ids = {"good"}
    worker.objective.train_fn = FixedLengthTrial(0.2, 1)
    worker.max_trials = None
    worker.run(max_idle=1.0)
    drive(storage, ["good"], timeout_s=30)
