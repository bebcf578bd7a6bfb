"""How long a search has left: its remaining trainings laid out on the lanes that run them.

The estimate follows the order in which the lifecycle runs the work (`search.lifecycle`):

1. the search stage: the running trials (their expected duration less what they already ran),
   the baselines still waiting, and the search trainings not started yet (``n_trials`` less
   the trainings that used or hold a slot of the budget). A search training is expected to
   last the mean duration of every finished search training, complete and pruned alike, so
   the estimate shortens as pruning cuts trials; a baseline is never pruned and lasts the
   mean of the complete proxy trainings.
2. the candidate of strategies that score rather than train (``fast-autoaugment``), once.
3. the final pick, which starts when the search stage is over: one training per contender
   (before it starts, as many as ``final_pick`` asks for); the presets' finals are
   enqueued once the baselines are over and run in the search stage, before the search
   trials not yet drawn. A final lasts the mean of the
   finals already done, or else the mean complete proxy training scaled by the planned work of
   a final training over a proxy training (`final_work_ratio`).

The trainings are spread over ``lanes`` (the most trainings of the search that run at once:
its parallelism, capped by the live workers) by a greedy list schedule (`schedule`): a lane
takes the next training as soon as it is free, after the handover its workers took between two
trials so far (looking for work, advancing the search, asking Optuna); a stage starts when the
trainings it waits for are over (the searched finals wait for the search trials, not for the
presets' finals). A finished trial lasted what its
timestamps say, or its own ``duration_s`` when longer. Turned-away (``skipped``) trials are not
trainings and count nowhere; nor do search trials that reuse a baseline's result
(``reused_from``) count in the mean durations.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from statistics import fmean, median
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from search.spec import SearchSpec

#: Roles whose trials train the proxy recipe to its end.
_PROXY_ROLES = ("baseline", "search", "candidate")


def duration_of(trial: FrozenTrial) -> float | None:
    """The seconds a finished trial took (its ``duration_s`` attr, else its timestamps)."""
    recorded = trial.user_attrs.get("duration_s")
    if isinstance(recorded, int | float):
        return float(recorded)
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def as_aware(moment: datetime | None) -> datetime | None:
    """Optuna's naive local timestamps as timezone-aware ones."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.astimezone(UTC)


def lanes(parallelism: int, live_workers: int | None, running: int) -> int:
    """Trainings of a search that run at once: min(parallelism, live workers or running)."""
    return max(1, min(parallelism, max(live_workers or 0, running)))


def final_work_ratio(spec: SearchSpec, train_images: int | None) -> float:
    """Planned work of one final training over one proxy training: epochs x training images.

    Args:
        spec: the search; its proxy trains on ``train_size`` images of the training part (all
            of it when unset), its finals on the whole part.
        train_images: images of the training part, when known.

    Returns:
        ``final epochs x final images / (proxy epochs x proxy images)``; `FINAL_EPOCHS_FACTOR`
        when the sizes are unknown and derived epochs cannot be known either.
    """
    from search.spec import FINAL_EPOCHS_FACTOR

    if train_images is None:
        fixed = spec.recipe.epochs is not None and spec.final.epochs is not None
        if spec.train_size is None and fixed:  # same images: the epochs decide
            return float(spec.final.epochs or 1) / float(spec.recipe.epochs or 1)
        return float(FINAL_EPOCHS_FACTOR)
    proxy_n = train_images if spec.train_size is None else min(spec.train_size, train_images)
    work = []
    for recipe, n in ((spec.recipe, proxy_n), (spec.final, train_images)):
        resolved = recipe.for_size(max(n, 1))
        images = min(n, resolved.train_subset or n)
        work.append(float(resolved.epochs or 1) * max(images, 1))
    return work[1] / work[0]


def planned_finals(spec: SearchSpec) -> int:
    """How many final trainings the pick will run (at most ``final_pick.size``)."""
    searched = 1 if spec.strategy == "fast-autoaugment" else spec.n_trials
    return min(spec.final_pick.candidates, searched) + min(
        spec.final_pick.presets, len(spec.baselines)
    )


def makespan(jobs: Sequence[float], lanes: int) -> float:
    """Seconds until ``jobs`` (in order) are done on ``lanes`` lanes, each taking the next job
    when it is free."""
    free = [0.0] * max(1, lanes)
    for job in jobs:
        heapq.heapreplace(free, free[0] + job)
    return max(free)


#: A training left: its expected seconds, and whether the next stage waits for it.
Job = tuple[float, bool]


def schedule(stages: Sequence[Sequence[Job]], lanes: int) -> float:
    """Seconds until every job is done: jobs in order, each on the lane free first; a stage's
    jobs start once the gating jobs of the stages before it are done. A job that gates
    nothing (a preset's final, which runs beside the search trials) only holds its lane."""
    free = [0.0] * max(1, lanes)
    gate = end = 0.0
    for jobs in stages:
        next_gate = gate
        for seconds, gates in jobs:
            finish = max(heapq.heappop(free), gate) + seconds
            heapq.heappush(free, finish)
            end = max(end, finish)
            if gates:
                next_gate = max(next_gate, finish)
        gate = next_gate
    return end


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


class Estimate:
    """The expected durations of one search's trainings, from its finished trials.

    Attributes:
        search: mean of the finished search trainings (complete and pruned).
        proxy: mean of the complete proxy trainings (baselines, search trials, candidates).
        final: mean of the complete finals, else ``proxy`` x `final_work_ratio`.
        handover: median seconds a worker took from one trial to its next (`_handover`).
    """

    def __init__(self, trials: Sequence[FrozenTrial], spec: SearchSpec, ratio: float) -> None:
        from search.lifecycle import REUSED_ATTR, SKIPPED_ATTR, counts_toward_budget, role_of

        searched, proxy, final = [], [], []
        for t in trials:
            d = _span(t)
            if d is None or t.state.name not in ("COMPLETE", "PRUNED"):
                continue
            if t.user_attrs.get(REUSED_ATTR) is not None:  # a baseline's result, not a training
                continue
            role = role_of(t)
            if counts_toward_budget(t, running=False):
                searched.append(d)
            if t.state.name != "COMPLETE" or t.user_attrs.get(SKIPPED_ATTR):
                continue
            if role in _PROXY_ROLES:
                proxy.append(d)
            elif role == "final":
                final.append(d)
        self.proxy = _mean(proxy) or _mean(searched)
        self.search = _mean(searched) or self.proxy
        scaled = self.proxy * ratio if self.proxy is not None else None
        self.final = _mean(final) or scaled
        self.handover = _handover(trials)

    def expected(self, role: str) -> float | None:
        """The expected duration of a training of ``role``."""
        if role == "search":
            return self.search
        return self.final if role == "final" else self.proxy


def _span(trial: FrozenTrial) -> float | None:
    """The seconds a finished trial held its worker: its timestamps, or its own measure."""
    spans = [duration_of(trial)]
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        spans.append((trial.datetime_complete - trial.datetime_start).total_seconds())
    known = [s for s in spans if s is not None]
    return max(known) if known else None


def _handover(trials: Sequence[FrozenTrial]) -> float:
    """The median time a worker took from one trial of the search to its next one.

    Workers look for work, advance the search and ask Optuna for the next trial between two
    trainings; short trainings feel it. A gap longer than the trial before it is a worker that
    served other searches or sat idle, not a handover.
    """
    by_worker: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if t.datetime_start is not None and t.user_attrs.get("worker"):
            by_worker.setdefault(str(t.user_attrs["worker"]), []).append(t)
    gaps = []
    for mine in by_worker.values():
        mine.sort(key=lambda t: t.number)
        for before, after in itertools.pairwise(mine):
            if before.datetime_complete is None or after.datetime_start is None:
                continue
            gap = (after.datetime_start - before.datetime_complete).total_seconds()
            if 0.0 <= gap <= (_span(before) or 0.0):
                gaps.append(gap)
    return median(gaps) if gaps else 0.0


def eta_s(
    trials: Sequence[FrozenTrial],
    spec: SearchSpec,
    state: str,
    lanes: int,
    *,
    train_images: int | None = None,
    now: datetime | None = None,
) -> float | None:
    """Seconds until the search is done, or None when it is not running or nothing finished.

    Args:
        trials: the search's trials.
        spec: its spec.
        state: its study state (``open`` or ``finalizing`` have an ETA).
        lanes: trainings of the search that run at once (see `lanes`).
        train_images: images of the training part, when known (see `final_work_ratio`).
        now: the current time (default: now).
    """
    if state not in ("open", "finalizing"):
        return None
    estimate = Estimate(trials, spec, final_work_ratio(spec, train_images))
    try:
        stages = _stages(trials, spec, state, estimate, now or datetime.now(UTC))
    except _Unknown:
        return None
    return schedule(stages, lanes)


class _Unknown(Exception):
    """A training is left whose duration nothing finished yet can tell."""


def _jobs(
    duration: float | None, count: int, handover: float = 0.0, gates: bool = True
) -> list[Job]:
    if count and duration is None:
        raise _Unknown
    return [((duration or 0.0) + handover, gates)] * count


def _left(trial: FrozenTrial, expected: float | None, now: datetime) -> float:
    """Seconds a running trial still needs (half its expected time when its start is unknown)."""
    duration = _jobs(expected, 1)[0][0]
    start = as_aware(trial.datetime_start)
    ran = (now - start).total_seconds() if start is not None else duration / 2
    return max(duration - ran, 0.0)


def _reusing_start_points(trials: Sequence[FrozenTrial]) -> int:
    """Waiting starting points whose preset's baseline is complete: they will take its result
    instead of training (`search.objective`), so they cost no training."""
    from search.lifecycle import role_of

    done = {
        t.user_attrs.get("baseline")
        for t in trials
        if role_of(t) == "baseline" and t.state.name == "COMPLETE"
    }
    return sum(
        1
        for t in trials
        if t.state.name == "WAITING" and t.user_attrs.get("start_point") in done - {None}
    )


def _stages(
    trials: Sequence[FrozenTrial],
    spec: SearchSpec,
    state: str,
    estimate: Estimate,
    now: datetime,
) -> list[list[Job]]:
    """The trainings left, stage by stage: search, candidate, final pick.

    Raises:
        _Unknown: a duration is still unknown.
    """
    from search.lifecycle import SKIPPED_ATTR, budget_used, role_of

    stages: dict[str, list[Job]] = {"search": [], "candidate": [], "final": []}
    waiting: dict[str, int] = {}
    finals: dict[int, list[FrozenTrial]] = {}
    for t in trials:
        role, trial_state = role_of(t), t.state.name
        if t.user_attrs.get(SKIPPED_ATTR):
            continue
        if role == "final":
            finals.setdefault(int(t.user_attrs.get("contender", 0)), []).append(t)
        elif trial_state == "WAITING":
            waiting[role] = waiting.get(role, 0) + 1
        elif trial_state == "RUNNING":
            stages["search"].append((_left(t, estimate.expected(role), now), True))
    # While the search is open, the only finals are the presets' (picked once the baselines
    # are over): they run beside the search trials, in the search stage.
    during = "search" if state == "open" else "final"
    finals_left = 0
    for attempts in finals.values():
        if any(t.state.name == "COMPLETE" for t in attempts):
            continue
        running = [t for t in attempts if t.state.name == "RUNNING"]
        if running:  # the earliest holds the contender's place; duplicates prune themselves
            first = min(running, key=lambda t: t.number)
            stages[during].append((_left(first, estimate.final, now), during == "final"))
        else:
            finals_left += 1
    step = estimate.handover
    if state == "open":
        in_flight = budget_used(list(trials), running=False) + sum(
            1 for t in trials if t.state.name == "RUNNING" and role_of(t) == "search"
        )
        presets = min(spec.final_pick.presets, len(spec.baselines))
        # Workers take the waiting baselines, then the presets' finals (enqueued when the
        # baselines are over), before they draw new search trials.
        stages["search"] += _jobs(estimate.proxy, waiting.get("baseline", 0), step)
        early = finals_left if finals else presets
        stages["search"] += _jobs(estimate.final, early, step, gates=False)
        reused = _reusing_start_points(trials)
        stages["search"] += _jobs(estimate.search, max(spec.n_trials - in_flight - reused, 0), step)
        scored = spec.strategy == "fast-autoaugment"
        if scored and not any(role_of(t) == "candidate" for t in trials):
            stages["candidate"] += _jobs(estimate.proxy, 1, step)
        finals_left = max(planned_finals(spec) - presets, 0)
    stages["candidate"] += _jobs(estimate.proxy, waiting.get("candidate", 0), step)
    stages["final"] += _jobs(estimate.final, finals_left, step)
    return list(stages.values())
