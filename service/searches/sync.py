"""Copy what the Optuna storage knows about a search into the service's tables.

The trial summaries and the progress cache let the API answer listings and dashboards without
loading studies; the reconciler calls `refresh` on every pass.
"""

from __future__ import annotations

from datetime import UTC, datetime
from statistics import fmean
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from service.db.models import Search, TrialSummary
from service.searches import repository

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from search.lifecycle import StudyStatus


def _duration(trial: FrozenTrial) -> float | None:
    recorded = trial.user_attrs.get("duration_s")
    if isinstance(recorded, int | float):
        return float(recorded)
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def _as_aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.astimezone(UTC)


def _fields(trial: FrozenTrial) -> dict[str, Any]:
    attrs = trial.user_attrs
    policy = attrs.get("policy")
    epochs = attrs.get("epochs")
    if not isinstance(epochs, list):
        epochs = [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]
    return {
        "role": str(attrs.get("role", "search")),
        "baseline": attrs.get("baseline"),
        "state": trial.state.name,
        "value": trial.value if trial.values else None,
        "params": {k: v for k, v in trial.params.items()},
        "policy": policy if isinstance(policy, dict) else None,
        "epochs": epochs,
        "duration_s": _duration(trial),
        "worker": attrs.get("worker"),
        "device": attrs.get("device"),
        "error": attrs.get("error"),
        "started_at": _as_aware(trial.datetime_start),
        "finished_at": _as_aware(trial.datetime_complete),
    }


def refresh_trials(session: Session, search_id: int, trials: list[FrozenTrial]) -> None:
    """Insert new trial summaries and update changed ones (idempotent)."""
    known = repository.trials_by_number(session, search_id)
    for trial in trials:
        fields = _fields(trial)
        row = known.get(trial.number)
        if row is None:
            repository.add_trial(
                session, TrialSummary(search_id=search_id, number=trial.number, **fields)
            )
            continue
        for name, value in fields.items():
            if getattr(row, name) != value:
                setattr(row, name, value)
    session.flush()


def progress(status: StudyStatus, trials: list[FrozenTrial], parallelism: int) -> dict[str, Any]:
    """The progress cache of a search: counts, baselines, best values and an ETA."""
    search_counts = status.counts.get("search", {})
    complete = search_counts.get("COMPLETE", 0)
    running = sum(c.get("RUNNING", 0) for c in status.counts.values())
    waiting = sum(c.get("WAITING", 0) for c in status.counts.values())
    finished = [d for t in trials if t.state.name == "COMPLETE" and (d := _duration(t)) is not None]
    search_values = [
        t.value
        for t in trials
        if t.state.name == "COMPLETE"
        and t.user_attrs.get("role", "search") == "search"
        and t.value is not None
    ]
    baseline_values = [v for v in status.baselines.values() if v is not None]
    remaining = max(status.n_trials - complete, 0) + waiting
    lanes = max(1, min(parallelism, running or 1))
    eta = fmean(finished) * remaining / lanes if finished and remaining else None
    return {
        "complete": complete,
        "running": running,
        "pruned": search_counts.get("PRUNED", 0),
        "failed": sum(c.get("FAIL", 0) for c in status.counts.values()),
        "waiting": waiting,
        "n_trials": status.n_trials,
        "baselines": dict(status.baselines),
        "best_search_value": max(search_values) if search_values else None,
        "best_baseline_value": max(baseline_values) if baseline_values else None,
        "eta_s": eta,
    }


def apply_status(search: Search, status: StudyStatus, trials: list[FrozenTrial]) -> None:
    """Store the study's progress, best value and state on the search row."""
    parallelism = int(search.spec.get("parallelism", 1))
    search.progress = progress(status, trials, parallelism)
    search.best_value = status.best.value if status.best is not None else None
    search.study_state = status.state
