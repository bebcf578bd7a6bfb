"""The workers' side of self-training: a job step as an Optuna trial, and job dispatch.

`JobSteps` is the objective of one job trial: it loads the search's splits and the unlabelled
images (once per process), reads the previous step's predictions from the artifact store, runs
`search.self_training.steps.train_step`, and stores the model (safetensors checkpoint and
model card, as a search's final) and its predictions for the next student. `JobDispatch`
lets `search.worker.Worker` serve job studies beside search studies with the same storage,
heartbeats, stale-trial reaping and retries.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts._protocol import ArtifactStore
from optuna.storages import BaseStorage
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file as save_safetensors

from search.checkpoints import CheckpointError, ModelCard, save_checkpoint, save_model_card
from search.datasets import load_dataset
from search.datasets.unlabelled import load_unlabelled
from search.final_pick import VAL_LOSS_ATTR
from search.objective import TrialStopped, set_user_attrs
from search.self_training import lifecycle
from search.self_training.spec import SelfTrainingJob
from search.self_training.steps import StepOutcome, step_record, train_step
from search.splits import SearchData, split_for_search
from search.storage import RetryStaleTrial, fail_stale_trials

#: Trial attr holding the artifact id of a step's predictions on the unlabelled images.
PREDICTIONS_ATTR = "predictions"
#: Key of a job in `search.worker.Worker.pick` (search ids cannot hold a colon).
KEY_PREFIX = "self-training:"
log = logging.getLogger("augsearch.worker")


def _upload_predictions(store: ArtifactStore, trial: optuna.Trial, probs: torch.Tensor) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.safetensors"
        save_safetensors({"probs": probs.contiguous()}, str(path))
        return optuna.artifacts.upload_artifact(
            artifact_store=store,
            file_path=str(path),
            study_or_trial=trial,
            mimetype="application/octet-stream",
        )


def _download_predictions(store: ArtifactStore, artifact_id: str) -> torch.Tensor:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.safetensors"
        try:
            optuna.artifacts.download_artifact(
                artifact_store=store, file_path=str(path), artifact_id=artifact_id
            )
            return load_safetensors(path.read_bytes())["probs"]
        except Exception as exc:
            raise CheckpointError(f"cannot read predictions {artifact_id!r}: {exc}") from exc


class JobSteps:
    """Objective of a job's trials (see the module doc).

    Args:
        artifact_store: where checkpoints and predictions go.
        device: torch device of the trainings.
        worker: name recorded in the trial's ``worker`` attr.
        stop_event: when set, the running step stops after its epoch.
        data_cache_dir: decoded-dataset cache folder.
    """

    def __init__(
        self,
        artifact_store: ArtifactStore,
        *,
        device: str,
        worker: str,
        stop_event: threading.Event,
        data_cache_dir: str | None = None,
    ) -> None:
        self.artifact_store = artifact_store
        self.device = device
        self.worker = worker
        self.stop_event = stop_event
        self.data_cache_dir = data_cache_dir
        self._data: dict[str, SearchData] = {}
        self._unlabelled: dict[str, torch.Tensor] = {}

    def data(self, job: SelfTrainingJob) -> tuple[SearchData, torch.Tensor]:
        """The search's splits and the unlabelled images, decoded once per process."""
        spec = job.search
        key = spec.model_dump_json(include={"dataset", "seed", "val_fraction", "holdout_fraction"})
        if key not in self._data:
            ds = load_dataset(spec.dataset, cache_dir=self.data_cache_dir)
            self._data[key] = split_for_search(ds, spec)
        ukey = job.unlabelled.model_dump_json()
        if ukey not in self._unlabelled:
            self._unlabelled[ukey] = load_unlabelled(job.unlabelled)
        return self._data[key], self._unlabelled[ukey]

    def _check(self, study: optuna.Study) -> None:
        if self.stop_event.is_set():
            raise TrialStopped("worker terminated")
        if study.user_attrs.get("state") == lifecycle.CANCELLED:
            raise TrialStopped("self-training cancelled")

    def __call__(self, trial: optuna.Trial) -> float:
        """Run one step and return its validation accuracy."""
        start = time.perf_counter()
        study = trial.study
        state = study.user_attrs.get("state")
        if state != lifecycle.OPEN:
            raise optuna.TrialPruned(f"self-training is {state}: step not needed")
        if "step" not in trial.user_attrs:
            # No waiting step was left when optimize started (another worker took it):
            # Optuna made a fresh trial, which has nothing to run.
            raise optuna.TrialPruned("no step waiting: another worker took it")
        job = lifecycle.job_of(study)
        step = int(trial.user_attrs["step"])
        set_user_attrs(trial, {"worker": self.worker, "device": self.device})
        error: str | None = None
        try:
            return self._run(trial, job, step)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            raise
        finally:
            end: dict[str, Any] = {"duration_s": round(time.perf_counter() - start, 3)}
            if error is not None:
                end["error"] = error
            set_user_attrs(trial, end)

    def _teacher_probs(self, study: optuna.Study, step: int) -> torch.Tensor | None:
        if step == 0:
            return None
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if lifecycle.step_of(t) == step - 1 and PREDICTIONS_ATTR in t.user_attrs:
                return _download_predictions(self.artifact_store, t.user_attrs[PREDICTIONS_ATTR])
        raise ValueError(f"step {step - 1} has no completed trial with predictions")

    def _run(self, trial: optuna.Trial, job: SelfTrainingJob, step: int) -> float:
        data, unlabelled = self.data(job)
        probs = self._teacher_probs(trial.study, step)
        history: list[float] = []

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            history.append(float(row["val_accuracy"]))
            trial.set_user_attr("epochs", history)
            self._check(trial.study)

        self._check(trial.study)
        outcome = train_step(
            job, step, data.final_train, data.val, unlabelled, teacher_probs=probs,
            device=self.device, test=data.test, on_epoch=on_epoch,
        )  # fmt: skip
        self._store(trial, job, outcome, data)
        return outcome.metrics["val_accuracy"]

    def _store(
        self, trial: optuna.Trial, job: SelfTrainingJob, outcome: StepOutcome, data: SearchData
    ) -> None:
        ds = data.final_train
        card = ModelCard(
            arch=outcome.recipe.arch,
            num_classes=ds.num_classes,
            classes=list(ds.classes),
            in_channels=ds.channels,
            image_size=ds.image_size,
            mean=list(outcome.result.mean or ds.mean),
            std=list(outcome.result.std or ds.std),
            policy=outcome.policy.model_dump(mode="json"),
            recipe=outcome.recipe.model_dump(mode="json"),
            metrics={k: v for k, v in outcome.metrics.items() if k != "val_loss"},
        )
        store = self.artifact_store
        artifact_id, sha = save_checkpoint(outcome.result.state_dict, card, store, trial)
        attrs = step_record(outcome)
        attrs[VAL_LOSS_ATTR] = outcome.metrics["val_loss"]
        attrs.update(
            checkpoint=artifact_id,
            sha256=sha,
            model_card=save_model_card(card, store, trial),
            predictions=_upload_predictions(store, trial, outcome.probs),
        )
        set_user_attrs(trial, attrs)


def job_key(job_id: str) -> str:
    """The dispatch key of a job (see `KEY_PREFIX`)."""
    return KEY_PREFIX + job_id


class JobDispatch:
    """Finds job studies with work and runs their trials for a worker.

    Args:
        storage: the worker's storage (heartbeats and the retry callback in force).
        steps: the objective of job trials.
        heartbeat_interval: seconds between reaps of one job's stale trials.
        max_retry: re-queues of a trial whose worker died.
    """

    def __init__(
        self, storage: BaseStorage, steps: JobSteps, heartbeat_interval: float, max_retry: int
    ) -> None:
        self.storage = storage
        self.steps = steps
        self.heartbeat_interval = heartbeat_interval
        self.max_retry = max_retry
        self._reaped_at: dict[str, float] = {}

    def candidates(
        self, summaries: Sequence[FrozenStudy], job_ids: set[str] | None = None
    ) -> list[tuple[int, int, int, str]]:
        """``(-priority, running, study id, key)`` of each open job with a step to run."""
        out = []
        for summary in summaries:
            name = summary.study_name
            if not name.startswith(lifecycle.STUDY_PREFIX) or "job" not in summary.user_attrs:
                continue
            if summary.user_attrs.get("state") != lifecycle.OPEN:
                continue
            job_id = name.removeprefix(lifecycle.STUDY_PREFIX)
            if job_ids is not None and job_id not in job_ids:
                continue
            study = optuna.load_study(study_name=name, storage=self.storage)
            self._reap(job_id, study)
            trials = study.get_trials(deepcopy=False)
            if not self._has_work(job_id, trials):
                continue
            priority = int(summary.user_attrs.get("priority", 0))
            out.append((-priority, 0, summary._study_id, job_key(job_id)))
        return out

    def _has_work(self, job_id: str, trials: list[FrozenTrial]) -> bool:
        # Steps run one at a time: a running step leaves nothing to do.
        if any(t.state == TrialState.RUNNING for t in trials):
            return False
        if any(t.state == TrialState.WAITING for t in trials):
            return True
        # The last step ended on a worker that did not advance the job (it died): do it here.
        status = lifecycle.advance(self.storage, job_id)
        return status.state == lifecycle.OPEN and any(s["state"] == "WAITING" for s in status.steps)

    def _reap(self, job_id: str, study: optuna.Study) -> None:
        now = time.monotonic()
        if now - self._reaped_at.get(job_id, -math.inf) < self.heartbeat_interval:
            return
        fail_stale_trials(study, self.max_retry)
        self._reaped_at[job_id] = now

    def run(self, key: str) -> None:
        """Run the next step of the job ``key`` names, then advance the job."""
        job_id = key.removeprefix(KEY_PREFIX)
        study = optuna.load_study(study_name=lifecycle.study_name(job_id), storage=self.storage)
        ran: dict[str, Any] = {}

        def objective(trial: optuna.Trial) -> float:
            ran["trial_id"], ran["number"] = trial._trial_id, trial.number
            return self.steps(trial)

        study.optimize(objective, n_trials=1, catch=(Exception,))
        if "trial_id" in ran:
            trial = self.storage.get_trial(ran["trial_id"])
            log.info(
                "study=%s trial=%d step=%s state=%s value=%s",
                study.study_name, trial.number, lifecycle.step_of(trial), trial.state.name,
                "-" if trial.value is None else f"{trial.value:.4f}",
            )  # fmt: skip
            if trial.state == TrialState.FAIL and self.steps.stop_event.is_set():
                RetryStaleTrial(max_retry=None)(study, trial)  # interrupted: hand it back
        lifecycle.advance(self.storage, job_id)
