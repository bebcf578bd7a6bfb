"""The workers registry over the API: a worker beats through a long trial, a killed one is lost.

The test settings give workers a heartbeat interval of 1 s, so a worker beats every second and
is lost after three missed beats.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient

from search.worker import Worker
from search.worker_registry import workers_alive
from service.reconciler import Reconciler
from service.runtime import Runtime

SPEC = {"strategy": "randaugment", "n_trials": 1, "recipe": {"epochs": 1}, "baselines": ["none"]}


@pytest.fixture
def search_id(client: TestClient, reconciler: Reconciler, digits: dict[str, Any]) -> int:
    """A search whose study is open, its baseline waiting for a worker."""
    created = client.post("/api/v1/searches", json={"dataset_id": digits["id"], "spec": SPEC})
    reconciler.run_once()
    return int(created.json()["id"])


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _entry(client: TestClient, name: str) -> dict[str, Any] | None:
    workers = client.get("/api/v1/workers").json()
    return next((w for w in workers if w["name"] == name), None)


def _state(client: TestClient, name: str) -> str | None:
    entry = _entry(client, name)
    return None if entry is None else str(entry["state"])


def test_a_worker_beats_through_a_long_trial(
    client: TestClient, runtime: Runtime, search_id: int, tmp_path: Path
) -> None:
    started = threading.Event()

    def long_trial(trial: optuna.Trial, role: str, check_stop: Callable[[], None]) -> float:
        started.set()
        for _ in range(50):  # five beats long: the trial outlives the lost timeout
            time.sleep(0.1)
            check_stop()
        return 0.5

    worker = Worker(
        runtime.settings.optuna_storage_url,
        artifact_store=tmp_path / "artifacts",
        name="trainer",
        heartbeat_interval=runtime.settings.heartbeat_interval_s,
        train_fn=long_trial,
        max_trials=1,
    )
    thread = threading.Thread(target=worker.run, kwargs={"max_idle": 0})
    thread.start()
    try:
        assert started.wait(60)
        first = _wait(lambda: _entry(client, "trainer"), 10, "the busy worker")
        time.sleep(3.5)  # beyond three beats
        later = _entry(client, "trainer")
    finally:
        thread.join(timeout=60)
    assert first["state"] == "busy" and later is not None and later["state"] == "busy"
    assert later["search_id"] == search_id and later["current_trial"] == f"{search_id}#0"
    assert later["heartbeat_timeout_s"] == 3.0
    beats = datetime.fromisoformat(later["last_seen"]) - datetime.fromisoformat(first["last_seen"])
    assert beats.total_seconds() >= 2.0  # refreshed during the trial, not only at its start
    assert _entry(client, "trainer") is None  # stopped workers leave the list at once


def test_a_killed_worker_is_lost_after_three_beats(
    client: TestClient, runtime: Runtime, reconciler: Reconciler, search_id: int, tmp_path: Path
) -> None:
    code = (
        "from search.objective import FixedLengthTrial\n"
        "from search.worker import Worker\n"
        f"Worker({runtime.settings.optuna_storage_url!r}, artifact_store={str(tmp_path)!r}, "
        "name='victim', heartbeat_interval=1, poll_interval=0.2, "
        "train_fn=FixedLengthTrial(seconds=300, steps=300)).run()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ})
    try:
        busy = _wait(lambda: _entry(client, "victim"), 90, "the worker to register")
        assert busy["state"] in ("busy", "idle") and busy["pid"] == proc.pid
        _wait(lambda: _state(client, "victim") == "busy", 60, "its trial to start")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = time.monotonic()
    lost = _wait(lambda: _state(client, "victim") == "lost", 30, "the worker to be lost")
    waited = time.monotonic() - killed_at
    assert lost and waited <= 3.0 + 1.0 + 1.0  # three beats, the last one's age, polling
    shown = _entry(client, "victim")
    assert shown is not None and shown["current_trial"] is None and shown["search_id"] is None
    assert "victim" not in workers_alive(runtime.storage)
    assert reconciler._count_live_workers() == 0
