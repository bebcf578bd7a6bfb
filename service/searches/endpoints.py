"""HTTP routes of the searches API."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from service.deps import CurrentUser, RuntimeDep, SessionDep, SettingsDep
from service.ids import SearchId
from service.pagination import Page, PageDep
from service.searches import service
from service.searches.schemas import SearchCreate, SearchRead, TrialRead
from service.searches.states import SearchState

router = APIRouter(prefix="/searches", tags=["searches"])


@router.post("", status_code=201)
def launch_search(
    body: SearchCreate, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> SearchRead:
    """Launch a search: the spec is validated and the search queued for the reconciler."""
    return SearchRead.model_validate(service.launch(session, body, user, settings))


@router.get("")
def list_searches(
    session: SessionDep,
    user: CurrentUser,
    page: PageDep,
    state: SearchState | None = None,
    dataset_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Page[SearchRead]:
    """The caller's searches, newest first, filtered by state and dataset."""
    rows, total = service.list_page(session, user, page.offset, page.limit, state, dataset_id)
    items = [SearchRead.model_validate(r) for r in rows]
    return Page[SearchRead](items=items, total=total, offset=page.offset, limit=page.limit)


@router.get("/{search_id}")
def show_search(search_id: SearchId, session: SessionDep, user: CurrentUser) -> SearchRead:
    """One search: state, progress, best so far versus baselines, ETA, and its final pick."""
    return SearchRead.model_validate(service.get(session, search_id, user))


@router.post("/{search_id}/cancel")
def cancel_search(search_id: SearchId, session: SessionDep, user: CurrentUser) -> SearchRead:
    """Cancel a queued, running or finalizing search."""
    return SearchRead.model_validate(service.cancel(session, search_id, user))


@router.post("/{search_id}/resume")
def resume_search(search_id: SearchId, session: SessionDep, user: CurrentUser) -> SearchRead:
    """Resume a cancelled or failed search."""
    return SearchRead.model_validate(service.resume(session, search_id, user))


@router.delete("/{search_id}", status_code=204)
def delete_search(
    search_id: SearchId, session: SessionDep, user: CurrentUser, runtime: RuntimeDep
) -> None:
    """Delete a finished search with its study, trials, policy and checkpoint record."""
    search = service.delete(session, search_id, user, runtime.storage)
    runtime.policy_cache.invalidate(search.dataset_id)


@router.get("/{search_id}/trials")
def list_trials(
    search_id: SearchId,
    session: SessionDep,
    user: CurrentUser,
    page: PageDep,
    role: Literal["baseline", "search", "candidate", "final"] | None = None,
) -> Page[TrialRead]:
    """A search's trials by number: params, policy, state, per-epoch values, worker."""
    rows, total = service.trials_page(session, search_id, user, page.offset, page.limit, role)
    items = [TrialRead.model_validate(r) for r in rows]
    return Page[TrialRead](items=items, total=total, offset=page.offset, limit=page.limit)
