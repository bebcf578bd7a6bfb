"""The ETA against reality: two embedded workers run a search whose trainings last a fixed time
(`FixedLengthTrial`); the ETA the API gives mid-search and during the final pick is held to the
time that actually remained."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from search import lifecycle
from search.objective import FixedLengthTrial
from search.worker import Worker
from service.reconciler import Reconciler
from service.runtime import Runtime
from service.settings import Settings

pytestmark = pytest.mark.slow

TRIAL_S = 2.0
# Final trainings as long as proxy ones: the final recipe is the proxy recipe on the same images.
SPEC = {"strategy": "randaugment", "n_trials": 6, "baselines": ["none"], "sampler": "random",
        "pruner": "none", "parallelism": 2, "recipe": {"epochs": 2},
        "final_recipe": {"epochs": 2}, "final_pick": {"candidates": 1, "presets": 1}}  # fmt: skip
TOLERANCE = 0.35


def _run_and_sample(
    client: TestClient, runtime: Runtime, settings: Settings, search_id: int
) -> tuple[list[dict[str, Any]], float]:
    """Run the search with two worker threads; the progress after every reconciler pass (with
    the moment it was read) and the moment the search was done."""
    workers = [
        Worker(settings.optuna_storage_url, "cpu", settings.artifact_store_location,
               name=f"eta-{i}", heartbeat_interval=1, poll_interval=0.05,
               train_fn=FixedLengthTrial(TRIAL_S, 2))
        for i in range(2)
    ]  # fmt: skip
    threads = [threading.Thread(target=w.run, kwargs={"max_idle": 120}) for w in workers]
    reconciler = Reconciler(runtime)
    samples: list[dict[str, Any]] = []
    try:
        reconciler.run_once()  # creates the study: baselines and the starting point wait
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            reconciler.run_once()
            read_at = time.monotonic()
            if lifecycle.status(runtime.storage, str(search_id)).state == lifecycle.DONE:
                return samples, read_at
            search = client.get(f"/api/v1/searches/{search_id}").json()
            samples.append({"at": read_at, "state": search["state"], **search["progress"]})
            time.sleep(0.1)
        raise AssertionError(f"the search did not finish; last progress {samples[-1:]}")
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(timeout=30)
        reconciler.leader.release()


def test_the_eta_is_within_35_percent_of_the_time_that_remained(
    client: TestClient, runtime: Runtime, settings: Settings, digits: dict[str, Any]
) -> None:
    body = {"dataset_id": digits["id"], "spec": SPEC}
    search_id = client.post("/api/v1/searches", json=body).json()["id"]
    samples, done_at = _run_and_sample(client, runtime, settings, search_id)
    # Mid-search: the baseline and the first search trainings are done, a third of the budget.
    mid = next(s for s in samples if s["state"] == "running" and s["complete"] >= 2)
    # In the final pick, with both finals running.
    final = next((s for s in samples if s["state"] == "finalizing" and s["running"] == 2), None)
    checked = 0
    for sample in (mid, final):
        if sample is None:  # the finals ran between two passes: nothing to check there
            continue
        remained = done_at - sample["at"]
        assert sample["lanes"] == 2 and sample["eta_s"] is not None, sample
        assert abs(sample["eta_s"] - remained) <= TOLERANCE * remained, (sample, remained)
        checked += 1
    assert checked >= 1
    # The whole run: 7 proxy trainings (1 baseline, 6 search) on 2 lanes, then 2 finals.
    assert mid["eta_s"] > 2 * TRIAL_S and mid["finals"] == 2
