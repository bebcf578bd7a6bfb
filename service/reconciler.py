"""The reconciler: the background task that moves searches along their state machine.

Every pass (on the leader only) it creates the studies of queued searches, reaps stale trials
even when no worker is alive, advances studies (budget spent -> final pick enqueued -> done),
refreshes the trial summaries and progress (with the ETA, from the live workers and the
dataset's size), records the final pick's winner (policy and checkpoint) of finished searches,
closes the studies of cancelled ones, whose summaries it keeps refreshing until their last
running trial has ended, and follows the compression jobs of checkpoint variants
(`service.checkpoints.variants`). Every step is idempotent and all state lives in the
database, so a restarted or replaced leader carries on where it stopped.

The API changes the same rows (cancel, resume) while a pass runs. Every write of a search row
is checked against the version it read (``Search.version``); a step that lost the race is taken
again on the fresh row, and a queued search's study is opened only after its move to
``running`` is committed, so a cancel that answered "cancelled" is never undone.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from service.checkpoints import repository as checkpoints
from service.db.models import Search
from service.leader import LeaderLock
from service.policies import repository as policies
from service.runtime import Runtime
from service.searches import repository as searches
from service.searches.states import STUDY_OPENING, SearchState, move
from service.searches.sync import apply_status, refresh_trials

if TYPE_CHECKING:
    from search.lifecycle import StudyStatus

log = logging.getLogger(__name__)

#: Steps of one search in one pass: a claimed start, and retries after concurrent changes.
MAX_STEPS = 5


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
        """Workers alive now (the ETA's parallelism), or None when the registry fails."""
        from service.workers import service as workers

        try:
            return workers.live_count(self.runtime.storage)
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
            ] + searches.cancelled_unsettled(session)
        for search_id in work:
            try:
                self._reconcile(search_id)
            except Exception:
                # A transient storage error must not kill the loop; the next pass retries.
                log.exception("reconciling search %s failed; retrying next pass", search_id)
        self._sync_variants()
        self._sync_self_trainings()
        return len(work)

    def _sync_self_trainings(self) -> None:
        """Follow the running self-training jobs (`service.self_training.sync`)."""
        from service.self_training.sync import sync_all

        try:
            sync_all(self.runtime)
        except Exception:
            log.exception("syncing self-trainings failed; retrying next pass")

    def _sync_variants(self) -> None:
        """Follow the compression jobs of queued and running checkpoint variants."""
        from service.checkpoints import variants

        try:
            with self.runtime.transaction() as session:
                ids = variants.unfinished(session)
        except Exception:
            log.exception("reading checkpoint variants failed; retrying next pass")
            return
        for row_id in ids:
            try:
                with self.runtime.transaction() as session:
                    variants.sync_by_id(
                        session, self.runtime.storage, self.runtime.settings, row_id
                    )
            except Exception:
                log.exception("syncing checkpoint variant %s failed; retrying next pass", row_id)

    def _reconcile(self, search_id: int) -> None:
        """Step one search, each step a transaction on the row as it is now.

        A step whose commit finds the row changed since it was read (``Search.version``: a
        cancel or resume from the API meanwhile) is rolled back and taken again on the fresh
        row, so the reconciler never overwrites a user's change and acts on it in this pass.
        """
        for _ in range(MAX_STEPS):
            try:
                with self.runtime.transaction() as session:
                    search = searches.get_any(session, search_id)
                    again = search is not None and self._step(session, search)
            except StaleDataError:
                log.info("search %s changed while it was reconciled; stepping again", search_id)
                continue
            if not again:
                return
        log.warning("search %s kept changing during this pass; the next pass goes on", search_id)

    def _step(self, session: Session, search: Search) -> bool:
        """One step of a search; returns whether to step it again at once (a start claimed)."""
        from search import lifecycle

        storage = self.runtime.storage
        sid = str(search.id)
        if search.state == SearchState.QUEUED:
            return self._claim(search)
        if search.state == SearchState.CANCELLED:
            status = self._close(search)
            if status is None:
                return False
        elif search.study_state == STUDY_OPENING:
            status = self._open(search)
        else:
            lifecycle.fail_stale(storage, sid)
            status = lifecycle.advance(storage, sid)
        self._sync(session, search, status)
        return False

    def _claim(self, search: Search) -> bool:
        """Move a queued search to running before its study opens (committed first).

        The study is created (or reopened) only once this claim is committed: a cancel that
        came first makes the claim's commit fail, and the search then never opens. A cancel
        that comes later finds a running search, whose study this pass closes again.
        """
        from pydantic import ValidationError

        from search.spec import SearchSpec

        try:
            SearchSpec.model_validate(search.spec)
        except ValidationError as exc:
            move(search, SearchState.FAILED, error=f"stored spec is no longer valid: {exc}")
            return False
        move(search, SearchState.RUNNING)
        search.study_state = STUDY_OPENING
        return True

    def _open(self, search: Search) -> StudyStatus:
        """Create the study of a claimed search, or reopen it (a resumed search); idempotent."""
        from search import lifecycle
        from search.spec import SearchSpec

        storage = self.runtime.storage
        sid = str(search.id)
        try:
            return lifecycle.resume(storage, sid)
        except lifecycle.SearchNotFound:
            lifecycle.create_search_study(storage, sid, SearchSpec.model_validate(search.spec))
            return lifecycle.status(storage, sid)

    def _close(self, search: Search) -> StudyStatus | None:
        """Close a cancelled search's study; None when it never got one.

        Its trials still running are failed once their worker is gone (no worker reaps a
        closed study), so the search leaves the work list when its last trial has ended.
        """
        from search import lifecycle

        storage = self.runtime.storage
        sid = str(search.id)
        try:
            lifecycle.fail_stale(storage, sid)
            return lifecycle.cancel(storage, sid)
        except lifecycle.SearchNotFound:
            search.study_state = None  # cancelled before its study was created
            return None

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
