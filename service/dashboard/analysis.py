"""What the search page derives from trials: op frequencies in the top trials, importances."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

log = logging.getLogger(__name__)

MIN_TRIALS_FOR_IMPORTANCE = 4


@dataclass(frozen=True)
class OpCount:
    """How often an op appears in the top trials' policies, and its mean magnitude there."""

    op: str
    count: int
    mean_magnitude: float | None


def _policy_steps(policy: dict[str, Any]) -> list[tuple[str, float | None]]:
    """``(op, magnitude)`` of every op a policy JSON can apply."""
    from ops.policy import load_policy

    parsed = load_policy(policy)
    if parsed.kind == "subpolicies":
        return [(step.op, step.magnitude) for sub in parsed.sub_policies for step in sub]
    if parsed.kind in ("randaugment", "trivialaugment"):
        magnitude = parsed.m if parsed.kind == "randaugment" else None
        return [(op, magnitude) for op in parsed.op_set]
    return []


def op_frequencies(policies: Sequence[dict[str, Any]]) -> list[OpCount]:
    """Count ops and average their magnitudes over policies, most frequent first.

    Args:
        policies: Policy JSON documents (e.g. those of the best trials).

    Returns:
        One entry per op that appears, sorted by count then name.
    """
    counts: dict[str, int] = {}
    magnitudes: dict[str, list[float]] = {}
    for policy in policies:
        for op, magnitude in _policy_steps(policy):
            counts[op] = counts.get(op, 0) + 1
            if magnitude is not None:
                magnitudes.setdefault(op, []).append(magnitude)
    out = []
    for op, count in counts.items():
        mags = magnitudes.get(op)
        out.append(OpCount(op, count, sum(mags) / len(mags) if mags else None))
    return sorted(out, key=lambda c: (-c.count, c.op))


def top_fraction(n: int, fraction: float = 0.25, minimum: int = 3) -> int:
    """How many of ``n`` ranked trials count as "top": a fraction, at least ``minimum``."""
    if n < 0 or not 0 < fraction <= 1:
        raise ValueError(f"need n >= 0 and 0 < fraction <= 1, got {n}, {fraction}")
    return min(n, max(minimum, round(n * fraction)))


@dataclass(frozen=True)
class Importance:
    """Parameter importances of a search, or why there are none."""

    values: dict[str, float]
    reason: str | None = None


class ImportanceCache:
    """Parameter importances per search, recomputed only when its complete-trial count changes.

    Optuna's fANOVA evaluator fits a random forest, far too slow to run on every page view.

    Args:
        max_entries: How many searches to remember (least recently used dropped first).
    """

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: OrderedDict[int, tuple[int, Importance]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def get(self, storage: BaseStorage, search_id: int, n_complete: int) -> Importance:
        """The importances of a search whose study holds ``n_complete`` complete search trials."""
        with self._lock:
            entry = self._entries.get(search_id)
            if entry is not None and entry[0] == n_complete:
                self._entries.move_to_end(search_id)
                return entry[1]
        result = compute_importance(storage, search_id)
        with self._lock:
            self._entries[search_id] = (n_complete, result)
            self._entries.move_to_end(search_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return result


def compute_importance(storage: BaseStorage, search_id: int) -> Importance:
    """Optuna's parameter importances over the COMPLETE ``search`` trials of a search."""
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=f"search-{search_id}", storage=storage)
    except KeyError:
        return Importance({}, "the search has no study yet")
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("role", "search") == "search" and t.params
    ]
    if len(trials) < MIN_TRIALS_FOR_IMPORTANCE:
        return Importance(
            {},
            f"needs at least {MIN_TRIALS_FOR_IMPORTANCE} complete search trials, has {len(trials)}",
        )
    # Trials of one search can have different parameter sets (conditional spaces), which
    # Optuna's evaluators refuse; keep the parameters every trial shares.
    shared = set.intersection(*(set(t.params) for t in trials))
    if not shared:
        return Importance({}, "the trials share no parameter")
    try:
        values = _importance_of(trials, sorted(shared))
    except (RuntimeError, ValueError) as exc:
        log.info("importance of search %s unavailable: %s", search_id, exc)
        return Importance({}, f"Optuna could not compute importances: {exc}")
    return Importance({k: float(v) for k, v in values.items()})


def _importance_of(trials: list[Any], params: list[str]) -> dict[str, float]:
    """Importances over exactly ``trials`` (baselines and the final excluded) via a copy study."""
    import optuna

    # An in-memory copy keeps baselines and the final training out of the fit.
    study = optuna.create_study(direction="maximize")
    study.add_trials(trials)
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return dict(optuna.importance.get_param_importances(study, params=params, evaluator=evaluator))
