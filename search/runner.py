"""Run a whole search without the service: for notebooks, benchmarks and tests.

``search.run(spec)`` creates the study, then runs workers (in this process, or ``n_workers``
spawned processes) and advances the lifecycle until the search is done, failed or cancelled.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ops.policy import Policy, load_policy
from search import lifecycle
from search.checkpoints import (
    build_model_from_card,
    load_checkpoint,
    load_model_card,
    make_artifact_store,
)
from search.fleet import run_worker, threads_per_worker
from search.spec import SearchSpec
from search.worker import Worker

DEFAULT_DATA_DIR = Path("augsearch-data")


@dataclass
class SearchResult:
    """The outcome of a search.

    Attributes:
        search_id: the search.
        state: ``done``, ``failed`` or ``cancelled``.
        policy: the best policy (retrained by the final trial); None unless done.
        accuracy: validation accuracy of the final model.
        test_accuracy: accuracy on the held-out split, if the spec holds one out.
        checkpoint: artifact id of the safetensors weights.
        model_card: artifact id of the model card.
        sha256: sha256 of the weights file.
        status: the full status (counts, baselines, best).
        storage_url: the Optuna storage.
        artifact_dir: the artifact folder.
    """

    search_id: str
    state: str
    policy: Policy | None
    accuracy: float | None
    test_accuracy: float | None
    checkpoint: str | None
    model_card: str | None
    sha256: str | None
    status: lifecycle.StudyStatus
    storage_url: str
    artifact_dir: str

    def load_model(self) -> nn.Module:
        """The final model, rebuilt from its card and safetensors weights (sha256 verified)."""
        if self.checkpoint is None or self.model_card is None:
            raise ValueError(f"search {self.search_id!r} has no checkpoint (state {self.state})")
        store = make_artifact_store(self.artifact_dir)
        card = load_model_card(store, self.model_card)
        state, _ = load_checkpoint(store, self.checkpoint, expected_sha256=self.sha256)
        model = build_model_from_card(card)
        model.load_state_dict(state)
        return model.eval()


def _result(status: lifecycle.StudyStatus, storage_url: str, artifact_dir: str) -> SearchResult:
    res: dict[str, Any] = status.result or {}
    return SearchResult(
        search_id=status.search_id,
        state=status.state,
        policy=load_policy(res["policy"]) if "policy" in res else None,
        accuracy=res.get("accuracy"),
        test_accuracy=res.get("test_accuracy"),
        checkpoint=res.get("checkpoint"),
        model_card=res.get("model_card"),
        sha256=res.get("sha256"),
        status=status,
        storage_url=storage_url,
        artifact_dir=artifact_dir,
    )


def run(
    spec: SearchSpec,
    storage: str | None = None,
    n_workers: int = 1,
    artifact_dir: str | Path | None = None,
    search_id: str | None = None,
    *,
    device: str = "cpu",
    heartbeat_interval: int = 10,
    poll_interval: float = 1.0,
    timeout: float | None = None,
) -> SearchResult:
    """Run a whole search and return its result.

    Args:
        spec: the search.
        storage: Optuna storage URL (default ``sqlite:///augsearch-data/search.db``).
        n_workers: 1 runs the trials in this process; more spawns that many worker processes.
        artifact_dir: checkpoint folder (default ``augsearch-data/artifacts``).
        search_id: id of the search (default: a random one); an existing id resumes it.
        device: torch device of the workers.
        heartbeat_interval: heartbeat of running trials, seconds.
        poll_interval: seconds between lifecycle checks (each reads every trial of the search:
            ~30 ms of CPU on SQLite, taken from the workers on a small machine).
        timeout: give up (TimeoutError) after this many seconds.

    Raises:
        ValueError: for n_workers < 1.
        TimeoutError: when ``timeout`` passes first.
        RuntimeError: when every worker process died before the search ended.
    """
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    if storage is None or artifact_dir is None:
        DEFAULT_DATA_DIR.mkdir(parents=True, exist_ok=True)
    storage_url = storage or f"sqlite:///{DEFAULT_DATA_DIR / 'search.db'}"
    artifacts = str(artifact_dir or DEFAULT_DATA_DIR / "artifacts")
    search_id = search_id or uuid.uuid4().hex[:12]
    rdb = lifecycle.make_storage(storage_url, heartbeat_interval=heartbeat_interval)
    lifecycle.create_search_study(rdb, search_id, spec)
    deadline = None if timeout is None else time.monotonic() + timeout
    options: dict[str, Any] = {
        "heartbeat_interval": heartbeat_interval,
        "poll_interval": poll_interval,
        "search_ids": [search_id],
    }
    job = _Job(rdb, storage_url, device, artifacts, search_id, deadline, options)
    status = _run_here(job) if n_workers == 1 else _run_processes(job, n_workers)
    return _result(status, storage_url, artifacts)


@dataclass(frozen=True)
class _Job:
    """What the driving loops share: the storage, the workers' setup, the search and deadline."""

    rdb: Any
    storage_url: str
    device: str
    artifacts: str
    search_id: str
    deadline: float | None
    options: dict[str, Any]

    def check_deadline(self, status: lifecycle.StudyStatus) -> None:
        """Raise TimeoutError once the deadline has passed with the search still active."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeoutError(f"search {self.search_id!r} still {status.state} at the timeout")


def _run_here(job: _Job) -> lifecycle.StudyStatus:
    worker = Worker(job.storage_url, job.device, job.artifacts, **job.options)
    while True:
        status = lifecycle.advance(job.rdb, job.search_id)
        if status.state not in lifecycle.ACTIVE_STATES:
            return status
        job.check_deadline(status)
        if worker.pick() == job.search_id:
            worker.run_one(job.search_id)
        else:
            time.sleep(job.options["poll_interval"])


def _run_processes(job: _Job, n_workers: int) -> lifecycle.StudyStatus:
    ctx = multiprocessing.get_context("spawn")
    threads = threads_per_worker(n_workers) if job.device == "cpu" else None
    procs = [
        ctx.Process(
            target=run_worker,
            args=(job.storage_url, job.device, job.artifacts),
            kwargs={
                **job.options,
                "name": f"run-{job.search_id}-{i}",
                "torch_threads": threads,
                "parent_pid": os.getpid(),
            },
        )
        for i in range(n_workers)
    ]
    for proc in procs:
        proc.start()
    # A trial goes stale only after heartbeats missed for several intervals: looking for
    # stale trials once per interval is enough (each look costs ~40 ms of CPU on SQLite).
    reaped_at = -math.inf
    try:
        while True:
            status = lifecycle.advance(job.rdb, job.search_id)
            if status.state not in lifecycle.ACTIVE_STATES:
                return status
            if all(not p.is_alive() for p in procs):
                raise RuntimeError(f"every worker of search {job.search_id!r} exited early")
            job.check_deadline(status)
            if time.monotonic() - reaped_at >= job.options["heartbeat_interval"]:
                lifecycle.fail_stale(job.rdb, job.search_id)
                reaped_at = time.monotonic()
            time.sleep(job.options["poll_interval"])
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: the worker finishes its epoch and exits cleanly
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join()
