"""Two workers that pop the same enqueued trial: exactly one of them gets it.

Optuna's own claim reads the trial, then writes it; on SQLite two readers both saw WAITING and
both ran the trial (the second then failed with "Cannot tell a COMPLETE trial" and its worker
thread died). `search.storage.ClaimingRDBStorage` makes the claim one conditional UPDATE.
"""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from search.storage import make_storage

ROUNDS = 20


def _claim(
    storage: BaseStorage, trial_id: int, start: threading.Barrier, claimed: list[bool], k: int
) -> None:
    start.wait()
    claimed[k] = storage.set_trial_state_values(trial_id, TrialState.RUNNING)


def _racing_claims(url: str) -> list[int]:
    """How many of two storages claimed the same waiting trial, for `ROUNDS` trials."""
    owner = make_storage(url, heartbeat_interval=None)
    study = optuna.create_study(storage=owner, study_name="claims")
    racers = [make_storage(url, heartbeat_interval=None) for _ in range(2)]
    winners = []
    for i in range(ROUNDS):
        study.enqueue_trial({"x": i})
        (waiting,) = owner.get_all_trials(study._study_id, states=(TrialState.WAITING,))
        claimed = [False, False]
        start = threading.Barrier(2)
        threads = [
            threading.Thread(target=_claim, args=(racers[k], waiting._trial_id, start, claimed, k))
            for k in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners.append(sum(claimed))
        assert owner.get_trial(waiting._trial_id).state == TrialState.RUNNING
        owner.set_trial_state_values(waiting._trial_id, TrialState.FAIL)
    return winners


def test_one_sqlite_worker_claims_an_enqueued_trial(tmp_path: Path) -> None:
    assert _racing_claims(f"sqlite:///{tmp_path / 'optuna.db'}") == [1] * ROUNDS


@pytest.mark.postgres
def test_one_postgres_worker_claims_an_enqueued_trial(fresh_pg_url: str) -> None:
    assert _racing_claims(fresh_pg_url) == [1] * ROUNDS


def test_a_finished_trial_cannot_be_claimed(tmp_path: Path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=None)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(UpdateFinishedTrialError):
        storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING)
    running = study.ask()  # a running trial is not waiting: not claimed, no error
    assert storage.set_trial_state_values(running._trial_id, TrialState.RUNNING) is False
