"""Request and response models of the searches API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, AliasPath, BaseModel, ConfigDict, Field

from service.searches.states import SearchState


class SearchCreate(BaseModel):
    """Launch a search on a registered dataset.

    ``spec`` holds the fields of ``search.spec.SearchSpec`` except ``dataset`` (strategy,
    n_trials, recipe, final_recipe, sampler, pruner, seed, parallelism, priority, baselines...);
    it is validated by that model, so unknown fields are refused there too.
    """

    model_config = ConfigDict(extra="forbid")
    dataset_id: int = Field(ge=1, le=2**31 - 1)
    name: str | None = Field(default=None, max_length=200)
    spec: dict[str, Any] = Field(default_factory=dict)


class ContenderRead(BaseModel):
    """One policy of the final pick: its proxy value and its value at final fidelity.

    Attributes:
        index: position in the pick (searched policies first, then presets).
        label: the preset's name, or the trial the searched policy comes from (``search #12``).
        role: role of that trial (``search``, ``candidate`` or ``baseline``).
        baseline: the preset, for a baseline.
        source_trial: number of that trial.
        proxy_value: its validation accuracy in the search (proxy recipe).
        final_value: validation accuracy of its final training (None until it completes).
        final_loss: validation cross-entropy of that training (breaks ties on final_value).
        test_accuracy: accuracy of that final model on the held-out test part, if there is one.
        final_trial: number of its complete final trial.
        state: state of its current final trial (``WAITING``, ``RUNNING``, ``COMPLETE``...).
        trials: numbers of its final trials (more than one after a failed attempt).
        winner: whether it won the final pick (it is the served policy).
        proxy_winner: whether it had the best proxy value.
    """

    index: int
    label: str
    role: str | None = None
    baseline: str | None = None
    source_trial: int | None = None
    proxy_value: float | None = None
    final_value: float | None = None
    final_loss: float | None = None
    test_accuracy: float | None = None
    final_trial: int | None = None
    state: str
    trials: list[int] = Field(default_factory=list)
    winner: bool = False
    proxy_winner: bool = False


class FinalPickRead(BaseModel):
    """The final pick: contenders retrained with the final recipe, and the verdict.

    Attributes:
        contenders: the retrained policies, in pick order.
        done: contenders whose final training completed.
        size: contenders in the pick.
        winner: label of the served policy (None until every final is done).
        proxy_winner: label of the contender with the best proxy value.
        kendall_tau: rank agreement of proxy and final values (None below 3 contenders).
        proxy_reliable: False when the proxy's ranking did not hold at final fidelity (tau below
            0.5 or another winner); None until the winner is known.
        decided_by: what chose the winner over the runner-up: ``validation accuracy``,
            ``preset on a tie``, ``validation loss``, ``proxy value`` or ``only contender``.
        saturated: the winner scored 1.000 on validation: the split cannot rank policies.
        ended_early: ``search_trials`` complete of ``n_trials`` when a preset's final at
            1.000 ended the search before its budget (nothing else can beat it there).
    """

    contenders: list[ContenderRead] = Field(default_factory=list)
    done: int = 0
    size: int = 0
    winner: str | None = None
    proxy_winner: str | None = None
    kendall_tau: float | None = None
    proxy_reliable: bool | None = None
    decided_by: str | None = None
    saturated: bool | None = None
    ended_early: dict[str, int] | None = None


class SearchProgress(BaseModel):
    """Progress of a search, refreshed by the reconciler.

    Attributes:
        complete: search trials complete.
        running: trials running (any role).
        pruned: search trials pruned after they started training.
        pruned_epochs: epochs the pruned trials trained before they stopped (pruned work).
        skipped: search trials turned away before training (budget full, search closed); they
            use no budget.
        failed: failed trials (any role).
        waiting: trials queued (any role).
        n_trials: budget of search trainings.
        budget_used: search trainings started (complete, pruned, or running with their slot).
        baselines: proxy value of each baseline (None until it completes).
        finals_done: final trainings complete.
        finals: final trainings of the pick (planned from the spec until the pick starts).
        best_search_value: best complete search trial's value.
        best_baseline_value: best baseline's value.
        lanes: trainings of this search the ETA assumes run at once.
        eta_s: seconds left, search and final pick together (None when unknown).
    """

    complete: int = 0
    running: int = 0
    pruned: int = 0
    pruned_epochs: int = 0
    skipped: int = 0
    failed: int = 0
    waiting: int = 0
    n_trials: int = 0
    budget_used: int = 0
    baselines: dict[str, float | None] = Field(default_factory=dict)
    finals_done: int = 0
    finals: int = 0
    best_search_value: float | None = None
    best_baseline_value: float | None = None
    lanes: int = 1
    eta_s: float | None = None


class SearchRead(BaseModel):
    """A search: state, progress, best so far versus baselines, ETA, and its final pick."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    owner_id: int
    dataset_id: int
    name: str
    state: SearchState
    priority: int
    spec: dict[str, Any]
    progress: SearchProgress
    final_pick: FinalPickRead | None = Field(
        default=None,
        validation_alias=AliasChoices("final_pick", AliasPath("progress", "final_pick")),
    )
    best_value: float | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class TrialRead(BaseModel):
    """One trial of a search (a cached summary of the Optuna trial)."""

    model_config = ConfigDict(from_attributes=True)
    number: int
    role: str
    baseline: str | None
    state: str
    value: float | None
    params: dict[str, Any]
    policy: dict[str, Any] | None
    epochs: list[Any]
    duration_s: float | None
    worker: str | None
    device: str | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
