"""The life of a search in Optuna storage: create, advance, cancel, resume, reap stale trials.

A search is the study ``search-<id>``. Its user attrs hold ``spec`` (SearchSpec JSON), ``state``
and ``priority``; trials carry a ``role`` user attr:

- ``baseline``: a preset policy, enqueued at creation (fixed param ``baseline`` = preset name,
  never suggested, so it does not enter the sampler's space; the policy is in ``policy``).
- ``search``: a trial drawn by the sampler (no role attr until the objective sets it).
- ``candidate``: strategies whose search trials are not proxy trainings (fast-autoaugment score
  candidates by density matching) get one candidate trial that trains the merged policy like a
  baseline, so it can be compared with the baselines.
- ``final``: the best policy (baselines included: the user wants the best policy, whatever found
  it) retrained with the final recipe on the full training split; its checkpoint is the result.

States: ``open`` -> ``finalizing`` -> ``done``; ``cancelled`` (reversible with `resume`) and
``failed`` (too many failed trials) are the other ends. `advance` is idempotent: it may be called
by any worker or by the service's reconciler at any time.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from search.spec import SearchSpec
from search.storage import fail_stale_trials, make_storage
from search.strategies import get_strategy, make_pruner, make_sampler

OPEN, FINALIZING, DONE, CANCELLED, FAILED = "open", "finalizing", "done", "cancelled", "failed"
STATES = (OPEN, FINALIZING, DONE, CANCELLED, FAILED)
ACTIVE_STATES = (OPEN, FINALIZING)
ROLES = ("baseline", "search", "candidate", "final")
STUDY_PREFIX = "search-"
MAX_FINAL_ATTEMPTS = 3
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)


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
    from ops.presets import PRESETS

    for baseline in spec.baselines:
        study.enqueue_trial(
            {"baseline": baseline},
            user_attrs={
                "role": "baseline",
                "baseline": baseline,
                "policy": PRESETS[baseline].model_dump(mode="json"),
            },
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


def role_of(trial: FrozenTrial) -> str:
    """The role of a trial (sampled trials without the attr are search trials)."""
    return str(trial.user_attrs.get("role", "search"))


@dataclass
class BestPolicy:
    """The best policy found so far and where it came from."""

    value: float
    trial_number: int
    role: str
    policy: dict[str, Any]
    baseline: str | None = None
    recipe_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudyStatus:
    """Where a search stands.

    Attributes:
        search_id: the search.
        state: one of `STATES`.
        n_trials: budget of complete search trials.
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
    """The best complete trial whose value is a proxy-training accuracy (ties: earliest)."""
    roles = {"baseline", "candidate"}
    if get_strategy(spec.strategy, spec).trains_in_search:
        roles.add("search")
    best: BestPolicy | None = None
    for t in trials:
        if t.state != TrialState.COMPLETE or role_of(t) not in roles or t.value is None:
            continue
        if "policy" not in t.user_attrs:
            continue
        if best is None or t.value > best.value:
            best = BestPolicy(
                value=float(t.value),
                trial_number=t.number,
                role=role_of(t),
                policy=dict(t.user_attrs["policy"]),
                baseline=t.user_attrs.get("baseline"),
                recipe_overrides=dict(t.user_attrs.get("recipe_overrides", {})),
            )
    return best


def status(storage: BaseStorage | str, search_id: str) -> StudyStatus:
    """Describe a search without changing it."""
    study = _load_plain(storage, search_id)
    return _status(study, search_id, study.get_trials(deepcopy=False))


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

    - open: once ``n_trials`` search trials are COMPLETE and no search/baseline trial is
      running or waiting, enqueue the candidate (strategies that need one) and then ONE final
      trial with the best policy; state becomes ``finalizing``.
    - finalizing: once the final trial is COMPLETE, record the result and set ``done``; a
      failed final trial is re-enqueued up to `MAX_FINAL_ATTEMPTS` times.
    """
    study = _load_plain(storage, search_id)
    spec = spec_of(study)
    state = study.user_attrs.get("state", OPEN)
    if state == OPEN:
        state = _advance_open(study, spec, study.get_trials(deepcopy=False))
    if state == FINALIZING:
        _advance_finalizing(study, study.get_trials(deepcopy=False))
    return _status(study, search_id, study.get_trials(deepcopy=False))


def _fail(study: optuna.Study, error: str) -> str:
    study.set_user_attr("error", error)
    study.set_user_attr("state", FAILED)
    return FAILED


def _advance_open(study: optuna.Study, spec: SearchSpec, trials: list[FrozenTrial]) -> str:
    by_role: dict[str, list[FrozenTrial]] = {r: [] for r in ROLES}
    for t in trials:
        by_role.setdefault(role_of(t), []).append(t)
    complete = [t for t in by_role["search"] if t.state == TrialState.COMPLETE]
    failed = [t for t in by_role["search"] if t.state == TrialState.FAIL]
    if len(complete) < spec.n_trials:
        if len(failed) > max(5, 2 * spec.n_trials):
            return _fail(study, f"{len(failed)} search trials failed; last error: "
                         f"{failed[-1].user_attrs.get('error', 'unknown')}")  # fmt: skip
        return OPEN
    if any(t.state in _UNFINISHED for r in ("search", "baseline") for t in by_role[r]):
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
        if any(t.state in _UNFINISHED for t in candidates):
            return OPEN
    best = best_policy(trials, spec)
    if best is None:
        return _fail(study, "no baseline or candidate trial completed; nothing to retrain")
    study.set_user_attr("best", _best_attr(best))
    _enqueue_final(study, best, attempt=0)
    study.set_user_attr("state", FINALIZING)
    return FINALIZING


def _best_attr(best: BestPolicy) -> dict[str, Any]:
    return {
        "value": best.value,
        "trial_number": best.trial_number,
        "role": best.role,
        "baseline": best.baseline,
        "policy": best.policy,
        "recipe_overrides": best.recipe_overrides,
    }


def _enqueue_final(study: optuna.Study, best: BestPolicy, attempt: int) -> None:
    study.enqueue_trial(
        {"final": attempt},
        user_attrs={
            "role": "final",
            "policy": best.policy,
            "source_trial": best.trial_number,
            "source_role": best.role,
            "baseline": best.baseline,
            "recipe_overrides": best.recipe_overrides,
        },
        skip_if_exists=True,
    )


def _advance_finalizing(study: optuna.Study, trials: list[FrozenTrial]) -> str:
    finals = [t for t in trials if role_of(t) == "final"]
    done = [t for t in finals if t.state == TrialState.COMPLETE]
    if done:
        final = done[0]
        attrs = final.user_attrs
        study.set_user_attr(
            "result",
            {
                "trial_number": final.number,
                "accuracy": final.value,
                "test_accuracy": attrs.get("test_accuracy"),
                "policy": attrs["policy"],
                "source_role": attrs.get("source_role"),
                "baseline": attrs.get("baseline"),
                "checkpoint": attrs.get("checkpoint"),
                "model_card": attrs.get("model_card"),
                "sha256": attrs.get("sha256"),
            },
        )
        study.set_user_attr("state", DONE)
        _drop_waiting(study, finals)
        return DONE
    if any(t.state in _UNFINISHED for t in finals):
        return FINALIZING
    attempts = {int(t.system_attrs.get("fixed_params", {}).get("final", 0)) for t in finals}
    if len(attempts) >= MAX_FINAL_ATTEMPTS:
        last = finals[-1].user_attrs.get("error", "unknown") if finals else "unknown"
        return _fail(study, f"final training failed {len(attempts)} times; last error: {last}")
    b = study.user_attrs["best"]
    best = BestPolicy(
        value=b["value"],
        trial_number=b["trial_number"],
        role=b["role"],
        policy=b["policy"],
        baseline=b.get("baseline"),
        recipe_overrides=b.get("recipe_overrides", {}),
    )
    _enqueue_final(study, best, attempt=max(attempts, default=-1) + 1)
    return FINALIZING


def _drop_waiting(study: optuna.Study, trials: list[FrozenTrial]) -> None:
    """Prune duplicate trials still waiting (concurrent advances may enqueue one twice)."""
    for t in trials:
        if t.state == TrialState.WAITING:
            # A worker that popped it meanwhile prunes it itself (the search is done).
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                study._storage.set_trial_state_values(t._trial_id, TrialState.PRUNED)


def cancel(storage: BaseStorage | str, search_id: str) -> StudyStatus:
    """Cancel a search: workers stop its running trials between epochs and start no new ones."""
    study = _load_plain(storage, search_id)
    if study.user_attrs.get("state") in ACTIVE_STATES:
        study.set_user_attr("state", CANCELLED)
    return status(storage, search_id)


def resume(storage: BaseStorage | str, search_id: str) -> StudyStatus:
    """Reopen a cancelled search; its waiting trials run and its stage is recomputed."""
    study = _load_plain(storage, search_id)
    if study.user_attrs.get("state") == CANCELLED:
        final_enqueued = "best" in study.user_attrs
        study.set_user_attr("state", FINALIZING if final_enqueued else OPEN)
    return advance(storage, search_id)


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
