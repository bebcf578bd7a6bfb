"""Many workers on PostgreSQL: concurrent searches share the fleet, budgets stay exact."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from optuna.trial import TrialState
from scaletools import (
    assert_budget_exact,
    drive,
    fixed_spec,
    start_worker,
    stop_all,
    trials_of,
)

from search import lifecycle
from search.objective import FixedLengthTrial
from search.storage import make_storage
from search.worker import Worker
from search.worker_registry import workers_alive

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_four_workers_share_two_searches_with_exact_budgets(pg_url: str, tmp_path: Path) -> None:
    storage = make_storage(pg_url, heartbeat_interval=1)
    lifecycle.create_search_study(storage, "fa", fixed_spec(6, parallelism=3))
    lifecycle.create_search_study(storage, "fb", fixed_spec(6, parallelism=3, seed=1))
    procs = [
        start_worker(pg_url, tmp_path / "art", f"w{i}", seconds=0.8, max_idle=4.0) for i in range(4)
    ]
    try:
        drive(storage, ["fa", "fb"], timeout_s=120)
        assert set(workers_alive(storage)) <= {f"w{i}" for i in range(4)}
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        stop_all(procs)
    by_worker: Counter[str] = Counter()
    for sid in ("fa", "fb"):
        trials = trials_of(storage, sid)
        assert_budget_exact(trials, 6)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        workers = Counter(str(t.user_attrs["worker"]) for t in done)
        assert len(workers) > 1, f"search {sid} ran on one worker only: {workers}"
        by_worker.update(workers)
    assert set(by_worker) == {f"w{i}" for i in range(4)}, by_worker
    assert workers_alive(pg_url) == {}  # a URL works too; everyone has stopped


def test_eight_workers_racing_for_the_last_trial_complete_exactly_the_budget(
    pg_url: str, tmp_path: Path
) -> None:
    storage = make_storage(pg_url, heartbeat_interval=2)
    budget = 3
    lifecycle.create_search_study(storage, "race", fixed_spec(budget, parallelism=16))
    gate = threading.Barrier(8)
    # Every worker starts at once and ends its trial at the same moment, so all eight race
    # for the three slots at their start check and again at their end check.
    workers = [
        Worker(
            pg_url,
            artifact_store=tmp_path / "art",
            name=f"r{i}",
            heartbeat_interval=2,
            poll_interval=0.1,
            search_ids=["race"],
            train_fn=FixedLengthTrial(0.5, 1),
        )
        for i in range(8)
    ]

    def serve(worker: Worker) -> None:
        gate.wait()
        worker.run(max_idle=1.5)

    threads = [threading.Thread(target=serve, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    search = [t for t in trials_of(storage, "race") if lifecycle.role_of(t) == "search"]
    assert sum(t.state == TrialState.COMPLETE for t in search) == budget
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in search)
    assert sum(t.state == TrialState.PRUNED for t in search) >= 8 - budget  # they did race
    lifecycle.advance(storage, "race")  # enqueues the final training
    workers[0].run(max_idle=1.0)
    drive(storage, ["race"], timeout_s=30)
    assert_budget_exact(trials_of(storage, "race"), budget)
