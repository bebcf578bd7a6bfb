"""Dispatch scaling on PostgreSQL: trials/s with 1, 2, 4, 8 workers for fixed-length trials,
and the storage + sampler overhead per trial at 100 and 1000 trials.

Run ``python -m benchmarks.scaling --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres``
(a fresh database is created and dropped). The workers are the real `search.worker.Worker`
loop and storage, one thread each (trials sleep, so threads measure dispatch like processes
do without paying for N interpreters on a small machine), running `FixedLengthTrial`: every
trial lasts ``--seconds`` whatever the machine. Throughput is complete search trials divided by
the wall time from the start signal to the last completion; efficiency is throughput / (N x
single-worker throughput). The overhead is ``ask`` + the search space's suggestions + ``tell``
with the TPE sampler through the same RDB storage, averaged over the 10 trials before the count.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from sqlalchemy import create_engine, make_url, text

from benchmarks.report import write_section
from search import lifecycle
from search.objective import FixedLengthTrial
from search.spec import SearchSpec
from search.storage import make_storage
from search.strategies import get_strategy
from search.worker import Worker

PLOT = Path("docs/benchmarks-scaling.png")


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


def _spec(n_trials: int, parallelism: int, sampler: str = "random") -> SearchSpec:
    return SearchSpec.model_validate(
        {"dataset": {"source": "digits"}, "strategy": "randaugment", "n_trials": n_trials,
         "baselines": [], "sampler": sampler, "pruner": "none", "parallelism": parallelism}
    )  # fmt: skip


def throughput(url: str, n_workers: int, per_worker: int, seconds: float) -> float:
    """Complete search trials per second with ``n_workers`` worker loops."""
    search_id = f"scale{n_workers}"
    storage = make_storage(url, heartbeat_interval=10)
    lifecycle.create_search_study(storage, search_id, _spec(n_workers * per_worker, n_workers))
    art = tempfile.mkdtemp()
    workers = [
        Worker(url, artifact_store=art, name=f"b{n_workers}-{i}", heartbeat_interval=10,
               poll_interval=0.05, search_ids=[search_id], train_fn=FixedLengthTrial(seconds, 2))
        for i in range(n_workers)
    ]  # fmt: skip
    gate = threading.Barrier(n_workers + 1)

    def serve(worker: Worker) -> None:
        gate.wait()
        worker.run(max_idle=0.5)

    threads = [threading.Thread(target=serve, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    gate.wait()
    start = time.time()
    for thread in threads:
        thread.join()
    study = optuna.load_study(study_name=lifecycle.study_name(search_id), storage=storage)
    # The final training that follows the search is not dispatch of search trials.
    done = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state.name == "COMPLETE" and lifecycle.role_of(t) == "search"
    ]
    last = max(t.datetime_complete.timestamp() for t in done if t.datetime_complete)
    return len(done) / (last - start)


def overhead_ms(url: str, counts: list[int]) -> dict[int, float]:
    """Mean ms of ask + suggest + tell (TPE, RDB storage) over the 10 trials before each count."""
    storage = make_storage(url, heartbeat_interval=None)
    spec = _spec(max(counts), 1, sampler="tpe")
    lifecycle.create_search_study(storage, "overhead", spec)
    study = lifecycle.load_search_study(storage, "overhead")
    strategy = get_strategy(spec.strategy, spec)
    times: list[float] = []
    for i in range(max(counts)):
        t0 = time.perf_counter()
        trial = study.ask()
        strategy.suggest(trial)
        study.tell(trial, (i * 7919 % 1000) / 1000)
        times.append(time.perf_counter() - t0)
    return {n: 1000 * sum(times[n - 10 : n]) / 10 for n in counts}


def plot(ns: list[int], rates: list[float]) -> None:
    """Throughput against workers, with the linear ideal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ns, rates, "o-", label="measured")
    ax.plot(ns, [rates[0] * n for n in ns], "--", label="linear")
    ax.set_xlabel("workers")
    ax.set_ylabel("complete trials / s")
    ax.set_title("Dispatch scaling on PostgreSQL")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100)
    plt.close(fig)


def main() -> None:
    """Measure, print and record the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one trial")
    parser.add_argument("--per-worker", type=int, default=4, help="trials per worker")
    parser.add_argument("--workers", default="1,2,4,8")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ns = [int(n) for n in args.workers.split(",")]
    with fresh_database(args.url) as url:
        rates = [throughput(url, n, args.per_worker, args.seconds) for n in ns]
        overhead = overhead_ms(url, [100, 1000])
    rows = [f"| {n} | {r:.3f} | {r / (n * rates[0]):.2f} |" for n, r in zip(ns, rates, strict=True)]
    body = "\n".join(
        [
            f"Fixed-length trials of {args.seconds:g} s, {args.per_worker} per worker.\n",
            "| workers | complete trials/s | efficiency |",
            "|---|---|---|",
            *rows,
            "",
            "| trials in the study | ask + suggest + tell (TPE, PostgreSQL) |",
            "|---|---|",
            *[f"| {n} | {ms:.1f} ms |" for n, ms in overhead.items()],
            "",
            f"![scaling]({PLOT.name})",
            "",
            "Targets: efficiency >= 0.9 up to 8 workers; overhead <= 50 ms per trial at 1000.",
        ]
    )
    print(body)
    plot(ns, rates)
    cmd = f"python -m benchmarks.scaling --seconds {args.seconds:g} --per-worker {args.per_worker}"
    write_section("Dispatch scaling (PostgreSQL)", cmd, body)


if __name__ == "__main__":
    main()
