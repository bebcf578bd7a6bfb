"""Dispatch scaling on PostgreSQL: trials/s with 1, 2, 4, 8 workers for fixed-length trials,
and the storage + sampler overhead per trial at 100 and 1000 trials.

Run ``python -m benchmarks.scaling --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres``
(a fresh database is created and dropped).

Throughput: the workers are the real `search.worker.Worker` loop and storage, one process each
as a fleet runs them (``--threads``: one thread each in this process), running
`FixedLengthTrial`: every trial lasts ``--seconds`` (two steps, each reporting and checking for
cancellation like an epoch) whatever the machine. Threads share the interpreter lock, so the
dispatch of N threads queues behind each other: their figure bounds what one process serving
several loops can do, not the dispatch. Each mode has its own section of the report. Each
run is a fresh search of ``N x --per-worker`` trials with ``parallelism`` N and the spec's default sampler (TPE), so
every N runs the same number of trials per worker. Throughput is complete search trials
divided by the wall time from the start signal to the last completion; efficiency is
throughput / (N x single-worker throughput). The dispatch overhead is what a worker's cycle
adds to the trial: the median gap between the completions of one worker's consecutive
trials, minus ``--seconds``. The worker counts run in turn ``--repeats`` times (so that a
change in the machine's load hits each alike) and the medians are reported, with the range
of the throughput. The machine's load average is recorded with the figures. Workers connect
as they do in production, with ``search.storage.WORKER_POOL`` (commits that do not wait for
the disk); ``--durable-commits`` measures them with commits that do.

Overhead: a search study is filled with complete trials shaped like a worker's (params,
value, two intermediate values, the worker's user attrs) up to each size; then, through the
storage a worker uses (`search.storage.make_storage` wrapped in Optuna's trial cache by
``optuna.storages.get_storage``), ``ask``, the strategy's suggestions (as the worker's
objective makes them: `search.objective.suggest_together`) and ``tell`` are timed separately,
with `RandomSampler` (the storage's part alone) and with the project's TPE (from
`search.strategies.make_sampler`: the difference is the sampler's part, its own reads
included); and the real worker loop runs trials of two zero-length steps, whose cycle is the
whole dispatch cost of one trial at that size (pick, ask, start and end checks, suggestions,
attrs, reports, cancellation checks, tell). Medians over ``--overhead-trials`` trials each,
after two warm-up trials.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import create_engine, make_url, text

from benchmarks.report import write_section
from search import lifecycle
from search.objective import FixedLengthTrial, suggest_together
from search.spec import SearchSpec
from search.storage import WORKER_POOL, PoolOptions, make_storage
from search.strategies import get_strategy, make_sampler
from search.worker import Worker

DOCS = Path("docs")
WARM_UP = 2


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new database on the server of ``admin_url``, dropped afterwards."""
    name = f"augsearch_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _spec(n_trials: int, parallelism: int, sampler: str = "tpe") -> SearchSpec:
    return SearchSpec.model_validate(
        {"dataset": {"source": "digits"}, "strategy": "randaugment", "n_trials": n_trials,
         "baselines": [], "sampler": sampler, "pruner": "none", "parallelism": parallelism}
    )  # fmt: skip


def _cycles(trials: Sequence[FrozenTrial]) -> list[float]:
    """Gaps between the completions of each worker's consecutive complete search trials."""
    by_worker: dict[str, list[FrozenTrial]] = defaultdict(list)
    for t in trials:
        if lifecycle.role_of(t) == "search" and t.datetime_start is not None:
            by_worker[str(t.user_attrs.get("worker"))].append(t)
    gaps: list[float] = []
    for own in by_worker.values():
        own.sort(key=lambda t: t.number)
        for a, b in itertools.pairwise(own):
            if a.state == b.state == TrialState.COMPLETE:
                assert a.datetime_complete is not None and b.datetime_complete is not None
                gaps.append((b.datetime_complete - a.datetime_complete).total_seconds())
    return gaps


@dataclass
class Run:
    """One throughput run: complete search trials/s and the median worker cycle (s)."""

    rate: float
    cycle: float


def _serve(
    url: str, name: str, search_id: str, seconds: float, gate: Any, pool: PoolOptions
) -> None:
    """One worker loop: built, then started with the others at the gate."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    worker = Worker(url, artifact_store=tempfile.mkdtemp(), name=name, heartbeat_interval=10,
                    poll_interval=0.05, search_ids=[search_id], pool=pool,
                    train_fn=FixedLengthTrial(seconds, 2))  # fmt: skip
    gate.wait()
    worker.run(max_idle=0.5)
    _dispose(worker.storage)


def throughput(
    url: str, n_workers: int, per_worker: int, seconds: float, sampler: str, tag: str,
    processes: bool = True, pool: PoolOptions = WORKER_POOL,
) -> Run:  # fmt: skip
    """Complete search trials per second with ``n_workers`` worker loops.

    ``processes``: one process per loop, as a fleet's workers run (each pays its own imports,
    connections and caches); otherwise threads of this process, whose dispatch also contends
    for the interpreter lock.
    """
    search_id = f"scale{n_workers}-{tag}"
    storage = make_storage(url, heartbeat_interval=10)
    lifecycle.create_search_study(
        storage, search_id, _spec(n_workers * per_worker, n_workers, sampler)
    )
    ctx = multiprocessing.get_context("spawn")
    gate = ctx.Barrier(n_workers + 1) if processes else threading.Barrier(n_workers + 1)
    runner = ctx.Process if processes else threading.Thread
    loops = [
        runner(target=_serve, args=(url, f"b{n_workers}-{i}", search_id, seconds, gate, pool))
        for i in range(n_workers)
    ]
    for loop in loops:
        loop.start()
    gate.wait()
    start = time.time()
    for loop in loops:
        loop.join()
    if processes and any(loop.exitcode for loop in loops):  # type: ignore[union-attr]
        raise RuntimeError(f"a worker process of {search_id} failed")
    study = optuna.load_study(study_name=lifecycle.study_name(search_id), storage=storage)
    trials = study.get_trials(deepcopy=False)
    _dispose(storage)
    # The final training that follows the search is not dispatch of search trials.
    done = [
        t for t in trials if t.state == TrialState.COMPLETE and lifecycle.role_of(t) == "search"
    ]
    last = max(t.datetime_complete.timestamp() for t in done if t.datetime_complete)
    return Run(len(done) / (last - start), statistics.median(_cycles(trials)))


def _dispose(storage: BaseStorage) -> None:
    """Close the connections of a storage's pool (each worker has its own)."""
    backend = storage._backend if isinstance(storage, _CachedStorage) else storage
    if isinstance(backend, RDBStorage):
        backend.engine.dispose()


def _draw(dist: BaseDistribution, rng: random.Random) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return rng.choice(list(dist.choices))
    if isinstance(dist, IntDistribution):
        return rng.randint(dist.low, dist.high)
    if isinstance(dist, FloatDistribution):
        return rng.uniform(dist.low, dist.high)
    raise TypeError(f"unsupported distribution {dist!r}")


def fill(study: optuna.Study, spec: SearchSpec, up_to: int, rng: random.Random) -> None:
    """Add complete trials shaped like a worker's until the study holds ``up_to`` trials."""
    strategy = get_strategy(spec.strategy, spec)
    dists = strategy.distributions()
    for _ in range(up_to - len(study.get_trials(deepcopy=False))):
        params = {name: _draw(d, rng) for name, d in dists.items()}
        value = rng.random()
        attrs = {
            "role": "search",
            "worker": "filler",
            "device": "cpu",
            "policy": strategy.policy_from_params(params).model_dump(mode="json"),
            "finishing": True,
            "duration_s": 2.0,
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=value,
                user_attrs=attrs,
                intermediate_values={1: value / 2, 2: value},
            )
        )


def ask_tell_ms(
    storage: BaseStorage, spec: SearchSpec, sampler: optuna.samplers.BaseSampler, k: int
) -> tuple[float, float, float]:
    """Median ms of ``ask``, the strategy's suggestions and ``tell`` over ``k`` trials."""
    name = lifecycle.study_name("overhead")
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    strategy = get_strategy(spec.strategy, spec)
    rows: list[tuple[float, float, float]] = []
    for i in range(WARM_UP + k):
        t0 = time.perf_counter()
        trial = study.ask()
        t1 = time.perf_counter()
        suggest_together(strategy, trial)  # as the worker's objective suggests
        t2 = time.perf_counter()
        study.tell(trial, (i * 7919 % 1000) / 1000)
        t3 = time.perf_counter()
        rows.append((t1 - t0, t2 - t1, t3 - t2))
    rows = rows[WARM_UP:]
    ask, suggest, tell = (1000 * statistics.median(r[j] for r in rows) for j in range(3))
    return ask, suggest, tell


def worker_loop_ms(url: str, storage: BaseStorage, k: int, pool: PoolOptions) -> float:
    """Median ms of a worker's cycle over ``k`` trials of two zero-length steps."""
    worker = Worker(url, artifact_store=tempfile.mkdtemp(), name=f"overhead-{uuid.uuid4().hex[:6]}",
                    heartbeat_interval=10, poll_interval=0.05, search_ids=["overhead"], pool=pool,
                    max_trials=WARM_UP + k, train_fn=FixedLengthTrial(0.0, 2))  # fmt: skip
    worker.run(max_idle=0.0)
    _dispose(worker.storage)
    trials = storage.get_all_trials(storage.get_study_id_from_name("search-overhead"))
    own = [t for t in trials if t.user_attrs.get("worker") == worker.name]
    return 1000 * statistics.median(_cycles(own[WARM_UP - 1 :]))


@dataclass
class Overhead:
    """Per-trial costs at one study size (ms)."""

    random: tuple[float, float, float]
    tpe: tuple[float, float, float]
    worker: float


def overhead(url: str, sizes: list[int], k: int, pool: PoolOptions) -> dict[int, Overhead]:
    """Storage, sampler and whole-loop costs per trial at each study size."""
    storage = optuna.storages.get_storage(make_storage(url, heartbeat_interval=None, pool=pool))
    spec = _spec(min(10_000, 2 * max(sizes)), 1)
    study = lifecycle.create_search_study(storage, "overhead", spec)
    strategy = get_strategy(spec.strategy, spec)
    rng = random.Random(0)
    out: dict[int, Overhead] = {}
    for size in sorted(sizes):
        fill(study, spec, size, rng)
        out[size] = Overhead(
            random=ask_tell_ms(storage, spec, optuna.samplers.RandomSampler(seed=size), k),
            tpe=ask_tell_ms(storage, spec, make_sampler(spec, strategy, seed=size), k),
            worker=worker_loop_ms(url, storage, k, pool),
        )
    return out


def plot(ns: list[int], rates: list[float], path: Path, mode: str) -> None:
    """Throughput against workers, with the linear ideal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ns, rates, "o-", label="measured (median)")
    ax.plot(ns, [rates[0] * n for n in ns], "--", label="linear")
    ax.set_xlabel("workers")
    ax.set_ylabel("complete trials / s")
    ax.set_title(f"Dispatch scaling on PostgreSQL (worker {mode})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _ms(parts: tuple[float, float, float]) -> str:
    return " | ".join(f"{x:.1f}" for x in parts) + f" | {sum(parts):.1f}"


def _efficiencies(ns: list[int], rates: list[float]) -> list[float]:
    """Throughput over N x the single worker's (from the smallest N when 1 was not run)."""
    single = rates[ns.index(1)] if 1 in ns else rates[0] / ns[0]
    return [rate / (n * single) for n, rate in zip(ns, rates, strict=True)]


def _verdict(ns: list[int], rates: list[float], costs: dict[int, Overhead]) -> str:
    """The targets, checked: the lowest efficiency against one worker, and the overhead per
    trial at the largest study size (Optuna's ask + suggest + tell; the whole worker cycle,
    with the service's bookkeeping, beside it)."""
    efficiency = min(_efficiencies(ns, rates))
    size = max(costs)
    over = sum(costs[size].tpe)
    return (
        f"Targets: efficiency >= 0.9 up to {max(ns)} workers: lowest {efficiency:.2f} "
        f"({'met' if efficiency >= 0.9 else 'not met'}); storage + sampler overhead <= 50 ms "
        f"per trial at 1000 trials: TPE ask + suggest + tell {over:.1f} ms at {size} "
        f"({'met' if over <= 50 else 'not met'}); the whole worker cycle of a zero-length "
        f"trial, which adds the budget claim, cancellation checks and lifecycle step, "
        f"{costs[size].worker:.0f} ms."
    )


def main() -> None:
    """Measure, print and record the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one trial")
    parser.add_argument("--per-worker", type=int, default=6, help="trials per worker")
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=3, help="runs per worker count")
    parser.add_argument("--sampler", default="tpe", choices=["tpe", "random"])
    parser.add_argument(
        "--threads", action="store_true", help="a thread per worker loop (default: a process)"
    )
    parser.add_argument("--sizes", default="100,1000", help="study sizes of the overhead")
    parser.add_argument("--overhead-trials", type=int, default=12, help="trials per figure")
    parser.add_argument(
        "--durable-commits",
        action="store_true",
        help="workers' commits wait for the disk (default: as workers run, they do not)",
    )
    args = parser.parse_args()
    pool = PoolOptions() if args.durable_commits else WORKER_POOL
    mode = "threads" if args.threads else "processes"
    if args.durable_commits:
        mode += ", durable commits"
    chart = DOCS / f"benchmarks-scaling-{mode.replace(', ', '-').replace(' ', '-')}.png"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ns = [int(n) for n in args.workers.split(",")]
    sizes = [int(n) for n in args.sizes.split(",")]
    load_before = _load()
    runs: dict[int, list[Run]] = {n: [] for n in ns}
    with fresh_database(args.url) as url:
        for r in range(args.repeats):  # interleaved, so that load changes hit every N alike
            for n in ns:
                run = throughput(
                    url,
                    n,
                    args.per_worker,
                    args.seconds,
                    args.sampler,
                    str(r),
                    not args.threads,
                    pool,
                )
                runs[n].append(run)
        load_mid = _load()
        costs = overhead(url, sizes, args.overhead_trials, pool)
    load_after = _load()
    rates = [statistics.median(x.rate for x in runs[n]) for n in ns]
    efficiencies = _efficiencies(ns, rates)
    rows = []
    for n, rate, eff in zip(ns, rates, efficiencies, strict=True):
        low, high = min(x.rate for x in runs[n]), max(x.rate for x in runs[n])
        cycle = statistics.median(x.cycle for x in runs[n])
        rows.append(
            f"| {n} | {rate:.3f} ({low:.3f}-{high:.3f}) | {eff:.2f} "
            f"| {1000 * (cycle - args.seconds):.0f} ms |"
        )
    over_rows = []
    for size, c in costs.items():
        sampler_ms = sum(c.tpe) - sum(c.random)
        over_rows.append(f"| {size} | random (storage alone) | {_ms(c.random)} | |")
        over_rows.append(f"| {size} | TPE (storage + sampler) | {_ms(c.tpe)} | {c.worker:.0f} |")
        over_rows.append(f"| {size} | TPE's own part | | | | {sampler_ms:.1f} | |")
    body = "\n".join(
        [
            f"Fixed-length trials of {args.seconds:g} s (two steps), {args.per_worker} per worker,"
            f" {args.sampler.upper()} sampler, worker loops in"
            f" {mode}, commits"
            f" {'durable (each waits for the disk)' if args.durable_commits else 'as workers make them (synchronous_commit=off: no wait for the disk)'};"
            f" median of {args.repeats} runs (range in brackets). Load average (1/5/15 min)"
            f" of the shared machine: {load_before} before, {load_mid} after the throughput,"
            f" {load_after} at the end.\n",
            "| workers | complete trials/s | efficiency | dispatch overhead per trial |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Per trial, median of {args.overhead_trials} (ms), through the worker's storage"
            " (RDB on PostgreSQL in Optuna's trial cache); the worker loop runs trials of two"
            " zero-length steps, so its cycle is all dispatch:\n",
            "| trials in the study | sampler | ask | suggest | tell | ask + suggest + tell "
            "| worker loop per trial |",
            "|---|---|---|---|---|---|---|",
            *over_rows,
            "",
            f"![scaling]({chart.name})",
            "",
            _verdict(ns, rates, costs),
        ]
    )
    print(body)
    plot(ns, rates, chart, mode)
    cmd = f"python -m benchmarks.scaling --seconds {args.seconds:g} --per-worker {args.per_worker}"
    for flag, default in (("repeats", 3), ("sampler", "tpe"), ("sizes", "100,1000")):
        if getattr(args, flag) != default:
            cmd += f" --{flag} {getattr(args, flag)}"
    if args.threads:
        cmd += " --threads"
    if args.durable_commits:
        cmd += " --durable-commits"
    write_section(f"Dispatch scaling (PostgreSQL, worker {mode})", cmd, body)


if __name__ == "__main__":
    main()
