"""Fixtures of the scale-out tests: a fresh PostgreSQL database per module, worker processes
running the real worker loop with fixed-length trials, and checks of the budget invariants."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import create_engine, make_url, text

from search import lifecycle
from search.spec import SearchSpec

PG_ENV = "AUGSEARCH_TEST_POSTGRES_URL"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _admin_url() -> str:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set")
    return make_url(base).set(database="postgres").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this module (created via ``postgres``, dropped after)."""
    admin_url = _admin_url()
    name = f"augsearch_scale_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        # The server may just have restarted: retry the drop for a while.
        for attempt in range(30):
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except Exception:
                if attempt == 29:
                    raise
                time.sleep(1)
        admin.dispose()


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
        "from search.worker import run_worker\n"
        f"run_worker({url!r}, 'cpu', {str(art)!r}, heartbeat_interval={heartbeat}, "
        f"grace_period={2 * heartbeat}, poll_interval=0.2, name={name!r}, "
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
        assert lifecycle.FAILED not in states, states
        return all(s == lifecycle.DONE for s in states)

    wait_for(all_done, timeout_s, f"searches {search_ids} to finish")


def trials_of(storage: BaseStorage, search_id: str) -> list[FrozenTrial]:
    """Every trial of a search."""
    study = optuna.load_study(study_name=lifecycle.study_name(search_id), storage=storage)
    return study.get_trials(deepcopy=False)


def assert_budget_exact(trials: list[FrozenTrial], n_trials: int) -> None:
    """Exactly ``n_trials`` complete search trials, one final, no trial completed twice."""
    search = [t for t in trials if lifecycle.role_of(t) == "search"]
    complete = [t for t in search if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials, [(t.number, t.state.name) for t in search]
    numbers = [t.number for t in trials if t.state == TrialState.COMPLETE]
    assert len(numbers) == len(set(numbers))
    # A retry has its own number: it must neither redo a completed trial nor complete twice.
    done = {t.number for t in complete}
    sources = [t.system_attrs["failed_trial"] for t in complete if "failed_trial" in t.system_attrs]
    assert len(sources) == len(set(sources)) and not done & set(sources)
    finals = [t for t in trials if lifecycle.role_of(t) == "final"]
    assert [t.state for t in finals] == [TrialState.COMPLETE]
