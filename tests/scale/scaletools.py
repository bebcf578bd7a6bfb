"""Helpers of the scale-out tests: worker processes running the real worker loop with
fixed-length trials, a stand-in for the reconciler, and checks of the budget invariants."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from search import lifecycle
from search.spec import SearchSpec


def fixed_spec(n_trials: int, **overrides: Any) -> SearchSpec:
    """A search whose trials are dispatch-only (the workers run `FixedLengthTrial`)."""
    fields: dict[str, Any] = {
        "dataset": {"source": "digits"},
        "strategy": "randaugment",
        "n_trials": n_trials,
        "baselines": [],
        "sampler": "random",
        "pruner": "none",
        "parallelism": 8,
        "final_pick": {"candidates": 1, "presets": 0},
    }
    return SearchSpec.model_validate({**fields, **overrides})


def start_worker(
    url: str,
    art: Path,
    name: str,
    *,
    seconds: float = 1.0,
    steps: int = 4,
    max_idle: float = 8.0,
    heartbeat: int = 1,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """One worker process: the real `Worker` loop with a fixed-length trial."""
    code = (
        "from search.objective import FixedLengthTrial\n"
        "from search.fleet import run_worker\n"
        f"run_worker({url!r}, 'cpu', {str(art)!r}, heartbeat_interval={heartbeat}, "
        f"grace_period={4 * heartbeat}, poll_interval=0.2, name={name!r}, "
        f"max_idle={max_idle}, train_fn=FixedLengthTrial({seconds}, {steps}))\n"
    )
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Kill what is still running (test clean-up)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``check`` until it holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def drive(storage: BaseStorage, search_ids: list[str], timeout_s: float) -> None:
    """Do the reconciler's job until every search is done: reap stale trials and advance."""

    def all_done() -> bool:
        states = []
        for sid in search_ids:
            lifecycle.fail_stale(storage, sid)
            states.append(lifecycle.advance(storage, sid).state)
        assert lifecycle.FAILED not in states, [
            lifecycle.status(storage, s).error for s in search_ids
        ]
        return all(s == lifecycle.DONE for s in states)

    wait_for(all_done, timeout_s, f"searches {search_ids} to finish")


def trials_of(storage: BaseStorage, search_id: str) -> list[FrozenTrial]:
    """Every trial of a search."""
    study = optuna.load_study(study_name=lifecycle.study_name(search_id), storage=storage)
    return study.get_trials(deepcopy=False)


def describe(trials: list[FrozenTrial]) -> str:
    """One line per trial: number, state, role, worker, retry source (failure messages)."""
    return "\n".join(
        f"{t.number} {t.state.name} {lifecycle.role_of(t)} {t.user_attrs.get('worker')} "
        f"from={t.system_attrs.get('failed_trial')} err={t.user_attrs.get('error')}"
        for t in trials
    )


def assert_budget_exact(trials: list[FrozenTrial], n_trials: int) -> None:
    """Exactly ``n_trials`` complete search trials, one final, no trial completed twice."""
    table = describe(trials)
    search = [t for t in trials if lifecycle.role_of(t) == "search"]
    complete = [t for t in search if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials, table
    # A retry has its own number: it must neither redo a completed trial nor complete twice.
    done = {t.number for t in complete}
    sources = [t.system_attrs["failed_trial"] for t in complete if "failed_trial" in t.system_attrs]
    assert len(sources) == len(set(sources)), table
    assert not done & set(sources), table
    # Concurrent advances may enqueue the final twice: exactly one runs, duplicates prune.
    finals = [t for t in trials if lifecycle.role_of(t) == "final"]
    assert sorted(t.state.name for t in finals if t.state != TrialState.PRUNED) == ["COMPLETE"], (
        table
    )


def assert_retried(trials: list[FrozenTrial], failed: int, worker: str) -> FrozenTrial:
    """The retry of trial ``failed`` completed with the same params, on ``worker``."""
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == failed)
    assert retry.state == TrialState.COMPLETE and retry.params == trials[failed].params
    assert retry.user_attrs["worker"] == worker
    return retry
