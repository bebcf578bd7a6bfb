"""The view model of one search's page: charts, trial table, top ops, importances, result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from service.checkpoints import repository as checkpoint_rows
from service.checkpoints import service as checkpoints
from service.checkpoints import variants
from service.checkpoints.schemas import VariantRead
from service.dashboard.analysis import Importance, ImportanceCache, op_frequencies, top_fraction
from service.dashboard.charts import Bar, TrialPoint, bar_chart, epoch_curves, trial_scatter
from service.datasets import service as datasets
from service.db.models import Search, TrialSummary, User
from service.errors import NotFound
from service.policies import service as policies
from service.searches import repository as search_rows
from service.searches import service as searches
from service.searches.schemas import FinalPickRead
from service.self_training import repository as self_trainings
from service.self_training.schemas import SelfTrainingRead

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


@dataclass(frozen=True)
class TrialRow:
    """One row of the trial table."""

    number: int
    role: str
    label: str
    state: str
    value: float | None
    duration_s: float | None
    worker: str | None
    epochs: int
    summary: str
    error: str | None


@dataclass
class SearchPage:
    """Everything the search template shows."""

    search: Search
    dataset_name: str
    trials: list[TrialRow]
    trials_svg: str
    epochs_svg: str
    ops_svg: str
    top_count: int
    importance_svg: str
    importance: Importance
    baselines: dict[str, float | None]
    final_pick: FinalPickRead | None
    policy: dict[str, Any] | None = None
    policy_accuracy: float | None = None
    policy_provisional: bool = True
    checkpoint: dict[str, Any] | None = None
    card: dict[str, Any] = field(default_factory=dict)
    variants: list[VariantRead] = field(default_factory=list)
    self_trainings: list[SelfTrainingRead] = field(default_factory=list)


def policy_summary(policy: dict[str, Any] | None, params: dict[str, Any]) -> str:
    """A one-line description of a trial's policy (or its parameters when it has none)."""
    if policy is None:
        return ", ".join(f"{k}={_short(v)}" for k, v in sorted(params.items())) or "-"
    kind = policy.get("kind")
    if kind == "randaugment":
        return f"RandAugment n={policy.get('n')} m={_short(policy.get('m'))}"
    if kind == "trivialaugment":
        return "TrivialAugment" + (" wide" if policy.get("wide") else "")
    if kind == "subpolicies":
        subs = policy.get("sub_policies") or []
        ops = [step.get("op", "?") for sub in subs for step in sub]
        shown = ", ".join(dict.fromkeys(ops))
        return f"{len(subs)} sub-policies: {shown}"
    return "no augmentation" if kind == "none" else str(kind)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _point(row: TrialSummary, contenders: dict[int, str]) -> TrialPoint:
    # Positions are epochs: an epoch that did not validate stays as None.
    epochs = [float(v) if isinstance(v, int | float) else None for v in row.epochs]
    return TrialPoint(row.number, row.role, row.state, row.value, epochs, row.baseline,
                      contenders.get(row.number))  # fmt: skip


def _row(row: TrialSummary, contenders: dict[int, str]) -> TrialRow:
    label = row.baseline if row.role == "baseline" and row.baseline else row.role
    if row.number in contenders:
        label = f"final: {contenders[row.number]}"
    return TrialRow(
        number=row.number, role=row.role, label=label, state=row.state, value=row.value,
        duration_s=row.duration_s, worker=row.worker, epochs=len(row.epochs),
        summary=policy_summary(row.policy, row.params), error=row.error,
    )  # fmt: skip


def _final_pick(progress: dict[str, Any]) -> tuple[FinalPickRead | None, dict[int, str]]:
    """The final pick of the progress cache, and each final trial's contender label."""
    raw = progress.get("final_pick")
    if not isinstance(raw, dict):
        return None, {}
    pick = FinalPickRead.model_validate(raw)
    return pick, {n: c.label for c in pick.contenders for n in c.trials}


def _ops_chart(rows: list[TrialSummary]) -> tuple[str, int]:
    ranked = sorted(
        (r for r in rows if r.role == "search" and r.state == "COMPLETE" and r.policy),
        key=lambda r: -(r.value or 0.0),
    )
    top = ranked[: top_fraction(len(ranked))]
    counts = op_frequencies([r.policy for r in top if r.policy is not None])
    bars = [
        Bar(c.op, c.count, {"op": c.op, "count": c.count, "magnitude": c.mean_magnitude},
            "" if c.mean_magnitude is None else f"m={c.mean_magnitude:.2f}")
        for c in counts
    ]  # fmt: skip
    return bar_chart("op-frequency", bars, "Ops in the top trials"), len(top)


def _importance_chart(importance: Importance) -> str:
    bars = [Bar(k, v, {"param": k}) for k, v in importance.values.items()]
    return bar_chart("importance", bars, "Parameter importance", value_format="{:.3f}")


def _attach_result(page: SearchPage, session: Session, search: Search, user: User) -> None:
    try:
        payload = policies.search_payload(session, search.id, user)
    except NotFound:
        payload = None
    if payload is not None:
        page.policy = payload["policy"]
        page.policy_accuracy = payload["accuracy"]
        page.policy_provisional = bool(payload["provisional"])
    try:
        record = checkpoints.get(session, search.id, user)
    except NotFound:
        return
    page.checkpoint = {"sha256": record.sha256, "artifact_id": record.artifact_id}
    page.card = dict(record.card)
    page.variants = [variants.read(row) for row in checkpoint_rows.variants_of(session, search.id)]


def build_search_page(
    session: Session,
    user: User,
    search_id: int,
    storage: BaseStorage | None,
    importance_cache: ImportanceCache,
) -> SearchPage:
    """Gather a search's page from the service layer (NotFound for another user's search).

    Args:
        session: The request's session.
        user: The viewer.
        search_id: The search.
        storage: Optuna storage for parameter importances (None skips them).
        importance_cache: Importances cached per search and complete-trial count.
    """
    search = searches.get(session, search_id, user)
    dataset = datasets.get(session, search.dataset_id, user)
    rows = sorted(search_rows.trials_by_number(session, search.id).values(), key=lambda r: r.number)
    progress = search.progress or {}
    baselines = {str(k): v for k, v in (progress.get("baselines") or {}).items()}
    for row in rows:  # baselines finished since the last progress refresh
        if row.role == "baseline" and row.baseline and row.value is not None:
            baselines[row.baseline] = row.value
    final_pick, contenders = _final_pick(progress)
    points = [_point(r, contenders) for r in rows]
    ops_svg, top_count = _ops_chart(rows)
    n_complete = sum(1 for r in rows if r.role == "search" and r.state == "COMPLETE")
    importance = (
        importance_cache.get(storage, search.id, n_complete)
        if storage is not None
        else Importance({}, "the Optuna storage is not available")
    )
    page = SearchPage(
        search=search, dataset_name=dataset.name, trials=[_row(r, contenders) for r in rows],
        trials_svg=trial_scatter(points, baselines), epochs_svg=epoch_curves(points),
        ops_svg=ops_svg, top_count=top_count, importance_svg=_importance_chart(importance),
        importance=importance, baselines=baselines, final_pick=final_pick,
    )  # fmt: skip
    _attach_result(page, session, search, user)
    jobs, _ = self_trainings.jobs_of_search(session, search.id, 0, 20)
    page.self_trainings = [SelfTrainingRead.model_validate(j) for j in jobs]
    return page
