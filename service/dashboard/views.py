"""View models of the list, policy, dataset, workers and launch pages, built from the services."""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.dashboard.charts import Bar, bar_chart
from service.datasets import service as datasets
from service.db.models import Dataset, Search, User
from service.errors import InvalidInput, NotFound
from service.policies import service as policies
from service.searches import service as searches
from service.searches.states import SearchState

LIST_LIMIT = 100
EXPORT_FORMATS = ("json", "torchvision", "albumentations", "timm")
#: The exports of a text policy (the image frameworks refuse it).
TEXT_EXPORT_FORMATS = ("json", "python")


@dataclass(frozen=True)
class SearchRow:
    """One line of the searches list (the same fields the list's live update refreshes).

    ``started`` counts the search trainings started (`budget_used`) against ``n_trials``;
    ``percent`` covers the search and the final pick together.
    """

    id: int
    name: str
    state: str
    dataset_id: int
    dataset_name: str
    strategy: str
    started: int
    n_trials: int
    finals_done: int
    finals: int
    percent: float
    best: float | None
    best_baseline: float | None
    created_at: datetime
    eta_s: float | None


def progress_percent(state: str, progress: dict[str, Any], n_trials: int) -> float:
    """Share of a search's trainings done or under way: search budget, then the final pick."""
    if state == "completed":
        return 100.0
    started = min(int(progress.get("budget_used", progress.get("complete")) or 0), n_trials)
    finals = int(progress.get("finals") or 0)
    total = n_trials + finals
    done = started + int(progress.get("finals_done") or 0)
    return round(min(100.0, 100.0 * done / total), 1) if total else 0.0


def search_row(search: Search, dataset_names: dict[int, str]) -> SearchRow:
    """The list line of a search, from its cached progress."""
    progress = search.progress or {}
    n_trials = int(progress.get("n_trials") or search.spec.get("n_trials") or 0)
    started = int(progress.get("budget_used", progress.get("complete")) or 0)
    best = progress.get("best_search_value")
    return SearchRow(
        id=search.id, name=search.name, state=search.state, dataset_id=search.dataset_id,
        dataset_name=dataset_names.get(search.dataset_id, f"dataset {search.dataset_id}"),
        strategy=str(search.spec.get("strategy", "?")), started=started, n_trials=n_trials,
        finals_done=int(progress.get("finals_done") or 0),
        finals=int(progress.get("finals") or 0),
        percent=progress_percent(search.state, progress, n_trials),
        best=best if best is not None else search.best_value,
        best_baseline=progress.get("best_baseline_value"), created_at=search.created_at,
        eta_s=progress.get("eta_s") if search.state in ("queued", "running", "finalizing") else None,
    )  # fmt: skip


def dataset_names(session: Session, user: User) -> dict[int, str]:
    """Names of the datasets the viewer may see, by id."""
    rows, _ = datasets.list_page(session, user, 0, 10_000)
    return {d.id: d.name for d in rows}


def parse_filters(state: str, dataset_id: str) -> tuple[SearchState | None, int | None]:
    """Read the list's filters as the HTML form sends them (an empty field means "any").

    Raises:
        InvalidInput: for an unknown state or a dataset id that is not a positive integer.
    """
    chosen = None
    if state:
        try:
            chosen = SearchState(state)
        except ValueError as exc:
            known = ", ".join(s.value for s in SearchState)
            raise InvalidInput(f"unknown state {state!r}; use one of {known}") from exc
    if not dataset_id:
        return chosen, None
    if not dataset_id.isdigit() or not 1 <= int(dataset_id) <= 2**31 - 1:
        raise InvalidInput(f"dataset_id must be a positive integer, got {dataset_id!r}")
    return chosen, int(dataset_id)


def search_rows(
    session: Session, user: User, state: SearchState | None, dataset_id: int | None
) -> tuple[list[SearchRow], int]:
    """The newest searches matching the filters, as list lines, and how many match."""
    rows, total = searches.list_page(session, user, 0, LIST_LIMIT, state, dataset_id)
    names = dataset_names(session, user)
    return [search_row(s, names) for s in rows], total


@dataclass
class PolicyPage:
    """A search's best policy in words and in every export format."""

    search: Search
    accuracy: float | None
    provisional: bool
    policy: dict[str, Any]
    lines: list[str]
    exports: dict[str, str] = field(default_factory=dict)
    export_errors: dict[str, str] = field(default_factory=dict)
    formats: tuple[str, ...] = EXPORT_FORMATS
    #: A text policy's examples: (sentence, augmented versions); empty for image policies.
    examples: list[tuple[str, list[str]]] = field(default_factory=list)


def build_policy_page(session: Session, user: User, search_id: int) -> PolicyPage:
    """The policy page of a search (NotFound until it has a policy)."""
    from ops.policy import load_policy

    search = searches.get(session, search_id, user)
    payload = policies.search_payload(session, search.id, user)
    page = PolicyPage(
        search=search, accuracy=payload["accuracy"], provisional=bool(payload["provisional"]),
        policy=payload["policy"], lines=load_policy(payload["policy"]).describe(),
    )  # fmt: skip
    if payload["policy"].get("kind") == "text":
        from service.dashboard.text_examples import text_examples

        page.formats = TEXT_EXPORT_FORMATS
        dataset = datasets.get(session, search.dataset_id, user)
        page.examples = text_examples(dataset.spec, payload["policy"], seed=search.id)
    for fmt in page.formats:
        try:
            exported = policies.export(payload, fmt).exported  # type: ignore[arg-type]
        except InvalidInput as exc:
            page.export_errors[fmt] = exc.message
            continue
        if fmt == "json":
            exported = payload["policy"]
        page.exports[fmt] = (
            exported if isinstance(exported, str) else json.dumps(exported, indent=2)
        )
    return page


@dataclass
class DatasetPage:
    """A dataset's statistics, searches and best policy."""

    dataset: Dataset
    classes_svg: str
    searches: list[SearchRow]
    best: dict[str, Any] | None


def class_histogram(counts: dict[str, int], classes: list[str]) -> str:
    """Bars of images per class, in the dataset's class order."""
    order = classes or sorted(counts)
    bars = [Bar(name, counts.get(name, 0), {"class": name}) for name in order]
    return bar_chart("classes", bars, "Images per class")


def build_dataset_page(session: Session, user: User, dataset_id: int) -> DatasetPage:
    """The dataset page (NotFound for another user's dataset)."""
    dataset = datasets.get(session, dataset_id, user)
    rows, _ = searches.list_page(session, user, 0, LIST_LIMIT, None, dataset.id)
    names = {dataset.id: dataset.name}
    try:
        _, best = policies.dataset_payload(session, dataset.id, user)
    except NotFound:
        best = None
    return DatasetPage(
        dataset=dataset,
        classes_svg=class_histogram(dict(dataset.counts_per_class), list(dataset.classes)),
        searches=[search_row(s, names) for s in rows],
        best=best,
    )


@dataclass(frozen=True)
class PresetPage:
    """A preset policy in words, previewed on one of the viewer's datasets."""

    name: str
    policy: dict[str, Any]
    lines: list[str]
    datasets: list[Dataset]
    dataset: Dataset | None


def preset_policy(name: str) -> dict[str, Any]:
    """The policy JSON of the preset called ``name``.

    Raises:
        NotFound: no preset has that name.
    """
    from ops.presets import PRESETS

    if name not in PRESETS:
        raise NotFound(f"preset {name!r} not found; known presets: {', '.join(PRESETS)}")
    return PRESETS[name].model_dump(mode="json")


def preset_names() -> list[str]:
    """Every preset's name, in the catalogue's order."""
    from ops.presets import PRESETS

    return list(PRESETS)


def build_preset_page(
    session: Session, user: User, name: str, dataset_id: int | None
) -> PresetPage:
    """The preset page; the preview uses ``dataset_id`` or else the viewer's newest dataset.

    Raises:
        NotFound: an unknown preset, or a dataset the viewer does not own.
    """
    from ops.policy import load_policy

    policy = preset_policy(name)
    owned = datasets_list(session, user)
    if dataset_id is not None:
        chosen: Dataset | None = datasets.get(session, dataset_id, user)
    else:
        chosen = owned[0] if owned else None
    return PresetPage(name=name, policy=policy, lines=load_policy(policy).describe(),
                      datasets=owned, dataset=chosen)  # fmt: skip


def datasets_list(session: Session, user: User) -> list[Dataset]:
    """The viewer's datasets, newest first."""
    rows, _ = datasets.list_page(session, user, 0, LIST_LIMIT)
    return rows


@dataclass(frozen=True)
class LaunchOptions:
    """The choices of the launch form, read from the search spec model itself."""

    strategies: list[str]
    samplers: list[str]
    pruners: list[str]
    baselines: list[str]
    default_baselines: list[str]
    archs: list[str]


def launch_options() -> LaunchOptions:
    """Choices offered by the launch form (from ``search.spec`` so they never drift)."""
    from search import spec as spec_module
    from search.training.recipe import TrainerRecipe

    def choices(alias: Any) -> list[str]:
        return [str(v) for v in typing.get_args(alias)]

    arch = TrainerRecipe.model_fields["arch"].annotation
    return LaunchOptions(
        strategies=choices(spec_module.StrategyName),
        samplers=choices(spec_module.SamplerName),
        pruners=choices(spec_module.PrunerName),
        baselines=choices(spec_module.BaselineName),
        default_baselines=list(spec_module.DEFAULT_BASELINES),
        archs=choices(arch),
    )
