"""The worker: a stateless pull loop over the open searches in an Optuna storage.

Each iteration picks one search fairly (priority first, then fewest running trials, then the
oldest study) among those with work, and runs ``study.optimize(objective, n_trials=1)`` on it so
that Optuna's heartbeat, stale-trial failing and retry callback all stay in force. A search has
work when a trial is waiting (baselines, retries, candidate, final) or, while it is open, when
its complete plus running search trials leave a slot in the budget and it runs fewer trials
than its ``parallelism``. With ``n_trials=1`` a ``MaxTrialsCallback`` would never fire, so the
budget is enforced by this check and by `search.objective`'s start and end checks.

Dispatch stays cheap as studies grow: the worker wraps its storage once in Optuna's trial
cache (finished trials are read once per process, only unfinished and new ones each time),
reaps stale trials of a search at most once per heartbeat interval, advances a search only
when its current stage may be over (from the trials its pick has just read, not again after
each trial), and reads a finished trial back only to re-queue it. Between trials it does not
wait: ``poll_interval`` is the pause of an idle worker only.

Each worker keeps its record in the workers registry (`search.worker_registry`): its state
and trial, refreshed by a heartbeat thread, so a killed worker shows as lost.

Waiting compression jobs (`search.compress.jobs`: the ONNX, int8 and pruned variants of a
finished search's checkpoint, trials of the study ``augsearch-compressions``) go before search
trials; a worker limited to some searches (``search_ids``) takes none.

A lost connection to the storage (database restart, proxy blink) does not end the loop: the
worker logs it and retries with backoff for up to ``max_outage_s``; a trial that was running
then may be failed by the reapers and retried, like any interrupted trial.
"""

from __future__ import annotations

import hashlib
import logging
import math
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts._protocol import ArtifactStore
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from search import final_pick, lifecycle
from search.checkpoints import make_artifact_store
from search.compress.jobs import CompressionWorker
from search.objective import Objective, TrainFn, worker_identity
from search.schema import SCHEMA_WAIT_S
from search.self_training.trials import KEY_PREFIX, JobDispatch, JobSteps
from search.spec import SearchSpec
from search.storage import (
    WORKER_POOL,
    PoolOptions,
    RetryStaleTrial,
    fail_stale_trials,
    has_heartbeat,
    is_transient,
    lease,
    make_storage,
)
from search.worker_registry import REGISTER_INTERVAL_S, WorkerRecord

log = logging.getLogger("augsearch.worker")


class Worker:
    """Pulls trials from every open search and trains them.

    Args:
        storage_url: SQLAlchemy URL of the Optuna storage, or ``grpc://host:port`` of a
            storage proxy (trials then hold a lease instead of Optuna's heartbeat).
        device: torch device of the trainings.
        artifact_store: store (or folder / ``s3://bucket``) for checkpoints.
        name: worker name in the registry (default ``host:pid``).
        heartbeat_interval: seconds between heartbeats of the running trial.
        grace_period: seconds without heartbeat before a trial is stale (default 2x interval).
        poll_interval: seconds between looks for work when idle.
        max_trials: stop after this many trials (None: no limit).
        idle_exit: stop after this many idle seconds (None: never).
        max_retry: re-queues of a trial whose worker died.
        search_ids: serve only these searches (None: all).
        data_cache_dir: decoded-dataset cache folder.
        pool: database connections (default `search.storage.WORKER_POOL`: commits that do not
            wait for the disk). A `PoolOptions` given here decides with its own
            ``durable_commits``, which defaults to durable.
        train_fn: replaces the training of each trial (see `search.objective.TrainFn`).
        stop_event: the event that stops the loop (default: a new one).
        max_outage_s: how long the storage may stay unreachable before the worker gives up.
    """

    def __init__(
        self,
        storage_url: str,
        device: str = "cpu",
        artifact_store: ArtifactStore | str | Path = "augsearch-data/artifacts",
        *,
        name: str | None = None,
        heartbeat_interval: int = 30,
        grace_period: int | None = None,
        poll_interval: float = 5.0,
        max_trials: int | None = None,
        idle_exit: float | None = None,
        max_retry: int = 2,
        search_ids: Sequence[str] | None = None,
        data_cache_dir: str | None = None,
        pool: PoolOptions | None = None,
        train_fn: TrainFn | None = None,
        stop_event: threading.Event | None = None,
        max_outage_s: float = 600.0,
    ) -> None:
        if poll_interval <= 0 or heartbeat_interval <= 0:
            raise ValueError("poll_interval and heartbeat_interval must be positive")
        # One trial cache for every study this worker loads (load_study would otherwise wrap
        # the RDB storage in a fresh cache, re-reading every trial each time).
        self.storage: BaseStorage = optuna.storages.get_storage(
            make_storage(
                storage_url,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                max_retry=max_retry,
                pool=pool or WORKER_POOL,
                schema_wait_s=SCHEMA_WAIT_S,
            )
        )
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period or 2 * heartbeat_interval
        self.max_outage_s = max_outage_s
        if isinstance(artifact_store, str | Path):
            artifact_store = make_artifact_store(artifact_store)
        self.name = name or worker_identity()
        self.device = device
        self.poll_interval = poll_interval
        self.max_trials = max_trials
        self.idle_exit = idle_exit
        self.max_retry = max_retry
        self.search_ids = set(search_ids) if search_ids is not None else None
        self.stop_event = stop_event or threading.Event()
        self.objective = Objective(
            artifact_store,
            device=device,
            worker=self.name,
            stop_event=self.stop_event,
            data_cache_dir=data_cache_dir,
            train_fn=train_fn,
        )
        # Compression jobs (`search.compress.jobs`) go to workers that serve every search.
        self.compressions = (
            CompressionWorker(
                self.storage,
                artifact_store,
                self.objective.data,
                worker=self.name,
                stop_event=self.stop_event,
                max_retry=max_retry,
                heartbeat_interval=heartbeat_interval,
                grace_period=self.grace_period,
            )
            if self.search_ids is None
            else None
        )
        # Self-training jobs (`search.self_training`) go to workers that serve every search.
        self.self_training = (
            JobDispatch(
                self.storage,
                JobSteps(
                    artifact_store,
                    device=device,
                    worker=self.name,
                    stop_event=self.stop_event,
                    data_cache_dir=data_cache_dir,
                ),
                heartbeat_interval,
                max_retry,
            )
            if self.search_ids is None
            else None
        )
        self.trials_done = 0
        self.jobs_done = 0
        self._studies: dict[str, optuna.Study] = {}
        self._specs: dict[str, SearchSpec] = {}
        #: Searches whose preset contenders are picked (an open search advances once for them).
        self._presets_picked: set[str] = set()
        self._reaped_at: dict[str, float] = {}
        self.record = WorkerRecord(self.storage, self.name, device,
                                   min(REGISTER_INTERVAL_S, float(heartbeat_interval)),
                                   lambda: self.trials_done)  # fmt: skip

    def stop(self) -> None:
        """Ask the loop to stop; the running trial stops after its current epoch."""
        self.stop_event.set()

    def run(self, max_idle: float | None = None) -> int:
        """Serve searches until stopped, ``max_trials`` is reached or idle for too long.

        Returns:
            The number of trials this worker ran.
        """
        idle_limit = max_idle if max_idle is not None else self.idle_exit
        previous = self._install_signals()
        with self.record.heartbeat():
            idle_since = time.monotonic()
            outage_since: float | None = None
            while not self.stop_event.is_set():
                try:
                    ran = self._serve_once()
                except Exception as exc:
                    outage_since = outage_since or time.monotonic()
                    self._survive(exc, time.monotonic() - outage_since)
                    continue
                outage_since = None
                if ran:
                    idle_since = time.monotonic()
                    if self.max_trials is not None and self.trials_done >= self.max_trials:
                        break
                elif idle_limit is not None and time.monotonic() - idle_since >= idle_limit:
                    break
                else:
                    self.stop_event.wait(self.poll_interval)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        try:
            self.record.register("stopped", force=True)
        except Exception as exc:
            log.warning("worker %s: could not record its stop: %s", self.name, exc)
        return self.trials_done

    def _serve_once(self) -> bool:
        """Run one compression job or one trial if there is work; returns whether one ran.

        Waiting compression jobs go first: they are short and someone waits for each. The
        search is advanced after its trial only when this is the worker's last trial: the
        next `pick` advances a search whose stage may be over anyway, from the reads it makes.
        """
        if self.compressions is not None and self.compressions.has_work():
            self.record.register("busy", "compression")
            self.compressions.run_one()
            self.jobs_done += 1
            return True
        search_id = self.pick()
        if search_id is None:
            self.record.register("idle")
            return False
        if self.stop_event.is_set():  # stopped while it looked: start nothing more
            return False
        if search_id.startswith(KEY_PREFIX) and self.self_training is not None:
            self.record.register("busy", search_id)
            self.self_training.run(search_id)
            self.trials_done += 1
            return True
        last = self.max_trials is not None and self.trials_done + 1 >= self.max_trials
        self.run_one(search_id, advance=last)
        return True

    def _survive(self, exc: Exception, outage_s: float) -> None:
        """Wait out a lost storage connection; re-raise other errors and too long outages."""
        finished = isinstance(exc, optuna.exceptions.UpdateFinishedTrialError)
        if not (finished or is_transient(exc)) or outage_s > self.max_outage_s:
            raise exc
        log.warning("worker %s: storage error, retrying: %s", self.name, str(exc)[:300])
        self.stop_event.wait(min(self.poll_interval * 2, 5.0))

    def _install_signals(self) -> dict[int, Any]:
        """SIGTERM and Ctrl-C stop the worker after the current epoch; its trial goes back.

        A second Ctrl-C interrupts at once (the trial is then failed without a retry, or
        retried once its heartbeat is stale if the process dies).

        Returns:
            The handlers replaced (none outside the main thread).
        """
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: Any) -> None:
            log.info(
                "worker %s: %s, stopping after the current epoch (its trial goes back to the "
                "queue if its search is still active)",
                self.name,
                signal.Signals(signum).name,
            )
            self.stop_event.set()
            if signum == signal.SIGINT:
                signal.signal(signal.SIGINT, signal.default_int_handler)

        return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def study(self, search_id: str) -> optuna.Study:
        """The search's study with a sampler seeded for this worker (cached per process).

        The sampler is kept across trials so that its random state advances; the seed mixes
        the spec's seed, the worker name and the trial count, so two workers (or a restarted
        worker) do not draw the same parameters.
        """
        if search_id not in self._studies:
            plain = optuna.load_study(
                study_name=lifecycle.study_name(search_id), storage=self.storage
            )
            spec = lifecycle.spec_of(plain)
            text = f"{spec.seed}|{self.name}|{len(plain.get_trials(deepcopy=False))}"
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            self._studies[search_id] = lifecycle.load_search_study(
                self.storage, search_id, sampler_seed=seed
            )
        return self._studies[search_id]

    def pick(self) -> str | None:
        """The search to serve next, or None when no search has work."""
        candidates: list[tuple[int, int, int, str]] = []
        summaries = self.storage.get_all_studies()
        for summary in summaries:
            name = summary.study_name
            if not name.startswith(lifecycle.STUDY_PREFIX) or "spec" not in summary.user_attrs:
                continue
            if summary.user_attrs.get("state") not in lifecycle.ACTIVE_STATES:
                continue
            search_id = name.removeprefix(lifecycle.STUDY_PREFIX)
            if self.search_ids is not None and search_id not in self.search_ids:
                continue
            study = self.study(search_id)
            self._reap(search_id, study)
            trials = study.get_trials(deepcopy=False)
            state = summary.user_attrs["state"]
            running = self._work(study, state, trials)
            # An open search with work left may still move on: its presets' finals are
            # enqueued once the baselines are over.
            if (running is None or state == lifecycle.OPEN) and self._may_advance(
                study, state, trials
            ):
                advanced = self._advanced_work(study, search_id)
                running = advanced if advanced is not None else running
            if running is None:
                continue
            priority = int(summary.user_attrs.get("priority", 0))
            candidates.append((-priority, running, summary._study_id, search_id))
        if self.self_training is not None:  # job steps compete by the same rules
            candidates.extend(self.self_training.candidates(summaries))
        return min(candidates)[3] if candidates else None

    def _advanced_work(self, study: optuna.Study, search_id: str) -> int | None:
        """Advance a search whose stage may be over; its running trials if that gave it work.

        A new stage enqueues a trial (candidate, final, a final's retry), which this worker
        may take at once instead of after a poll interval.
        """
        status = lifecycle.advance(self.storage, search_id)
        if status.state not in lifecycle.ACTIVE_STATES:
            return None
        by_state: Counter[str] = Counter()
        for counts in status.counts.values():
            by_state.update(counts)
        if not by_state["WAITING"] or by_state["RUNNING"] >= self.spec(search_id).parallelism:
            return None
        return by_state["RUNNING"]

    def spec(self, search_id: str) -> SearchSpec:
        """The search's spec (cached: a spec never changes once the search exists)."""
        if search_id not in self._specs:
            self._specs[search_id] = lifecycle.spec_of(self.study(search_id))
        return self._specs[search_id]

    def _reap(self, search_id: str, study: optuna.Study) -> None:
        """Fail the search's stale trials, at most once per heartbeat interval.

        A trial turns stale only after a grace period of two intervals, so reaping more often
        would find nothing new; Optuna's ``optimize`` also reaps before each of its trials.
        """
        now = time.monotonic()
        if now - self._reaped_at.get(search_id, -math.inf) < self.heartbeat_interval:
            return
        fail_stale_trials(study, self.max_retry)
        self._reaped_at[search_id] = now

    def _may_advance(
        self, study: optuna.Study, state: str, trials: Sequence[FrozenTrial] | None = None
    ) -> bool:
        """Whether the search's stage may be over, so `lifecycle.advance` has work to do.

        An open search moves on once its baselines are over (its presets' finals are then
        picked) and once its budget of search trainings is spent (or too many failed); other
        states have final trials to watch.

        Args:
            study: the search's study.
            state: its state.
            trials: its trials, if just read (default: read them).
        """
        if state != lifecycle.OPEN:
            return True
        search_id = study.study_name.removeprefix(lifecycle.STUDY_PREFIX)
        spec = self.spec(search_id)
        if trials is None:
            trials = study.get_trials(deepcopy=False)
        failed = sum(
            1 for t in trials if t.state == TrialState.FAIL and lifecycle.role_of(t) == "search"
        )
        used = lifecycle.budget_used(list(trials), running=False)
        if used >= spec.n_trials or failed > max(5, 2 * spec.n_trials):
            return True
        if search_id in self._presets_picked:
            return False
        if not final_pick.baselines_over(list(trials)):
            return False
        if final_pick.PRESET_PICK_ATTR in study.user_attrs:
            self._presets_picked.add(search_id)
            return False
        return True

    def _work(
        self, study: optuna.Study, state: str, trials: Sequence[FrozenTrial] | None = None
    ) -> int | None:
        """Running trials of a search if it has work for this worker, else None."""
        spec = self.spec(study.study_name.removeprefix(lifecycle.STUDY_PREFIX))
        if trials is None:
            trials = study.get_trials(deepcopy=False)
        running = sum(1 for t in trials if t.state == TrialState.RUNNING)
        if running >= spec.parallelism:
            return None
        if any(t.state == TrialState.WAITING for t in trials):
            return running
        if state != lifecycle.OPEN:
            return None
        # Running search trials that have not claimed their slot yet will: count them too.
        unclaimed = sum(
            1
            for t in trials
            if t.state == TrialState.RUNNING
            and lifecycle.role_of(t) == "search"
            and not t.user_attrs.get(lifecycle.CLAIM_ATTR)
        )
        used = lifecycle.budget_used(list(trials)) + unclaimed
        return running if used < spec.n_trials else None

    def run_one(self, search_id: str, *, advance: bool = True) -> None:
        """Run one trial of a search, then (``advance``) advance the search's lifecycle.

        ``study.optimize`` gets no callback: Optuna would read the finished trial back for
        it, while its outcome is known here (the trial is read only to re-queue it when it
        failed because this worker is stopping).
        """
        study = self.study(search_id)
        outcome: dict[str, Any] = {}

        def objective(trial: optuna.Trial) -> float:
            return self._run_trial(search_id, trial, outcome)

        study.optimize(objective, n_trials=1, catch=(Exception,))
        self.trials_done += 1
        self._after_trial(study, outcome)
        if not advance:
            return
        # The attrs are read fresh: the trial that just ended may have changed the stage.
        state = str(self.storage.get_study_user_attrs(study._study_id).get("state"))
        if self._may_advance(study, state):
            lifecycle.advance(self.storage, search_id)

    def _run_trial(self, search_id: str, trial: optuna.Trial, outcome: dict[str, Any]) -> float:
        """The objective of one trial; records its outcome for `_after_trial`."""
        outcome.update(trial_id=trial._trial_id, number=trial.number, state="FAIL")
        self.record.register("busy", f"{search_id}#{trial.number}")
        start = time.perf_counter()
        try:
            if has_heartbeat(self.storage):
                value = self.objective(trial)
            else:
                # No Optuna heartbeat through a gRPC proxy: hold a lease so reapers see a death.
                interval, grace = self.heartbeat_interval, self.grace_period
                with lease(self.storage, trial._trial_id, interval, grace):
                    value = self.objective(trial)
        except optuna.TrialPruned:
            outcome["state"] = "PRUNED"
            raise
        except Exception as exc:
            outcome["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            outcome["duration_s"] = time.perf_counter() - start
            outcome["role"] = trial.user_attrs.get("role", "search")
        # Optuna fails a trial whose value is NaN.
        outcome.update(state="FAIL" if math.isnan(value) else "COMPLETE", value=value)
        return value

    def _after_trial(self, study: optuna.Study, outcome: dict[str, Any]) -> None:
        if "trial_id" not in outcome:
            return  # optimize ran no trial (its study was told to stop)
        value = outcome.get("value")
        log.info(
            "study=%s trial=%d role=%s state=%s value=%s duration=%.1fs%s",
            study.study_name,
            outcome["number"],
            outcome.get("role", "search"),
            outcome["state"],
            "-" if value is None else f"{value:.4f}",
            float(outcome.get("duration_s", 0.0)),
            f" error={outcome['error'][:2000]}" if "error" in outcome else "",
        )
        if outcome["state"] == "FAIL" and self.stop_event.is_set():
            # Interrupted by its worker, not by its own fault: hand it back to run elsewhere,
            # whatever retries it used up (unless its search has ended meanwhile).
            trial = self.storage.get_trial(outcome["trial_id"])
            active = study.user_attrs.get("state", lifecycle.OPEN) in lifecycle.ACTIVE_STATES
            if trial.state == TrialState.FAIL and active:
                RetryStaleTrial(max_retry=None)(study, trial)
                log.info("worker %s: trial %d handed back", self.name, trial.number)
