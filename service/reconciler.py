"""The reconciler: the background task that moves searches along their state machine.

Every pass (on the leader only) it creates the studies of queued searches, reaps stale trials
even when no worker is alive, advances studies (budget spent -> final pick enqueued -> done),
refreshes the trial summaries and progress (with the ETA, from the live workers and the
dataset's size), records the final pick's winner (policy and checkpoint) of finished searches, and closes the studies of cancelled ones. Every step is idempotent and all
state lives in the database, so a restarted or replaced leader carries on where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from sqlalchemy.orm import Session

from service.checkpoints import repository as checkpoints
from service.db.models import Search
from service.leader import LeaderLock
from service.policies import repository as policies
from service.runtime import Runtime
from service.searches import repository as searches
from service.searches.states import SearchState, move
from service.searches.sync import apply_status, refresh_trials

if TYPE_CHECKING:
    from search.lifecycle import StudyStatus

log = logging.getLogger(__name__)


class Reconciler:
    """Advances every unfinished search one step per pass.

    Args:
        runtime: Engine, sessions, Optuna storage and settings of this process.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.leader = LeaderLock(runtime.engine, runtime.settings.data_dir / "reconciler.lock")
        self._live_workers: int | None = None

    def _count_live_workers(self) -> int | None:
        """Workers seen recently (the ETA's parallelism), or None when the registry fails."""
        from service.workers import repository as workers

        window = max(60.0, 4 * self.runtime.settings.heartbeat_interval_s)
        try:
            return len(workers.recently_seen(self.runtime.storage, window))
        except Exception:
            log.warning("could not read the worker registry; the ETA assumes running trials")
            return None

    def run_once(self) -> int:
        """One pass over the work list if this process leads; returns the searches handled."""
        if not self.leader.try_acquire():
            return 0
        self._live_workers = self._count_live_workers()
        with self.runtime.transaction() as session:
            work = [
                s.id for s in searches.in_states(session, ["queued", "running", "finalizing"])
            ] + searches.cancelled_with_open_study(session)
        for search_id in work:
            try:
                with self.runtime.transaction() as session:
                    search = searches.get_any(session, search_id)
                    if search is not None:
                        self._step(session, search)
            except Exception:
                # A transient storage error must not kill the loop; the next pass retries.
                log.exception("reconciling search %s failed; retrying next pass", search_id)
        return len(work)

    def _step(self, session: Session, search: Search) -> None:
        from search import lifecycle

        storage = self.runtime.storage
        sid = str(search.id)
        if search.state == SearchState.QUEUED:
            self._start(search)
            return
        if search.state == SearchState.CANCELLED:
            status = lifecycle.cancel(storage, sid)
        else:
            lifecycle.fail_stale(storage, sid)
            status = lifecycle.advance(storage, sid)
        self._sync(session, search, status)

    def _start(self, search: Search) -> None:
        from pydantic import ValidationError

        from search import lifecycle
        from search.spec import SearchSpec

        sid = str(search.id)
        try:
            spec = SearchSpec.model_validate(search.spec)
        except ValidationError as exc:
            move(search, SearchState.FAILED, error=f"stored spec is no longer valid: {exc}")
            return
        if search.study_state is None:
            lifecycle.create_search_study(self.runtime.storage, sid, spec)
            search.study_state = lifecycle.OPEN
        else:
            search.study_state = lifecycle.resume(self.runtime.storage, sid).state
        move(search, SearchState.RUNNING)

    def _sync(self, session: Session, search: Search, status: StudyStatus) -> None:
        import optuna

        from search import lifecycle

        study = optuna.load_study(
            study_name=lifecycle.study_name(str(search.id)), storage=self.runtime.storage
        )
        trials = study.get_trials(deepcopy=False)
        refresh_trials(session, search.id, trials)
        apply_status(
            search, status, trials, live_workers=self._live_workers,
            dataset_images=searches.dataset_images(session, search),
        )  # fmt: skip
        if search.state == SearchState.CANCELLED:
            return
        if status.state == lifecycle.FINALIZING and search.state == SearchState.RUNNING:
            move(search, SearchState.FINALIZING)
        elif status.state == lifecycle.DONE:
            self._record(session, search, status.result or {})
            move(search, SearchState.COMPLETED)
        elif status.state == lifecycle.FAILED:
            move(search, SearchState.FAILED, error=status.error or "the search failed")
        elif status.state == lifecycle.CANCELLED:
            move(search, SearchState.CANCELLED)

    def _record(self, session: Session, search: Search, result: dict[str, Any]) -> None:
        policies.upsert(
            session, search.id, search.dataset_id, dict(result["policy"]), result.get("accuracy")
        )
        if result.get("checkpoint"):
            path, card = self._fetch_checkpoint(search.id, result)
            checkpoints.upsert(
                session,
                search.id,
                str(result["checkpoint"]),
                str(path),
                str(result["sha256"]),
                card,
            )
        if result.get("accuracy") is not None:
            search.best_value = float(result["accuracy"])
        self.runtime.policy_cache.invalidate(search.dataset_id)

    def _fetch_checkpoint(
        self, search_id: int, result: dict[str, Any]
    ) -> tuple[Path, dict[str, Any]]:
        """Copy the final checkpoint out of the artifact store, checking its sha256."""
        import optuna

        from search.checkpoints import load_model_card, make_artifact_store
        from service.checkpoints.service import sha256_of

        store = make_artifact_store(self.runtime.settings.artifact_store_location)
        target_dir = self.runtime.settings.data_dir / "checkpoints"
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f"search-{search_id}.safetensors"
        tmp = target.with_suffix(".partial")
        tmp.unlink(missing_ok=True)
        optuna.artifacts.download_artifact(
            artifact_store=store, file_path=str(tmp), artifact_id=str(result["checkpoint"])
        )
        digest = sha256_of(tmp)
        if digest != result.get("sha256"):
            tmp.unlink(missing_ok=True)
            raise ValueError(
                f"checkpoint of search {search_id} hashes to {digest}, "
                f"the worker recorded {result.get('sha256')}"
            )
        os.replace(tmp, target)
        card_ref = result.get("model_card")
        if isinstance(card_ref, dict):
            card = card_ref
        elif isinstance(card_ref, str) and card_ref:
            card = load_model_card(store, card_ref).model_dump(mode="json")
        else:
            card = {}
        return target, card

    async def run_forever(self, interval_s: float) -> None:
        """Run passes every ``interval_s`` seconds until cancelled."""
        try:
            while True:
                await anyio.to_thread.run_sync(self._run_once_logged)
                await asyncio.sleep(interval_s)
        finally:
            self.leader.release()

    def _run_once_logged(self) -> None:
        try:
            self.run_once()
        except Exception:
            log.exception("reconciler pass failed")
