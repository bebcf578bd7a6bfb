"""API read path: GET /api/v1/datasets/{id}/policy beside a hello-world FastAPI route, both
measured in the same run while two worker processes write trials into the same database.

Run ``python -m benchmarks.api [--seconds 10] [--connections 64] [--rate R]
[--writers workers|stress] [--trial-seconds 1]``.

Two measurements per route, one after the other, hello world first:

1. **Saturation throughput** (closed loop): 64 keep-alive connections, each sending its next
   request as soon as the previous response has arrived, for ``--seconds``. Reported:
   requests/s, the ratio policy/hello (target >= 0.7x) and the server's CPU time per request
   (from ``/proc``: less sensitive to a shared machine than requests/s). The latency of a
   closed loop is not reported as a figure of the route: by Little's law the mean latency is
   connections / throughput (64 / 3,000 req/s would still be 21 ms), so it measures the
   queue the 64 clients build in front of the server, not the route.
2. **Latency at a fixed offered load** (open loop, as wrk2 does it): the same 64 connections,
   each request sent on a fixed schedule (the offered rate spread evenly over the
   connections), its latency counted from the time it was *scheduled* to be sent, so a stall
   that delays later sends is charged to them (coordinated omission corrected). The rate is
   ``--rate`` req/s, by default half the lower of the two saturation rates just measured, so
   both servers are at most half busy. Reported: p50/p99/max (target p99 <= 20 ms), and the
   generator's own send lag (how late it sent against the schedule; part of the latency).

Servers: one uvicorn process each (uvloop and httptools when installed), the service in
single-user mode on a migrated SQLite database holding one dataset and its best policy.

Writers, two processes running through both measurements, in one of two modes:

- ``--writers workers`` (default): two real `search.worker.Worker` loops serving a search in
  that database with `FixedLengthTrial` trials of ``--trial-seconds`` (four steps, each
  reporting an intermediate value and checking for cancellation like an epoch), so the
  database sees exactly what two workers write (ask, params, attrs, reports, heartbeats,
  tell), at the pace of trials that last ``--trial-seconds`` (1 s: a fast GPU trial), without
  the training compute.
- ``--writers stress``: two Optuna processes telling trials as fast as they can, a write load
  far above any worker's; on a small machine they also take whole cores from the servers.

The load generator (`benchmarks.loadgen`, a raw asyncio HTTP/1.1 client) runs in this
process, on the same machine as the servers.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fastapi import FastAPI

from benchmarks.loadgen import HOST, Result, load
from benchmarks.report import write_section
from search.lifecycle import make_storage


def hello_app() -> FastAPI:
    """The reference: the smallest FastAPI JSON route."""
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


# ---------------------------------------------------------------------------------------------
# Servers and writers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _seed(data_dir: Path) -> tuple[str, int]:
    """A migrated database holding one dataset and its recorded best policy."""
    from ops.presets import PRESETS
    from service.db.engine import make_engine, make_sessionmaker
    from service.db.migrate import upgrade
    from service.db.models import Dataset, PolicyRecord, Search
    from service.users.service import ensure_local_user

    url = f"sqlite:///{data_dir / 'augsearch.db'}"
    upgrade(url)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        user = ensure_local_user(session)
        dataset = Dataset(
            owner_id=user.id, name="digits", source="digits", spec={"source": "digits"}
        )
        session.add(dataset)
        session.flush()
        search = Search(owner_id=user.id, dataset_id=dataset.id, spec={}, state="completed")
        session.add(search)
        session.flush()
        policy = PRESETS["autoaugment-cifar10"].model_dump(mode="json")
        session.add(
            PolicyRecord(search_id=search.id, dataset_id=dataset.id, policy=policy, accuracy=0.9)
        )
        session.commit()
        dataset_id = dataset.id
    engine.dispose()
    return url, dataset_id


WORKERS_SEARCH = "api-bench"


def _worker_writer(url: str, name: str, stop_at: float, trial_seconds: float) -> None:
    """A real worker loop serving the benchmark's search with fixed-length trials."""
    import threading

    import optuna

    from search.objective import FixedLengthTrial
    from search.worker import Worker

    # Quiet: the trial in flight when the benchmark ends is failed by the SIGTERM handler.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("augsearch").setLevel(logging.ERROR)
    stop = threading.Event()
    timer = threading.Timer(max(0.0, stop_at - time.time()), stop.set)
    timer.daemon = True  # a SIGTERM ends the loop first; the timer must not hold the exit
    timer.start()
    worker = Worker(url, artifact_store=tempfile.mkdtemp(), name=name, heartbeat_interval=10,
                    poll_interval=0.2, search_ids=[WORKERS_SEARCH], stop_event=stop,
                    train_fn=FixedLengthTrial(trial_seconds, 4))  # fmt: skip
    worker.run()


def _stress_writer(url: str, name: str, stop_at: float) -> None:
    """Ask and tell trials in a tight loop."""
    import optuna

    from search.lifecycle import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # No heartbeat: these writers use ask/tell, where heartbeats do not apply.
    storage = make_storage(url, heartbeat_interval=None)
    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True)
    while time.time() < stop_at:
        trial = study.ask()
        trial.set_user_attr("epochs", [0.5, 0.6])
        study.tell(trial, trial.suggest_float("x", 0, 1))


def _start_writers(
    url: str, mode: str, stop_at: float, trial_seconds: float
) -> list[multiprocessing.process.BaseProcess]:
    """Two writer processes of the chosen mode, started."""
    from search import lifecycle
    from search.spec import SearchSpec

    # Create Optuna's tables once here: two writers racing to create them collide on
    # Optuna's own alembic_version row (optuna#4621).
    storage = make_storage(url, heartbeat_interval=None)
    if mode == "workers":
        spec = SearchSpec.model_validate(
            {"dataset": {"source": "digits"}, "strategy": "randaugment", "n_trials": 10_000,
             "baselines": [], "pruner": "none", "parallelism": 2}
        )  # fmt: skip
        lifecycle.create_search_study(storage, WORKERS_SEARCH, spec)
    ctx = multiprocessing.get_context("spawn")
    writers = [
        ctx.Process(target=_worker_writer, args=(url, f"writer-{i}", stop_at, trial_seconds))
        if mode == "workers"
        else ctx.Process(target=_stress_writer, args=(url, f"writer-{i}", stop_at))
        for i in range(2)
    ]
    for w in writers:
        w.start()
    return writers


def _trials_written(url: str) -> int:
    """Finished trials in every study of the database (what the writers told)."""
    import optuna

    storage = make_storage(url, heartbeat_interval=None)
    return sum(
        len(
            storage.get_all_trials(
                s._study_id, deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
            )
        )
        for s in storage.get_all_studies()
    )


def _start(cmd: list[str], env: dict[str, str], url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(240):
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"server {cmd} did not start")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), or None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measured(
    proc: subprocess.Popen[bytes],
    port: int,
    path: str,
    args: argparse.Namespace,
    rate: float | None,
) -> tuple[Result, float | None]:
    """One load phase, with the server's CPU seconds per response over it."""
    before = _cpu_seconds(proc.pid)
    result = load(port, path, args.connections, args.seconds, rate)
    after = _cpu_seconds(proc.pid)
    if before is None or after is None or not result.latencies:
        return result, None
    return result, (after - before) / len(result.latencies)


# ---------------------------------------------------------------------------------------------
# Report


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _report(
    args: argparse.Namespace,
    rate: float,
    saturation: dict[str, tuple[Result, float | None]],
    fixed: dict[str, Result],
    told: float,
) -> str:
    (h_sat, _), (p_sat, _) = saturation["hello"], saturation["policy"]
    ratio = p_sat.rate / h_sat.rate if h_sat.rate else float("nan")
    names = {"hello": "hello world (FastAPI)", "policy": "GET /api/v1/datasets/{id}/policy"}
    stack = ", ".join(
        f"{m} {'yes' if importlib.util.find_spec(m) else 'no'}" for m in ("uvloop", "httptools")
    )
    n = args.connections
    writers = (
        f"2 worker processes (the real worker loop, fixed-length trials of {args.trial_seconds:g}"
        " s in four reported steps) serving a search in the service's SQLite database"
        if args.writers == "workers"
        else "2 stress writers telling Optuna trials to the service's SQLite database as fast "
        "as they can"
    )
    lines = [
        f"{n} keep-alive connections per route, {args.seconds:g} s per measurement; {writers} "
        f"throughout ({told:.1f} trials/s told while measuring). One uvicorn process per server "
        f"({stack}); the load generator (raw asyncio HTTP/1.1) and the writers share the "
        f"machine with the servers (load average {'/'.join(f'{v:.2f}' for v in os.getloadavg())}"
        " at the end).",
        "",
        f"**Saturation throughput** (closed loop: each connection sends its next request when "
        f"the last one is answered). Mean latency here is {n} / requests/s by Little's law: the "
        "queue the clients build, not the cost of the route, so no percentiles are given.",
        "",
        "| route | requests/s | vs hello | server CPU µs/request | mean latency ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for key in ("hello", "policy"):
        result, cpu = saturation[key]
        cpu_text = f"{cpu * 1e6:,.0f}" if cpu is not None else "n/a"
        mean = sum(result.latencies) / len(result.latencies) if result.latencies else 0.0
        lines.append(
            f"| {names[key]} | {result.rate:,.0f} | {result.rate / h_sat.rate:.2f}x | "
            f"{cpu_text} | {_ms(mean)} | {result.errors} |"
        )
    chosen = "set by --rate" if args.rate else "half the lower saturation rate above"
    lines += [
        "",
        f"**Latency at a fixed offered load** (open loop, wrk2-style: {rate:,.0f} req/s, "
        f"{chosen}, on a fixed schedule over the {n} connections; latency from each request's "
        "scheduled send time, so stalls are not hidden by coordinated omission). Send lag is "
        "how late the generator itself sent against its schedule: where it approaches the p99, "
        "the machine (CPU taken by the writers or other work), not the server, held requests "
        "back.",
        "",
        "| route | offered req/s | achieved req/s | p50 ms | p99 ms | max ms | send lag p99 ms "
        "| errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in ("hello", "policy"):
        result = fixed[key]
        lat = result.latencies
        lines.append(
            f"| {names[key]} | {rate:,.0f} | {result.rate:,.0f} | {_ms(_quantile(lat, 0.5))} | "
            f"{_ms(_quantile(lat, 0.99))} | {_ms(max(lat, default=float('nan')))} | "
            f"{_ms(_quantile(result.lags, 0.99))} | {result.errors} |"
        )
    p99 = _quantile(fixed["policy"].latencies, 0.99)
    client_us = sum(r.client_cpu_s for r, _ in saturation.values()) / max(
        1, sum(len(r.latencies) for r, _ in saturation.values())
    )
    lines += [
        "",
        f"Targets: policy/hello at saturation {ratio:.2f}x (target >= 0.7x: "
        f"{'met' if ratio >= 0.7 else 'not met'}); policy p99 at {rate:,.0f} req/s "
        f"{_ms(p99)} ms (target <= 20 ms: {'met' if p99 <= 0.020 else 'not met'}). "
        f"The load generator spent {client_us * 1e6:,.0f} µs of CPU per request at saturation.",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and write its section of docs/benchmarks.md."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--connections", "--clients", type=int, default=64)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="offered req/s of the fixed-load measurement (default: half the lower saturation)",
    )
    parser.add_argument(
        "--writers",
        choices=["workers", "stress"],
        default="workers",
        help="two real worker loops with fixed-length trials, or two tight ask/tell loops",
    )
    parser.add_argument(
        "--trial-seconds", type=float, default=1.0, help="workers: the length of one trial"
    )
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        db_url, dataset_id = _seed(data_dir)
        env = {**os.environ, "AUGSEARCH_DATA_DIR": str(data_dir), "AUGSEARCH_SINGLE_USER": "true"}
        api_port, hello_port = _free_port(), _free_port()
        uvicorn = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--factory",
                   "--host", HOST]  # fmt: skip
        api = _start([*uvicorn, "service.app:create_app", "--port", str(api_port)], env,
                     f"http://{HOST}:{api_port}/healthz")  # fmt: skip
        hello = _start([*uvicorn, "benchmarks.api:hello_app", "--port", str(hello_port)], env,
                       f"http://{HOST}:{hello_port}/hello")  # fmt: skip
        servers = {
            "hello": (hello, hello_port, "/hello"),
            "policy": (api, api_port, f"/api/v1/datasets/{dataset_id}/policy"),
        }
        budget = 4 * args.seconds + 60
        writers = _start_writers(db_url, args.writers, time.time() + budget, args.trial_seconds)
        try:
            time.sleep(5)  # let the writers get going
            told_before = _trials_written(db_url)
            started = time.perf_counter()
            for _, port, path in servers.values():  # warm-up (fills the policy cache)
                load(port, path, 8, 1.0, None)
            saturation = {k: _measured(p, port, path, args, None)
                          for k, (p, port, path) in servers.items()}  # fmt: skip
            rate = args.rate or 0.5 * min(r.rate for r, _ in saturation.values())
            fixed = {k: load(port, path, args.connections, args.seconds, rate)
                     for k, (_, port, path) in servers.items()}  # fmt: skip
            told = (_trials_written(db_url) - told_before) / (time.perf_counter() - started)
        finally:
            for w in writers:
                w.terminate()
            for w in writers:
                w.join(timeout=30)
            for proc in (api, hello):
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
    body = _report(args, rate, saturation, fixed, told)
    print(body)
    command = f"python -m benchmarks.api --seconds {args.seconds:g} --writers {args.writers}"
    if args.writers == "workers":
        command += f" --trial-seconds {args.trial_seconds:g}"
    if args.rate:
        command += f" --rate {args.rate:g}"
    write_section(f"API read path (writers: {args.writers})", command, body)


if __name__ == "__main__":
    main()
