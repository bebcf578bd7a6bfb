"""The search state machine: queued -> running -> finalizing -> completed | failed | cancelled."""

from __future__ import annotations

from enum import StrEnum

from service.db.models import Search, utcnow
from service.errors import Conflict


class SearchState(StrEnum):
    """States of a search."""

    QUEUED = "queued"
    RUNNING = "running"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TRANSITIONS: dict[SearchState, frozenset[SearchState]] = {
    SearchState.QUEUED: frozenset({SearchState.RUNNING, SearchState.FAILED, SearchState.CANCELLED}),
    SearchState.RUNNING: frozenset(
        {SearchState.FINALIZING, SearchState.COMPLETED, SearchState.FAILED, SearchState.CANCELLED}
    ),
    SearchState.FINALIZING: frozenset(
        {SearchState.COMPLETED, SearchState.FAILED, SearchState.CANCELLED}
    ),
    # Resuming puts a stopped search back in the queue; the reconciler reopens its study.
    SearchState.CANCELLED: frozenset({SearchState.QUEUED}),
    SearchState.FAILED: frozenset({SearchState.QUEUED}),
    SearchState.COMPLETED: frozenset(),
}
#: ``Search.study_state`` while a search claimed to run has its study created or reopened.
STUDY_OPENING = "opening"
ACTIVE = frozenset({SearchState.QUEUED, SearchState.RUNNING, SearchState.FINALIZING})
TERMINAL = frozenset({SearchState.COMPLETED, SearchState.FAILED, SearchState.CANCELLED})


def can_move(current: str, target: SearchState) -> bool:
    """Whether ``current -> target`` is an allowed transition."""
    return target in TRANSITIONS[SearchState(current)]


def move(search: Search, target: SearchState, error: str | None = None) -> None:
    """Move ``search`` to ``target``, stamping times; Conflict if the machine forbids it."""
    if not can_move(search.state, target):
        raise Conflict(f"search {search.id} is {search.state}; it cannot become {target}")
    now = utcnow()
    search.state = target.value
    search.updated_at = now
    if target is SearchState.RUNNING and search.started_at is None:
        search.started_at = now
    if target in TERMINAL:
        search.finished_at = now
    if target is SearchState.QUEUED:
        search.finished_at = None
        search.error = None
    if error is not None:
        search.error = error
