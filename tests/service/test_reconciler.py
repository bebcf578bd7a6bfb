"""The reconciler against real Optuna studies: creation, idempotence, cancel/resume, leadership."""

from __future__ import annotations

from typing import Any

import optuna
from fastapi.testclient import TestClient

from service.leader import LeaderLock
from service.reconciler import Reconciler
from service.runtime import Runtime

SPEC = {
    "strategy": "randaugment",
    "n_trials": 2,
    "recipe": {"epochs": 1},
    "baselines": ["none", "randaugment-2-9"],
}


def _study(runtime: Runtime, search_id: int) -> optuna.Study:
    return optuna.load_study(study_name=f"search-{search_id}", storage=runtime.storage)


def _launch(client: TestClient, digits: dict[str, Any]) -> int:
    response = client.post("/api/v1/searches", json={"dataset_id": digits["id"], "spec": SPEC})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_queued_search_gets_its_study_and_passes_are_idempotent(
    client: TestClient, runtime: Runtime, digits: dict[str, Any], reconciler: Reconciler
) -> None:
    sid = _launch(client, digits)
    assert reconciler.run_once() == 1
    study = _study(runtime, sid)
    assert study.user_attrs["state"] == "open"
    # The two baselines and RandAugment(2, 9) as the first search trial, waiting for a worker.
    assert len(study.trials) == 3
    for _ in range(2):
        reconciler.run_once()
    assert len(_study(runtime, sid).trials) == 3
    search = client.get(f"/api/v1/searches/{sid}").json()
    assert search["state"] == "running" and search["started_at"] is not None
    assert search["progress"]["waiting"] == 3
    assert set(search["progress"]["baselines"]) == {"none", "randaugment-2-9"}
    trials = client.get(f"/api/v1/searches/{sid}/trials").json()
    assert trials["total"] == 3
    items = trials["items"]
    assert [t["role"] for t in items] == ["baseline", "baseline", "search"]
    assert {t["baseline"] for t in items[:2]} == {"none", "randaugment-2-9"}
    assert all(t["state"] == "WAITING" for t in items)
    assert trials["items"][0]["policy"]["schema_version"] == 1


def test_cancel_closes_the_study_and_resume_reopens_it(
    client: TestClient, runtime: Runtime, digits: dict[str, Any], reconciler: Reconciler
) -> None:
    sid = _launch(client, digits)
    reconciler.run_once()
    client.post(f"/api/v1/searches/{sid}/cancel")
    assert reconciler.run_once() == 1
    assert _study(runtime, sid).user_attrs["state"] == "cancelled"
    assert reconciler.run_once() == 0  # nothing left to do for it
    assert client.get(f"/api/v1/searches/{sid}").json()["state"] == "cancelled"
    client.post(f"/api/v1/searches/{sid}/resume")
    reconciler.run_once()
    assert _study(runtime, sid).user_attrs["state"] == "open"
    assert client.get(f"/api/v1/searches/{sid}").json()["state"] == "running"
    assert len(_study(runtime, sid).trials) == 3  # resuming enqueues nothing twice


def test_deleting_a_finished_search_removes_its_study(
    client: TestClient, runtime: Runtime, digits: dict[str, Any], reconciler: Reconciler
) -> None:
    sid = _launch(client, digits)
    reconciler.run_once()
    client.post(f"/api/v1/searches/{sid}/cancel")
    reconciler.run_once()
    reconciler.leader.release()
    assert client.delete(f"/api/v1/searches/{sid}").status_code == 204
    assert f"search-{sid}" not in optuna.get_all_study_names(runtime.storage)


def test_only_one_leader_reconciles(
    client: TestClient, runtime: Runtime, digits: dict[str, Any]
) -> None:
    _launch(client, digits)
    first, second = Reconciler(runtime), Reconciler(runtime)
    try:
        assert first.run_once() == 1
        assert second.run_once() == 0
        first.leader.release()
        assert second.run_once() == 1
    finally:
        first.leader.release()
        second.leader.release()


def test_leader_lock_is_exclusive_and_reentrant(runtime: Runtime) -> None:
    lock_file = runtime.settings.data_dir / "other.lock"
    a, b = LeaderLock(runtime.engine, lock_file), LeaderLock(runtime.engine, lock_file)
    try:
        assert a.try_acquire() and a.try_acquire()
        assert not b.try_acquire()
        a.release()
        assert b.try_acquire() and not a.try_acquire()
    finally:
        a.release()
        b.release()
