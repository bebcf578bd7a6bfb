"""Compression jobs run by workers: each variant is made once, as a trial of an Optuna study.

A worker that finds a waiting job (`search.compress.queue`) runs ``study.optimize(n_trials=1)``
on the jobs study, as it does for searches, so Optuna's heartbeat, stale-trial failing and
retries apply to jobs too (Optuna storage stays the only dispatcher). The job writes the
variant's file through ``optuna.artifacts`` and records its artifact id, sha256 and
`VariantCard` on the trial; a failed job records its ``error``.

Two workers may see the same waiting job: the one whose ``optimize`` pops it runs it, the
other's ``optimize`` gets a fresh trial without a job and prunes it at once.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts._protocol import ArtifactStore
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from search import lifecycle
from search.checkpoints import ModelCard, build_model_from_card, load_checkpoint
from search.compress.build import make_variant
from search.compress.queue import DEFAULT_SPARSITY, JOB_ATTR, JOBS_STUDY, CompressionJob
from search.objective import TrialStopped, set_user_attrs
from search.spec import SearchSpec
from search.splits import SearchData
from search.storage import RetryStaleTrial, fail_stale_trials, has_heartbeat, lease

MEDIA_TYPES = {"onnx": "application/onnx", "int8": "application/onnx",
               "pruned": "application/octet-stream"}  # fmt: skip


class CompressionWorker:
    """Runs the waiting compression jobs of a storage; used by `search.worker.Worker`.

    Args:
        storage: the Optuna storage.
        artifact_store: where float checkpoints are read and variants written.
        data: the splits of a search (the worker's decoded-data cache).
        worker: name recorded on the job's trial.
        stop_event: set to stop (the running job's trial is handed back).
        max_retry: re-queues of a job whose worker died.
        heartbeat_interval: seconds between reaps of stale jobs (and the lease interval on
            a storage without Optuna heartbeats).
        grace_period: seconds without heartbeat before a job is stale (lease storages).
    """

    def __init__(
        self,
        storage: BaseStorage,
        artifact_store: ArtifactStore,
        data: Callable[[SearchSpec], SearchData],
        *,
        worker: str,
        stop_event: threading.Event,
        max_retry: int = 2,
        heartbeat_interval: int = 30,
        grace_period: int | None = None,
    ) -> None:
        self.storage, self.artifact_store, self.data = storage, artifact_store, data
        self.worker, self.stop_event, self.max_retry = worker, stop_event, max_retry
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period or 2 * heartbeat_interval
        self._study: optuna.Study | None = None
        self._reaped_at = -math.inf

    def _load(self) -> optuna.Study | None:
        if self._study is None:
            try:
                self._study = optuna.load_study(study_name=JOBS_STUDY, storage=self.storage)
            except KeyError:
                return None  # no job was ever requested
        return self._study

    def has_work(self) -> bool:
        """Whether a job waits (stale jobs are failed and re-queued first, now and then)."""
        study = self._load()
        if study is None:
            return False
        if time.monotonic() - self._reaped_at >= self.heartbeat_interval:
            fail_stale_trials(study, self.max_retry)
            self._reaped_at = time.monotonic()
        return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def run_one(self) -> None:
        """Run one waiting job (its errors end up on its trial, never raised here)."""
        study = self._load()
        if study is None:
            return
        ran: list[int] = []

        def objective(trial: optuna.Trial) -> float:
            ran.append(trial._trial_id)
            if has_heartbeat(self.storage):
                return self._run(trial)
            with lease(self.storage, trial._trial_id, self.heartbeat_interval, self.grace_period):
                return self._run(trial)

        study.optimize(objective, n_trials=1, catch=(Exception,))
        if ran and self.stop_event.is_set():
            # Stopped by its worker, not by its own fault: hand the job back.
            trial = self.storage.get_trial(ran[0])
            if trial.state == TrialState.FAIL and trial.user_attrs.get(JOB_ATTR):
                RetryStaleTrial(max_retry=None)(study, trial)

    def _run(self, trial: optuna.Trial) -> float:
        raw = trial.user_attrs.get(JOB_ATTR)
        if raw is None:
            raise optuna.TrialPruned("no compression job was waiting (another worker took it)")
        set_user_attrs(trial, {"worker": self.worker})
        start = time.perf_counter()
        try:
            attrs = self._make(trial, CompressionJob.model_validate(raw))
        except Exception as exc:
            set_user_attrs(trial, {"error": f"{type(exc).__name__}: {exc}"[:2000]})
            raise
        attrs["duration_s"] = round(time.perf_counter() - start, 3)
        set_user_attrs(trial, attrs)
        return float(attrs["card"]["val_accuracy"])

    def _check_stop(self) -> None:
        if self.stop_event.is_set():
            raise TrialStopped("worker terminated")

    def _make(self, trial: optuna.Trial, job: CompressionJob) -> dict[str, Any]:
        """Make the job's variant, upload it, and return the attrs that record it."""
        try:
            study = optuna.load_study(
                study_name=lifecycle.study_name(job.search_id), storage=self.storage
            )
        except KeyError as exc:
            raise lifecycle.SearchNotFound(f"search {job.search_id} no longer exists") from exc
        spec = lifecycle.spec_of(study)
        data = self.data(spec)
        card = ModelCard.model_validate(job.card)
        state, _ = load_checkpoint(self.artifact_store, job.checkpoint, job.sha256)
        model = build_model_from_card(card)
        model.load_state_dict(state)
        with tempfile.TemporaryDirectory() as tmp:
            path, variant = make_variant(
                model,
                card,
                job.format,
                Path(tmp),
                train=data.final_train,
                val=data.val,
                float_size_bytes=job.float_size_bytes,
                sparsity=job.sparsity or DEFAULT_SPARSITY,
                seed=spec.seed,
                check_stop=self._check_stop,
            )
            artifact = optuna.artifacts.upload_artifact(
                artifact_store=self.artifact_store,
                file_path=str(path),
                study_or_trial=trial,
                mimetype=MEDIA_TYPES[job.format],
            )
        return {"artifact": artifact, "sha256": variant.sha256,
                "card": variant.model_dump(mode="json")}  # fmt: skip
