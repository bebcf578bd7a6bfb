"""The life of a search in Optuna storage: create, advance, cancel, resume, reap stale trials.

A search is the study ``search-<id>``. Its user attrs hold ``spec`` (SearchSpec JSON), ``state``
and ``priority``; trials carry a ``role`` user attr:

- ``baseline``: a preset policy, enqueued at creation (fixed param ``baseline`` = preset name,
  never suggested, so it does not enter the sampler's space; the policy is in ``policy``).
- ``search``: a trial drawn by the sampler (no role attr until the objective sets it).
- ``candidate``: strategies whose search trials are not proxy trainings (fast-autoaugment score
  candidates by density matching) get one candidate trial that trains the merged policy like a
  baseline, so it can be compared with the baselines.
- ``final``: the final pick (`search.final_pick`). The best baselines by proxy value and, once
  the search budget is spent, the best distinct searched policies (``spec.final_pick``) are each
  retrained with the final recipe on the whole training part, one ``final`` trial per contender
  (fixed params ``final`` = contender index, ``attempt``). The served policy is the contender
  with the best validation accuracy at that fidelity, never a proxy-only winner; the study attr
  ``final_pick`` lists the contenders (presets first), and the result records their proxy and
  final values and the Kendall tau between the two rankings (how far the proxy could be
  trusted). The preset contenders depend on the baselines alone: they are chosen (study attr
  ``final_pick_presets``) and their finals enqueued as soon as every baseline is over, so that
  they train beside the search trials instead of after them (the pick's trainings would
  otherwise leave workers idle at the end: three finals on two workers take two rounds).

The budget: every search trial that starts training counts (`budget_used`), pruned or not; a
trial turned away at its start (budget full, search not open) carries the ``skipped`` attr and
does not count.

States: ``open`` -> ``finalizing`` -> ``done``; ``cancelled`` (reversible with `resume`) and
``failed`` (too many failed trials) are the other ends. `advance` is idempotent: it may be called
by any worker or by the service's reconciler at any time; `advance`, `cancel` and `resume` hold
the search's lock (`search.locks`) so that concurrent callers change its state one at a time.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from search.final_pick import (
    MAX_FINAL_ATTEMPTS,
    PRESET_PICK_ATTR,
    BestPolicy,
    best_of,
    contender_attr,
    enqueue_final,
    enqueue_presets,
    fixed_param,
    pick_presets,
    pick_result,
    pick_searched,
    saturated_presets,
)
from search.locks import search_lock
from search.roles import ROLES, UNFINISHED, role_of
from search.spec import SearchSpec, baseline_policy
from search.storage import fail_stale_trials, make_storage
from search.strategies import get_strategy, make_pruner, make_sampler

OPEN, FINALIZING, DONE, CANCELLED, FAILED = "open", "finalizing", "done", "cancelled", "failed"
STATES = (OPEN, FINALIZING, DONE, CANCELLED, FAILED)
ACTIVE_STATES = (OPEN, FINALIZING)
#: Trial attrs of the budget: ``budget_claim`` is written when a search trial starts to train,
#: ``skipped`` when it is turned away before training.
CLAIM_ATTR, SKIPPED_ATTR = "budget_claim", "skipped"
STUDY_PREFIX = "search-"
#: Set on a trial that failed because it was stopped (its worker terminated, its search
#: cancelled), not by its own fault: it never counts toward the failure limit.
STOPPED_ATTR = "stopped"
#: Search trial attr: the number of the baseline whose proxy training it reuses (a starting
#: point that is a preset trained as a baseline is not trained twice).
REUSED_ATTR = "reused_from"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class SearchNotFound(LookupError):
    """No study exists for this search id."""


def study_name(search_id: str) -> str:
    """Return the study name of a search (``search-<id>``).

    Raises:
        ValueError: if the id is empty or has characters outside ``[A-Za-z0-9_.-]``.
    """
    if not _ID_RE.match(search_id):
        raise ValueError(f"invalid search id {search_id!r}: use 1-100 of [A-Za-z0-9_.-]")
    return STUDY_PREFIX + search_id


def spec_of(study: optuna.Study) -> SearchSpec:
    """Read the SearchSpec stored in a search study."""
    return SearchSpec.model_validate_json(study.user_attrs["spec"])


def create_search_study(
    storage: BaseStorage | str, search_id: str, spec: SearchSpec
) -> optuna.Study:
    """Create (or load) the study of a search, store its spec and enqueue the baselines.

    The strategy's starting points (presets its space can express) are enqueued after the
    baselines as the first search trials (model-based samplers only: TPE, CMA-ES) (user attr ``start_point``); they count towards
    ``n_trials`` like any search trial.

    Safe to call twice: the study is loaded if it exists and baselines are not enqueued again.
    """
    name = study_name(search_id)
    study = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", load_if_exists=True
    )
    if "spec" in study.user_attrs:
        if study.user_attrs["spec"] != spec.model_dump_json():
            raise ValueError(f"search {search_id!r} already exists with a different spec")
        return study
    for baseline in spec.baselines:
        study.enqueue_trial(
            {"baseline": baseline},
            user_attrs={
                "role": "baseline",
                "baseline": baseline,
                "policy": baseline_policy(baseline).model_dump(mode="json"),
            },
            skip_if_exists=True,
        )
    # A grid visits every point anyway; random search stays the unbiased reference method.
    if spec.sampler not in ("grid", "random"):
        points = get_strategy(spec.strategy, spec).starting_points()
        for preset, params in list(points.items())[: spec.n_trials]:
            study.enqueue_trial(
                params,
                user_attrs={"role": "search", "start_point": preset},
                skip_if_exists=True,
            )
    study.set_user_attr("priority", spec.priority)
    study.set_user_attr("state", OPEN)
    # Written last: its presence marks a fully created search.
    study.set_user_attr("spec", spec.model_dump_json())
    return study


def load_search_study(
    storage: BaseStorage | str, search_id: str, *, sampler_seed: int | None = None
) -> optuna.Study:
    """Load a search study with the sampler and pruner its spec asks for.

    Args:
        storage: Optuna storage or URL.
        search_id: the search.
        sampler_seed: seed of the sampler; each worker passes its own so that concurrent workers
            do not draw identical trials (default: the spec's seed).
    """
    name = study_name(search_id)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise SearchNotFound(f"no search {search_id!r} (study {name!r})") from None
    if "spec" not in study.user_attrs:
        raise SearchNotFound(f"study {name!r} is not a fully created search")
    spec = spec_of(study)
    strategy = get_strategy(spec.strategy, spec)
    seed = spec.seed if sampler_seed is None else sampler_seed
    return optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(spec, strategy, seed),
        pruner=make_pruner(spec),
    )


def counts_toward_budget(trial: FrozenTrial, *, running: bool = True) -> bool:
    """Whether a search trial used (or, running, holds) a training of the budget.

    Complete and pruned search trials count unless they were turned away before training;
    running ones count once they claimed their slot (``running`` False leaves them out).
    """
    if role_of(trial) != "search" or trial.user_attrs.get(SKIPPED_ATTR):
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return running and trial.state == TrialState.RUNNING and bool(trial.user_attrs.get(CLAIM_ATTR))


def budget_used(trials: list[FrozenTrial], *, running: bool = True) -> int:
    """Search trainings that count towards ``n_trials`` (see `counts_toward_budget`)."""
    return sum(1 for t in trials if counts_toward_budget(t, running=running))


@dataclass
class StudyStatus:
    """Where a search stands.

    Attributes:
        search_id: the search.
        state: one of `STATES`.
        n_trials: budget of search trainings (complete or pruned).
        counts: ``{role: {trial state name: count}}``.
        best: the best complete baseline/search/candidate trial so far.
        baselines: value of each baseline (None until it completes).
        result: set when done: policy, checkpoint, model_card, sha256, accuracy, trial_number.
        error: why the search failed, if it did.
    """

    search_id: str
    state: str
    n_trials: int
    counts: dict[str, dict[str, int]]
    best: BestPolicy | None
    baselines: dict[str, float | None]
    result: dict[str, Any] | None = None
    error: str | None = None

    def count(self, role: str, state: str) -> int:
        """Number of trials of ``role`` in trial state ``state`` (e.g. "COMPLETE")."""
        return self.counts.get(role, {}).get(state, 0)


def _counts(trials: list[FrozenTrial]) -> dict[str, dict[str, int]]:
    counter = Counter((role_of(t), t.state.name) for t in trials)
    out: dict[str, dict[str, int]] = {}
    for (role, state), n in sorted(counter.items()):
        out.setdefault(role, {})[state] = n
    return out


def best_policy(trials: list[FrozenTrial], spec: SearchSpec) -> BestPolicy | None:
    """The best complete trial whose value is a proxy-training accuracy (`BestPolicy.rank`)."""
    roles = {"baseline", "candidate"}
    if get_strategy(spec.strategy, spec).trains_in_search:
        roles.add("search")
    ranked = [
        best_of(t)
        for t in trials
        if t.state == TrialState.COMPLETE
        and role_of(t) in roles
        and t.value is not None
        and "policy" in t.user_attrs
    ]
    return min(ranked, key=BestPolicy.rank) if ranked else None


def status(storage: BaseStorage | str, search_id: str) -> StudyStatus:
    """Describe a search without changing it."""
    study = _load_plain(storage, search_id)
    return _status(study, search_id, study.get_trials(deepcopy=False))


def _storage(storage: BaseStorage | str) -> BaseStorage:
    return optuna.storages.get_storage(storage) if isinstance(storage, str) else storage


def _load_plain(storage: BaseStorage | str, search_id: str) -> optuna.Study:
    try:
        study = optuna.load_study(study_name=study_name(search_id), storage=storage)
    except KeyError:
        raise SearchNotFound(f"no search {search_id!r}") from None
    if "spec" not in study.user_attrs:
        raise SearchNotFound(f"search {search_id!r} is not fully created")
    return study


def _status(study: optuna.Study, search_id: str, trials: list[FrozenTrial]) -> StudyStatus:
    spec = spec_of(study)
    baselines: dict[str, float | None] = dict.fromkeys(spec.baselines)
    for t in trials:
        if role_of(t) == "baseline" and t.state == TrialState.COMPLETE:
            baselines[str(t.user_attrs["baseline"])] = t.value
    attrs = study.user_attrs
    return StudyStatus(
        search_id=search_id,
        state=str(attrs.get("state", OPEN)),
        n_trials=spec.n_trials,
        counts=_counts(trials),
        best=best_policy(trials, spec),
        baselines=baselines,
        result=attrs.get("result"),
        error=attrs.get("error"),
    )


def advance(storage: BaseStorage | str, search_id: str) -> StudyStatus:
    """Move a search on when its current stage is over; idempotent.

    - open: once ``n_trials`` search trainings are over (complete or pruned) and no
      search/baseline trial is running or waiting, enqueue the candidate (strategies that need
      one) and then the final pick, one final trial per contender; state becomes
      ``finalizing``.
    - finalizing: once every contender's final trial is COMPLETE (or failed
      `MAX_FINAL_ATTEMPTS` times; failures are re-enqueued), record the winner as the result
      and set ``done``.
    """
    storage = _storage(storage)
    with search_lock(storage, search_id):
        return _advance(storage, search_id)


def _advance(storage: BaseStorage, search_id: str) -> StudyStatus:
    """`advance` for a caller that holds the search's lock."""
    study = _load_plain(storage, search_id)
    spec = spec_of(study)
    state = study.user_attrs.get("state", OPEN)
    if state == OPEN:
        state = _advance_open(study, spec, study.get_trials(deepcopy=False))
    if state == FINALIZING:
        _advance_finalizing(study, spec, study.get_trials(deepcopy=False))
    return _status(study, search_id, study.get_trials(deepcopy=False))


def _fail(study: optuna.Study, error: str) -> str:
    study.set_user_attr("error", error)
    study.set_user_attr("state", FAILED)
    return FAILED


def _advance_open(study: optuna.Study, spec: SearchSpec, trials: list[FrozenTrial]) -> str:
    by_role: dict[str, list[FrozenTrial]] = {r: [] for r in ROLES}
    for t in trials:
        by_role.setdefault(role_of(t), []).append(t)
    enqueue_presets(study, spec, by_role["baseline"])
    if spec.final_pick.end_when_saturated:
        unbeatable = saturated_presets(study, by_role["final"])
        if unbeatable is not None:
            return _end_saturated(study, spec, trials, unbeatable)
    complete = [t for t in by_role["search"] if t.state == TrialState.COMPLETE]
    failed = [
        t
        for t in by_role["search"]
        if t.state == TrialState.FAIL and not t.user_attrs.get(STOPPED_ATTR)
    ]
    if budget_used(by_role["search"], running=False) < spec.n_trials:
        if len(failed) > max(5, 2 * spec.n_trials):
            return _fail(study, f"{len(failed)} search trials failed; last error: "
                         f"{failed[-1].user_attrs.get('error', 'unknown')}")  # fmt: skip
        return OPEN
    if any(t.state in UNFINISHED for r in ("search", "baseline") for t in by_role[r]):
        return OPEN
    strategy = get_strategy(spec.strategy, spec)
    if not strategy.trains_in_search:
        candidates = by_role["candidate"]
        if not candidates:
            merged = strategy.merge(complete)
            study.enqueue_trial(
                {"candidate": 0},
                user_attrs={"role": "candidate", "policy": merged.model_dump(mode="json")},
                skip_if_exists=True,
            )
            return OPEN
        if any(t.state in UNFINISHED for t in candidates):
            return OPEN
    presets = study.user_attrs.get(PRESET_PICK_ATTR)
    if presets is None:  # a search that began before presets were picked early
        presets = [contender_attr(c) for c in pick_presets(trials, spec)]
    searched = pick_searched(trials, spec, presets)
    contenders = [*presets, *(contender_attr(c) for c in searched)]
    if not contenders:
        return _fail(study, "no baseline or candidate trial completed; nothing to retrain")
    study.set_user_attr("final_pick", contenders)
    # The state first: a worker that pops a final trial of a search still open prunes it
    # ("not needed"), which would spend one of its attempts. `_advance_finalizing` enqueues
    # any contender left without a trial, should this process stop in between. The presets'
    # finals already enqueued are skipped (same fixed params).
    study.set_user_attr("state", FINALIZING)
    for index, contender in enumerate(contenders):
        enqueue_final(study, index, contender, attempt=0)
    return FINALIZING


def _end_saturated(
    study: optuna.Study, spec: SearchSpec, trials: list[FrozenTrial],
    done: dict[int, FrozenTrial],
) -> str:  # fmt: skip
    """End an open search whose preset contender scored 1.000 on validation at final fidelity.

    No policy can beat it on this split (ties go to presets), so the served policy is the
    best of the presets' finals; search trials still running stop at their next epoch
    (`search.objective`), waiting ones are pruned.
    """
    presets: list[dict[str, Any]] = list(study.user_attrs.get(PRESET_PICK_ATTR) or [])
    searched = sum(1 for t in trials if role_of(t) == "search" and t.state == TrialState.COMPLETE)
    result = pick_result(presets, done)
    result["ended_early"] = {"search_trials": searched, "n_trials": spec.n_trials}
    study.set_user_attr("final_pick", presets)
    return _done(study, result, trials)


def _advance_finalizing(study: optuna.Study, spec: SearchSpec, trials: list[FrozenTrial]) -> str:
    contenders: list[dict[str, Any]] = list(study.user_attrs.get("final_pick", []))
    finals = [t for t in trials if role_of(t) == "final"]
    if spec.final_pick.end_when_saturated and saturated_presets(study, finals) is not None:
        # A preset's final at 1.000 wins whatever the searched finals still running score.
        answered = {fixed_param(t, "final"): t for t in reversed(finals)
                    if t.state == TrialState.COMPLETE}  # fmt: skip
        return _done(study, pick_result(contenders, answered), finals)
    done: dict[int, FrozenTrial] = {}
    waiting = False
    for index, contender in enumerate(contenders):
        mine = [t for t in finals if fixed_param(t, "final") == index]
        complete = [t for t in mine if t.state == TrialState.COMPLETE]
        if complete:
            done[index] = complete[0]
            continue
        if any(t.state in UNFINISHED for t in mine):
            waiting = True
            continue
        attempts = {fixed_param(t, "attempt") for t in mine}
        if len(attempts) < MAX_FINAL_ATTEMPTS:
            enqueue_final(study, index, contender, attempt=max(attempts, default=-1) + 1)
            waiting = True
    if waiting:
        return FINALIZING
    if not done:
        last = finals[-1].user_attrs.get("error", "unknown") if finals else "unknown"
        return _fail(study, f"every final training failed; last error: {last}")
    return _done(study, pick_result(contenders, done), finals)


def _done(study: optuna.Study, result: dict[str, Any], trials: list[FrozenTrial]) -> str:
    """Record the search's result, mark it done and drop its waiting ``trials``."""
    study.set_user_attr("result", result)
    study.set_user_attr("state", DONE)
    _drop_waiting(study, trials)
    return DONE


def _drop_waiting(study: optuna.Study, trials: list[FrozenTrial]) -> None:
    """Prune duplicate trials still waiting (concurrent advances may enqueue one twice)."""
    for t in trials:
        if t.state == TrialState.WAITING:
            # A worker that popped it meanwhile prunes it itself (the search is done).
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                study._storage.set_trial_state_values(t._trial_id, TrialState.PRUNED)


def cancel(storage: BaseStorage | str, search_id: str) -> StudyStatus:
    """Cancel a search: workers stop its running trials between epochs and start no new ones."""
    storage = _storage(storage)
    with search_lock(storage, search_id):
        study = _load_plain(storage, search_id)
        if study.user_attrs.get("state") in ACTIVE_STATES:
            study.set_user_attr("state", CANCELLED)
        return status(storage, search_id)


def resume(storage: BaseStorage | str, search_id: str) -> StudyStatus:
    """Reopen a cancelled search; its waiting trials run and its stage is recomputed."""
    storage = _storage(storage)
    with search_lock(storage, search_id):
        study = _load_plain(storage, search_id)
        if study.user_attrs.get("state") == CANCELLED:
            final_enqueued = "final_pick" in study.user_attrs
            study.set_user_attr("state", FINALIZING if final_enqueued else OPEN)
        return _advance(storage, search_id)


def fail_stale(storage: BaseStorage | str, search_id: str) -> list[int]:
    """Fail trials whose worker stopped heart-beating (and re-queue them by the retry callback).

    Works with no worker alive: call it from the reconciler. Trials of RDB storages with
    heartbeats (see `make_storage`) and trials held by a lease (gRPC workers) are checked; a
    URL is opened with the default heartbeat settings.

    Returns:
        Numbers of the trials that were failed.
    """
    if isinstance(storage, str):
        storage = make_storage(storage)
    return fail_stale_trials(_load_plain(storage, search_id))
