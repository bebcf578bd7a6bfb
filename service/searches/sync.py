"""Copy what the Optuna storage knows about a search into the service's tables.

The trial summaries and the progress cache let the API answer listings and dashboards without
loading studies; the reconciler calls `refresh` on every pass.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from service.db.models import Search, TrialSummary
from service.searches import repository
from service.searches.eta import as_aware, duration_of, eta_s, lanes, planned_finals
from service.searches.final_pick import final_pick

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from search.lifecycle import StudyStatus
    from search.spec import SearchSpec


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
        "duration_s": duration_of(trial),
        "worker": attrs.get("worker"),
        "device": attrs.get("device"),
        "error": attrs.get("error"),
        "started_at": as_aware(trial.datetime_start),
        "finished_at": as_aware(trial.datetime_complete),
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


def _epochs_run(trial: FrozenTrial) -> int:
    epochs = trial.user_attrs.get("epochs")
    return len(epochs) if isinstance(epochs, list) else len(trial.intermediate_values)


def progress(
    status: StudyStatus,
    trials: list[FrozenTrial],
    spec: SearchSpec,
    *,
    live_workers: int | None = None,
    train_images: int | None = None,
) -> dict[str, Any]:
    """The progress cache of a search: budget, pruned work, final pick, best values, ETA.

    Every count comes from ``trials``, the read the trial summaries are written from, so the
    two agree even when a trial ended after ``status`` was taken (a cancel's running trials
    stop, pruned or failed, moments after the study is closed).

    Args:
        status: the study's status.
        trials: its trials.
        spec: its spec.
        live_workers: workers alive now, when known (they cap the trainings run at once).
        train_images: images of the training part, when known (they size the final's ETA).
    """
    from search.lifecycle import SKIPPED_ATTR, budget_used, role_of

    searched = [t for t in trials if role_of(t) == "search"]
    skipped = [t for t in searched if t.user_attrs.get(SKIPPED_ATTR)]
    pruned = [
        t for t in searched if t.state.name == "PRUNED" and not t.user_attrs.get(SKIPPED_ATTR)
    ]
    states = Counter(t.state.name for t in trials)
    running = states["RUNNING"]
    search_values = [
        t.value for t in searched if t.state.name == "COMPLETE" and t.value is not None
    ]
    baseline_values = [v for v in status.baselines.values() if v is not None]
    pick = final_pick(trials, status.result)
    width = lanes(spec.parallelism, live_workers, running)
    return {
        "complete": sum(1 for t in searched if t.state.name == "COMPLETE"),
        "running": running,
        "pruned": len(pruned),
        "pruned_epochs": sum(_epochs_run(t) for t in pruned),
        "skipped": len(skipped),
        "failed": states["FAIL"],
        "waiting": states["WAITING"],
        "n_trials": status.n_trials,
        "budget_used": budget_used(trials),
        "baselines": dict(status.baselines),
        "finals_done": pick["done"] if pick else 0,
        # While the search is open only the presets' finals exist: the rest are still planned.
        "finals": pick["size"] if pick and status.state != "open" else planned_finals(spec),
        "final_pick": pick,
        "best_search_value": max(search_values) if search_values else None,
        "best_baseline_value": max(baseline_values) if baseline_values else None,
        "lanes": width,
        "eta_s": eta_s(trials, spec, status.state, width, train_images=train_images),
    }


def training_images(spec: SearchSpec, dataset_images: int | None) -> int | None:
    """Images of a search's training part, estimated from its dataset's size and fractions."""
    if not dataset_images:
        return None
    kept = dataset_images * (1.0 - spec.holdout_fraction) * (1.0 - spec.val_fraction)
    return max(1, round(kept))


def apply_status(
    search: Search,
    status: StudyStatus,
    trials: list[FrozenTrial],
    *,
    live_workers: int | None = None,
    dataset_images: int | None = None,
) -> None:
    """Store the study's progress, best value and state on the search row."""
    from search.spec import SearchSpec

    spec = SearchSpec.model_validate(search.spec)
    search.progress = progress(
        status, trials, spec, live_workers=live_workers,
        train_images=training_images(spec, dataset_images),
    )  # fmt: skip
    search.best_value = status.best.value if status.best is not None else None
    search.study_state = status.state
