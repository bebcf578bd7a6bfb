"""API read latency: GET /api/v1/datasets/{id}/policy under 64 concurrent clients while two
worker processes write trials into the same database, beside a hello-world FastAPI route.

Run ``python -m benchmarks.api [--seconds 10] [--clients 64]``. Both servers are single uvicorn
processes on this machine, measured in the same run with the same load generator (asyncio +
httpx, one connection per client). The two writers are Optuna processes telling trials to the
service's SQLite database as fast as they can (the database traffic of workers, without the
training compute that would otherwise take the CPU away from the servers).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fastapi import FastAPI

from benchmarks.report import write_section
from search.lifecycle import make_storage


def hello_app() -> FastAPI:
    """The reference: the smallest FastAPI JSON route."""
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
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


def _writer(url: str, name: str, stop_at: float) -> None:
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


async def _load(url: str, clients: int, seconds: float) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def one_client() -> None:
        nonlocal errors
        async with httpx.AsyncClient(timeout=30) as http:
            while time.perf_counter() < stop:
                start = time.perf_counter()
                response = await http.get(url)
                latencies.append(time.perf_counter() - start)
                errors += response.status_code >= 400

    began = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    return len(latencies) / (time.perf_counter() - began), latencies, errors


def _row(name: str, rate: float, lat: list[float], errors: int) -> str:
    q = statistics.quantiles(lat, n=100)
    return f"| {name} | {rate:,.0f} | {q[49] * 1000:.1f} | {q[98] * 1000:.1f} | {errors} |"


def main() -> None:
    """Run the benchmark and write its section of docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        db_url, dataset_id = _seed(data_dir)
        env = {**os.environ, "AUGSEARCH_DATA_DIR": str(data_dir), "AUGSEARCH_SINGLE_USER": "true"}
        api_port, hello_port = _free_port(), _free_port()
        uvicorn = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--factory"]
        api = _start([*uvicorn, "service.app:create_app", "--port", str(api_port)], env,
                     f"http://127.0.0.1:{api_port}/healthz")  # fmt: skip
        hello = _start([*uvicorn, "benchmarks.api:hello_app", "--port", str(hello_port)], env,
                       f"http://127.0.0.1:{hello_port}/hello")  # fmt: skip
        budget = 2 * args.seconds + 30
        # Create Optuna's tables once here: two writers racing to create them collide on
        # Optuna's own alembic_version row (optuna#4621).
        make_storage(db_url, heartbeat_interval=None)
        ctx = multiprocessing.get_context("spawn")
        writers = [ctx.Process(target=_writer, args=(db_url, f"writer-{i}", time.time() + budget))
                   for i in range(2)]  # fmt: skip
        try:
            for w in writers:
                w.start()
            time.sleep(3)  # let the writers get going
            policy_url = f"http://127.0.0.1:{api_port}/api/v1/datasets/{dataset_id}/policy"
            hello_url = f"http://127.0.0.1:{hello_port}/hello"
            asyncio.run(_load(policy_url, 8, 1.0))  # warm-up (fills the policy cache)
            h_rate, h_lat, h_err = asyncio.run(_load(hello_url, args.clients, args.seconds))
            p_rate, p_lat, p_err = asyncio.run(_load(policy_url, args.clients, args.seconds))
        finally:
            for w in writers:
                w.terminate()
            for proc in (api, hello):
                proc.terminate()
                proc.wait(timeout=30)
    body = "\n".join(
        [
            f"{args.clients} concurrent clients for {args.seconds:g} s per route; 2 writer "
            "processes telling Optuna trials to the same SQLite database throughout. One "
            "uvicorn process per server; load generator on the same machine.",
            "",
            "| route | requests/s | p50 ms | p99 ms | errors |",
            "|---|---|---|---|---|",
            _row("hello world (FastAPI)", h_rate, h_lat, h_err),
            _row("GET /api/v1/datasets/{id}/policy", p_rate, p_lat, p_err),
            "",
            f"Ratio policy/hello: {p_rate / h_rate:.2f}x (target >= 0.7x; p99 target <= 20 ms).",
        ]
    )
    print(body)
    write_section("API read path", f"python -m benchmarks.api --seconds {args.seconds:g}", body)


if __name__ == "__main__":
    main()
