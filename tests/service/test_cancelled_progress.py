"""A cancelled search's progress follows its trials as they end after the cancel."""

from __future__ import annotations

import time
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from optuna.trial import TrialState, create_trial

from search.lifecycle import StudyStatus
from search.spec import SearchSpec
from service.reconciler import Reconciler
from service.runtime import Runtime
from service.searches.sync import progress

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")

SPEC = {
    "strategy": "randaugment",
    "n_trials": 3,
    "sampler": "random",
    "recipe": {"epochs": 1},
    "baselines": ["none"],
}


def _running_search(
    client: TestClient, runtime: Runtime, digits: dict[str, Any], reconciler: Reconciler
) -> tuple[int, optuna.Study, list[optuna.Trial]]:
    """A search with its baseline and one search trial running, as two workers leave them."""
    body = {"dataset_id": digits["id"], "spec": SPEC}
    search_id = int(client.post("/api/v1/searches", json=body).json()["id"])
    reconciler.run_once()
    study = optuna.load_study(study_name=f"search-{search_id}", storage=runtime.storage)
    baseline, searched = study.ask(), study.ask()
    assert baseline.user_attrs["role"] == "baseline" and "role" not in searched.user_attrs
    return search_id, study, [baseline, searched]


def _shown(client: TestClient, search_id: int) -> tuple[dict[str, Any], list[str]]:
    search = client.get(f"/api/v1/searches/{search_id}").json()
    trials = client.get(f"/api/v1/searches/{search_id}/trials").json()["items"]
    return search["progress"], [t["state"] for t in trials]


def test_trials_ending_after_a_cancel_leave_the_running_count(
    client: TestClient, runtime: Runtime, digits: dict[str, Any], reconciler: Reconciler
) -> None:
    search_id, study, (baseline, searched) = _running_search(client, runtime, digits, reconciler)
    assert client.post(f"/api/v1/searches/{search_id}/cancel").status_code == 200
    reconciler.run_once()
    progress, states = _shown(client, search_id)
    assert progress["running"] == 2 and states == ["RUNNING", "RUNNING"]
    # The workers stop them between epochs: one pruned, the other failed (stopped).
    study.tell(searched, state=TrialState.PRUNED)
    study.tell(baseline, state=TrialState.FAIL)
    reconciler.run_once()
    progress, states = _shown(client, search_id)
    assert (progress["running"], progress["pruned"], progress["failed"]) == (0, 1, 1)
    assert states == ["FAIL", "PRUNED"]
    assert client.get(f"/api/v1/searches/{search_id}").json()["state"] == "cancelled"
    assert reconciler.run_once() == 0  # settled: nothing left to follow


def test_a_dead_workers_trial_of_a_cancelled_search_is_failed(
    client: TestClient, runtime: Runtime, digits: dict[str, Any], reconciler: Reconciler
) -> None:
    search_id, _, trials = _running_search(client, runtime, digits, reconciler)
    for trial in trials:
        runtime.storage.record_heartbeat(trial._trial_id)  # then the workers die
    client.post(f"/api/v1/searches/{search_id}/cancel")
    reconciler.run_once()
    grace = runtime.storage.grace_period or 2 * runtime.settings.heartbeat_interval_s
    time.sleep(grace + 1.5)  # SQLite keeps heartbeat times to the second
    reconciler.run_once()
    progress, states = _shown(client, search_id)
    assert progress["running"] == 0 and states[:2] == ["FAIL", "FAIL"]
    assert reconciler.run_once() == 0


def test_progress_counts_the_trials_it_is_given_not_an_older_status() -> None:
    spec = SearchSpec.model_validate({**SPEC, "dataset": {"source": "digits"}})
    baseline = create_trial(state=TrialState.FAIL, user_attrs={"role": "baseline"})
    searched = create_trial(state=TrialState.PRUNED, user_attrs={"epochs": [0.3]})
    # Taken a moment earlier, while both still ran.
    status = StudyStatus(
        "1", "cancelled", 3, {"baseline": {"RUNNING": 1}, "search": {"RUNNING": 1}}, None, {}
    )
    shown = progress(status, [baseline, searched], spec)
    assert (shown["running"], shown["pruned"], shown["failed"], shown["complete"]) == (0, 1, 1, 0)
