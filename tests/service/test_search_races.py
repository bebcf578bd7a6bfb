"""Concurrent writers of a search row: a cancel racing the reconciler always holds.

The API's cancel and the reconciler's pass start together on a freshly launched search, many
times, on SQLite and on PostgreSQL. Whatever the interleaving, the search ends cancelled and a
worker finds nothing to train (its study was never opened, or it is closed).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm.exc import StaleDataError

from search.lifecycle import ACTIVE_STATES
from search.worker import Worker
from service.db.models import Search
from service.reconciler import Reconciler
from service.runtime import Runtime
from service.searches import service as searches
from service.searches.states import STUDY_OPENING, SearchState, move

SPEC = {"strategy": "randaugment", "n_trials": 2, "recipe": {"epochs": 1}, "baselines": ["none"]}
ROUNDS = 30


def _launch(client: TestClient, digits: dict[str, Any]) -> int:
    body = {"dataset_id": digits["id"], "spec": SPEC}
    return int(client.post("/api/v1/searches", json=body).json()["id"])


def test_a_write_from_a_stale_read_fails_instead_of_undoing_a_cancel(
    client: TestClient, runtime: Runtime, digits: dict[str, Any]
) -> None:
    search_id = _launch(client, digits)
    stale = runtime.sessions()
    try:
        row = stale.get(Search, search_id)
        assert row is not None and row.state == "queued"  # what the reconciler read
        assert client.post(f"/api/v1/searches/{search_id}/cancel").status_code == 200
        move(row, SearchState.RUNNING)
        with pytest.raises(StaleDataError):
            stale.commit()
    finally:
        stale.close()
    assert client.get(f"/api/v1/searches/{search_id}").json()["state"] == "cancelled"


def test_a_cancel_decides_again_on_the_row_another_writer_changed(
    client: TestClient, runtime: Runtime, digits: dict[str, Any]
) -> None:
    search_id = _launch(client, digits)
    user = runtime.local_user
    assert user is not None
    with runtime.transaction() as session:
        assert searches.get(session, search_id, user).state == "queued"  # read, then stale
        with runtime.transaction() as reconciler:  # claims the start meanwhile
            claimed = reconciler.get(Search, search_id)
            assert claimed is not None
            move(claimed, SearchState.RUNNING)
            claimed.study_state = STUDY_OPENING
        cancelled = searches.cancel(session, search_id, user)
        assert cancelled.state == "cancelled" and cancelled.started_at is not None
    with runtime.transaction() as session:
        row = session.get(Search, search_id)
        assert row is not None
        # Both writes kept: the claim's study state and the cancel on top of it.
        assert (row.state, row.study_state, row.version) == ("cancelled", STUDY_OPENING, 3)


def _race(client: TestClient, reconciler: Reconciler, search_id: int) -> int:
    """Cancel ``search_id`` while the reconciler passes over it; the cancel's status code."""
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def cancel() -> None:
        barrier.wait()
        answers.append(client.post(f"/api/v1/searches/{search_id}/cancel").status_code)

    def reconcile() -> None:
        barrier.wait()
        reconciler.run_once()

    threads = [threading.Thread(target=cancel), threading.Thread(target=reconcile)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers[0]


def _study_state(runtime: Runtime, search_id: int) -> str | None:
    try:
        study = optuna.load_study(study_name=f"search-{search_id}", storage=runtime.storage)
    except KeyError:
        return None
    return str(study.user_attrs.get("state"))


def test_cancel_racing_the_reconciler_always_holds(
    client: TestClient,
    runtime: Runtime,
    digits: dict[str, Any],
    reconciler: Reconciler,
    tmp_path: Path,
) -> None:
    trained: list[str] = []

    def train(trial: optuna.Trial, role: str, check_stop: Any) -> float:
        trained.append(f"{trial.study.study_name}#{trial.number}")
        return 0.5

    worker = Worker(
        runtime.settings.optuna_storage_url,
        artifact_store=tmp_path / "artifacts",
        train_fn=train,
        heartbeat_interval=1,
        max_trials=1,
    )
    lost = []
    for _ in range(ROUNDS):
        search_id = _launch(client, digits)
        assert _race(client, reconciler, search_id) == 200
        reconciler.run_once()  # the next pass, as the background loop would run it
        worker.run(max_idle=0)  # trains one trial if any search has work
        state = client.get(f"/api/v1/searches/{search_id}").json()["state"]
        study_state = _study_state(runtime, search_id)
        if state != "cancelled" or study_state in ACTIVE_STATES or trained:
            lost.append((search_id, state, study_state, list(trained)))
            trained.clear()
            client.post(f"/api/v1/searches/{search_id}/cancel")  # stay under the quota
            reconciler.run_once()
    assert lost == [], f"{len(lost)} of {ROUNDS} cancels lost: {lost}"
