"""Search domain logic: launch (validated against ``SearchSpec`` and limits), cancel, resume."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.datasets import service as datasets
from service.db.models import Search, TrialSummary, User
from service.errors import Conflict, InvalidInput, NotFound, QuotaExceeded, Unavailable
from service.searches import repository
from service.searches.schemas import SearchCreate
from service.searches.states import ACTIVE, TERMINAL, SearchState, move
from service.settings import Settings

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from search.spec import SearchSpec


# Writes of a search row retried after another writer changed it (see `_change`).
MAX_WRITE_ATTEMPTS = 5


def study_name(search_id: int) -> str:
    """The Optuna study of a search (``search-<id>``, the storage contract)."""
    return f"search-{search_id}"


def delete_study(storage: BaseStorage, search_id: int) -> None:
    """Remove a search's study from the Optuna storage, if it was ever created."""
    import optuna

    try:
        optuna.delete_study(study_name=study_name(search_id), storage=storage)
    except KeyError:
        return  # never created (cancelled while queued)


def get(session: Session, search_id: int, user: User) -> Search:
    """The search, or NotFound (also for another user's search)."""
    search = repository.get(session, search_id, user)
    if search is None:
        raise NotFound(f"search {search_id} not found")
    return search


def _errors_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "spec"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def validate_spec(
    raw: dict[str, Any], dataset_spec: dict[str, Any], settings: Settings
) -> SearchSpec:
    """Validate a search spec against ``SearchSpec`` and the configured limits.

    Raises:
        InvalidInput: on any invalid field or a limit exceeded (messages name the field).
    """
    try:
        from search.spec import SearchSpec
    except ImportError as exc:  # the search package is a peer: report, do not crash
        raise Unavailable(f"the search package is not available: {exc}") from exc
    if "dataset" in raw:
        raise InvalidInput("spec.dataset is set from dataset_id; do not send it")
    try:
        spec = SearchSpec.model_validate({**raw, "dataset": dataset_spec})
    except ValidationError as exc:
        raise InvalidInput(f"invalid search spec: {_errors_text(exc)}") from exc
    if spec.n_trials > settings.max_trials:
        raise InvalidInput(f"spec.n_trials must be at most {settings.max_trials}")
    for label, recipe in (("recipe", spec.recipe), ("final_recipe", spec.final)):
        # Derived epochs are capped by the recipe (MAX_AUTO_EPOCHS); given ones here.
        if recipe.epochs is not None and recipe.epochs > settings.max_epochs:
            raise InvalidInput(f"spec.{label}.epochs must be at most {settings.max_epochs}")
    return spec


def launch(session: Session, body: SearchCreate, user: User, settings: Settings) -> Search:
    """Store a validated search as ``queued``; the reconciler creates its study."""
    dataset = datasets.get(session, body.dataset_id, user)
    if dataset.state != "ready":
        raise Conflict(f"dataset {dataset.id} is {dataset.state}, not ready")
    spec = validate_spec(body.spec, dataset.spec, settings)
    active = repository.count_active_for(session, user.id, [s.value for s in ACTIVE])
    if active >= settings.max_concurrent_searches:
        raise QuotaExceeded(
            f"{active} searches are unfinished; the limit is {settings.max_concurrent_searches}"
        )
    search = Search(
        owner_id=user.id,
        dataset_id=dataset.id,
        name=body.name or f"{spec.strategy} on {dataset.name}",
        spec=spec.model_dump(mode="json"),
        priority=spec.priority,
        state=SearchState.QUEUED.value,
        progress={"n_trials": spec.n_trials},
    )
    return repository.add(session, search)


def list_page(
    session: Session,
    user: User,
    offset: int,
    limit: int,
    state: SearchState | None,
    dataset_id: int | None,
) -> tuple[list[Search], int]:
    """A filtered page of the caller's searches."""
    state_value = state.value if state is not None else None
    return repository.list_page(session, user, offset, limit, state_value, dataset_id)


def _change(
    session: Session, search_id: int, user: User, change: Callable[[Search], None]
) -> Search:
    """Apply ``change`` to the search as it is now, and write it.

    The write is conditional on the row being unchanged since it was read (its version); when
    another writer (the reconciler) came first, the row is read again and ``change`` decides
    anew, so the change never overwrites, or is overwritten by, a concurrent one.
    """
    for _ in range(MAX_WRITE_ATTEMPTS):
        search = get(session, search_id, user)
        change(search)
        if repository.save(session):
            return search
    raise Conflict(f"search {search_id} kept changing while it was written; try again")


def cancel(session: Session, search_id: int, user: User) -> Search:
    """Mark a search cancelled; the reconciler closes its study so workers stop taking trials."""
    return _change(session, search_id, user, lambda s: move(s, SearchState.CANCELLED))


def resume(session: Session, search_id: int, user: User) -> Search:
    """Queue a cancelled or failed search again; the reconciler reopens its study."""

    def requeue(search: Search) -> None:
        if search.state == SearchState.FAILED and search.study_state == "failed":
            raise Conflict(
                f"search {search_id} failed in its study ({search.error}); launch a new search"
            )
        move(search, SearchState.QUEUED)

    return _change(session, search_id, user, requeue)


def delete(session: Session, search_id: int, user: User, storage: BaseStorage) -> Search:
    """Delete a finished search: its Optuna study, trials, policy and checkpoint rows.

    Raises:
        Conflict: while the search is queued, running or finalizing.
    """

    def remove(search: Search) -> None:
        if SearchState(search.state) not in TERMINAL:
            raise Conflict(f"search {search_id} is {search.state}; cancel it before deleting it")
        from service.self_training.service import before_search_delete

        before_search_delete(session, search.id, storage)
        delete_study(storage, search.id)
        repository.delete_search(session, search)

    return _change(session, search_id, user, remove)


def trials_page(
    session: Session,
    search_id: int,
    user: User,
    offset: int,
    limit: int,
    role: str | None = None,
) -> tuple[list[TrialSummary], int]:
    """A page of a search's trials."""
    search = get(session, search_id, user)
    return repository.trials_page(session, search.id, offset, limit, role)
