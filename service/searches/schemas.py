"""Request and response models of the searches API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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


class SearchProgress(BaseModel):
    """Progress of a search, refreshed by the reconciler."""

    complete: int = 0
    running: int = 0
    pruned: int = 0
    failed: int = 0
    waiting: int = 0
    n_trials: int = 0
    baselines: dict[str, float | None] = Field(default_factory=dict)
    best_search_value: float | None = None
    best_baseline_value: float | None = None
    eta_s: float | None = None


class SearchRead(BaseModel):
    """A search: state, progress, best so far versus baselines, ETA."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    owner_id: int
    dataset_id: int
    name: str
    state: SearchState
    priority: int
    spec: dict[str, Any]
    progress: SearchProgress
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
