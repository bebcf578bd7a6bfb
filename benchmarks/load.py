"""Load: 64 concurrent clients mixing reads (searches, a search, its trials, its policy) while
two worker processes write trial results, on SQLite and on PostgreSQL.

Run ``python -m benchmarks.load [--seconds 60] [--clients 64] [--databases sqlite postgres]``.
The API is one uvicorn process in multi-user mode with its reconciler running; the readers
authenticate with a real token. The two writers are Optuna processes telling trials (with the
user attrs workers write) to the search's study ``search-<id>`` as a worker would, without the
training compute that would take the CPU from the server. Afterwards every trial told must
appear in the API's trial list (zero lost), and no response may be a 5xx.
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
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, make_url, text

from benchmarks.report import write_section

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SPEC = {"strategy": "randaugment", "n_trials": 10_000, "recipe": {"epochs": 1},
        "baselines": ["none"]}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_database() -> tuple[str, str]:
    """A fresh PostgreSQL database; returns its URL and the admin URL that drops it."""
    base = os.environ.get("AUGSEARCH_TEST_POSTGRES_URL", PG_DEFAULT)
    name = f"augsearch_load_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False), base


def _drop_postgres(url: str, base: str) -> None:
    name = make_url(url).database
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _seed(url: str) -> str:
    """Migrate and create the reader's account; returns its token."""
    from service.db.engine import make_engine, make_sessionmaker
    from service.db.migrate import upgrade
    from service.users.service import create_user_with_token

    upgrade(url)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        _, token = create_user_with_token(session, "loadtest")
        session.commit()
    engine.dispose()
    return token


def _writer(url: str, study_name: str, stop: Any, told: Any) -> None:
    import optuna

    from ops.presets import PRESETS
    from search.lifecycle import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    policy = PRESETS["randaugment-2-9"].model_dump(mode="json")
    storage = make_storage(url, heartbeat_interval=None)  # ask/tell: heartbeats do not apply
    study = optuna.load_study(storage=storage, study_name=study_name)
    while not stop.is_set():
        trial = study.ask()
        for key, value in (("role", "search"), ("policy", policy), ("epochs", [0.5, 0.6]),
                           ("worker", f"load:{os.getpid()}"), ("duration_s", 0.1)):  # fmt: skip
            trial.set_user_attr(key, value)
        study.tell(trial, trial.suggest_float("m", 0, 1))
        with told.get_lock():
            told.value += 1
        time.sleep(0.02)


def _start_api(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--factory",
           "service.app:create_app", "--port", str(port)]  # fmt: skip
    log = open(os.environ.get("AUGSEARCH_LOAD_LOG", os.devnull), "ab")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the API did not start")


async def _load(
    base: str, headers: dict[str, str], search_id: int, clients: int, seconds: float
) -> tuple[float, list[float], dict[int, int]]:
    paths = ["/api/v1/searches", f"/api/v1/searches/{search_id}",
             f"/api/v1/searches/{search_id}/trials?limit=50",
             f"/api/v1/searches/{search_id}/policy"]  # fmt: skip
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop = time.perf_counter() + seconds

    async def one_client(k: int) -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            i = k
            while time.perf_counter() < stop:
                start = time.perf_counter()
                response = await http.get(paths[i % len(paths)])
                latencies.append(time.perf_counter() - start)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                i += 1

    began = time.perf_counter()
    await asyncio.gather(*(one_client(k) for k in range(clients)))
    return len(latencies) / (time.perf_counter() - began), latencies, statuses


def _wait_for(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def run_one(database: str, seconds: float, clients: int) -> dict[str, Any]:
    """Run the load on one database; returns the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        base_pg = ""
        if database == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'augsearch.db'}"
        else:
            url, base_pg = _postgres_database()
        try:
            return _measure(url, Path(tmp), seconds, clients)
        finally:
            if base_pg:
                _drop_postgres(url, base_pg)


def _measure(url: str, data_dir: Path, seconds: float, clients: int) -> dict[str, Any]:
    token = _seed(url)
    headers = {"Authorization": f"Bearer {token}"}
    port = _free_port()
    env = {**os.environ, "AUGSEARCH_DATA_DIR": str(data_dir), "AUGSEARCH_DATABASE_URL": url,
           "AUGSEARCH_MAX_TRIALS": "10000", "AUGSEARCH_RECONCILE_INTERVAL_S": "1"}  # fmt: skip
    api = _start_api(env, port)
    base = f"http://127.0.0.1:{port}"
    ctx = multiprocessing.get_context("spawn")
    told = ctx.Value("i", 0)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
            dataset = http.post("/api/v1/datasets", json={"source": "digits"}).json()
            search = http.post("/api/v1/searches", json={"dataset_id": dataset["id"],
                                                         "spec": SPEC}).json()  # fmt: skip
            if "id" not in search:
                raise RuntimeError(f"launching the search failed: {search}")
            search_id = int(search["id"])
            _wait_for(lambda: http.get(f"/api/v1/searches/{search_id}").json()["state"]
                      == "running", 60)  # fmt: skip
            stop = ctx.Event()
            writers = [ctx.Process(target=_writer, args=(url, f"search-{search_id}", stop,
                                                         told)) for _ in range(2)]  # fmt: skip
            for w in writers:
                w.start()
            _wait_for(lambda: told.value >= 4, 120)  # both writers imported and writing
            rate, lat, statuses = asyncio.run(_load(base, headers, search_id, clients, seconds))
            stop.set()
            for w in writers:
                w.join(timeout=60)

            def synced() -> bool:
                trials = http.get(f"/api/v1/searches/{search_id}/trials",
                                  params={"role": "search", "limit": 1}).json()  # fmt: skip
                return int(trials["total"]) >= told.value

            _wait_for(synced, 60)
            total = http.get(f"/api/v1/searches/{search_id}/trials",
                             params={"role": "search", "limit": 1}).json()["total"]  # fmt: skip
    finally:
        api.terminate()
        api.wait(timeout=30)
    q = statistics.quantiles(lat, n=100)
    return {"rate": rate, "p50": q[49] * 1000, "p99": q[98] * 1000, "requests": len(lat),
            "server_errors": sum(n for s, n in statuses.items() if s >= 500),
            "statuses": statuses, "told": told.value, "lost": told.value - int(total)}  # fmt: skip


def main() -> None:
    """Run the benchmark and write its section of docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgres"],
                        choices=["sqlite", "postgres"])  # fmt: skip
    args = parser.parse_args()
    rows = []
    for database in args.databases:
        r = run_one(database, args.seconds, args.clients)
        print(database, r)
        rows.append(
            f"| {database} | {r['requests']:,} | {r['rate']:,.0f} | {r['p50']:.1f} | "
            f"{r['p99']:.1f} | {r['server_errors']} | {r['told']:,} | {r['lost']} |"
        )
    body = "\n".join([
        f"{args.clients} concurrent clients for {args.seconds:g} s, cycling over GET "
        "/searches, /searches/{id}, /searches/{id}/trials and /searches/{id}/policy with a "
        "bearer token, while 2 writer processes tell trials to the search's Optuna study and "
        "the API's reconciler syncs them. One uvicorn process; load generator, writers and "
        "database on the same machine (shared, noisy).",
        "",
        "| database | requests | requests/s | p50 ms | p99 ms | 5xx | trials told | lost |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ])  # fmt: skip
    print(body)
    command = f"python -m benchmarks.load --seconds {args.seconds:g} --clients {args.clients}"
    write_section("Load: reads under concurrent writes", command, body)


if __name__ == "__main__":
    main()
