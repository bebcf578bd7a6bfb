"""A search survives a PostgreSQL restart: workers and the leader lock reconnect and go on."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from scaletools import (
    assert_budget_exact,
    describe,
    drive,
    fixed_spec,
    start_worker,
    stop_all,
    trials_of,
    wait_for,
)
from sqlalchemy import create_engine, text

from search import lifecycle
from search.storage import is_transient, make_storage
from service.leader import LeaderLock

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
CONF = Path("/etc/postgresql")


def _cluster() -> list[str]:
    versions = sorted(p.name for p in CONF.iterdir()) if CONF.is_dir() else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        pytest.skip("pg_ctlcluster and a local cluster are needed to restart PostgreSQL")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def _ensure_up(cluster: list[str]) -> None:
    status = subprocess.run([*cluster, "status"], capture_output=True, check=False)
    if status.returncode != 0:
        subprocess.run([*cluster, "start"], check=True, timeout=60)


def test_a_search_survives_a_postgres_restart(pg_url: str, tmp_path: Path) -> None:
    cluster = _cluster()
    storage = make_storage(pg_url, heartbeat_interval=2)
    lifecycle.create_search_study(storage, "pgr", fixed_spec(6, parallelism=2))
    engine = create_engine(pg_url, pool_pre_ping=True)
    leader = LeaderLock(engine, tmp_path / "lock")
    assert leader.try_acquire()
    log = tmp_path / "workers.log"
    procs = [start_worker(pg_url, tmp_path / "art", f"p{i}", seconds=1.5, max_idle=6, log=log)
             for i in range(2)]  # fmt: skip
    try:
        wait_for(
            lambda: any(t.state == TrialState.COMPLETE for t in trials_of(storage, "pgr")),
            90,
            "a first complete trial",
        )
        try:
            subprocess.run([*cluster, "restart"], check=True, timeout=120)
        finally:
            _ensure_up(cluster)
        time.sleep(1.0)
        assert leader.try_acquire()  # the lock died with its session; it is taken again
        with engine.connect() as conn:  # pre-ping replaced the dead pooled connection
            assert conn.execute(text("SELECT 1")).scalar() == 1
        try:
            _drive_through_errors(storage)
        except AssertionError as exc:
            table = describe(trials_of(storage, "pgr"))
            raise AssertionError(f"{exc}\n{table}\n{log.read_text()[-4000:]}") from exc
        for proc in procs:
            assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        stop_all(procs)
        _ensure_up(cluster)
        leader.release()
        engine.dispose()
    assert_budget_exact(trials_of(storage, "pgr"), 6)


def _drive_through_errors(storage: BaseStorage) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            drive(storage, ["pgr"], timeout_s=max(1.0, deadline - time.monotonic()))
            return
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
