"""Optuna's tables are created once: processes that open a fresh (or half-made) database at the
same instant all come up, ``augsearch db upgrade`` creates them before any worker starts, and a
worker whose database is not there yet waits for it with a log line, for a bounded time."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.storages._rdb import models
from scaletools import stop_all, wait_for
from sqlalchemy import create_engine, make_url, text

from search.schema import SchemaNotReady, ensure_optuna_schema
from search.worker_registry import workers_alive

pytestmark = pytest.mark.slow
OPENERS = 3
# Each process waits for the go file, so that all of them open the database in the same
# millisecond (their imports take seconds, and not the same number).
OPEN_TOGETHER = """
import os, sys, time
from search.storage import make_storage
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
make_storage(sys.argv[1])
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it: an SQLite file path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'optuna.db'}"
    else:
        yield request.getfixturevalue("fresh_pg_url")


def _open_together(url: str, tmp_path: Path) -> list[tuple[int, str]]:
    """Open the storage of ``url`` in `OPENERS` processes at once; (exit code, output) each."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_TOGETHER, url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for _ in range(OPENERS)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
        go.touch()
        outputs = [proc.communicate(timeout=120)[0].decode() for proc in procs]
        return [(proc.returncode, out) for proc, out in zip(procs, outputs, strict=True)]
    finally:
        stop_all(procs)


def _schema_rows(url: str) -> tuple[int, int]:
    """Rows of Optuna's version table and of its Alembic stamp."""
    engine = create_engine(url)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT count(*) FROM version_info")).scalar_one()
        stamps = conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one()
    engine.dispose()
    return int(versions), int(stamps)


@pytest.mark.parametrize("start", ["fresh", "half-made"])
def test_processes_opening_a_new_database_together_all_come_up(
    fresh_url: str, tmp_path: Path, start: str
) -> None:
    if start == "half-made":  # a creator killed after its tables, before its version row
        engine = create_engine(fresh_url)
        models.BaseModel.metadata.create_all(engine)
        engine.dispose()
    results = _open_together(fresh_url, tmp_path)
    errors = [out.strip().splitlines()[-1] for code, out in results if code]
    assert [code for code, _ in results] == [0] * OPENERS, errors
    assert _schema_rows(fresh_url) == (1, 1)


@pytest.mark.postgres
def test_db_upgrade_creates_optuna_tables_before_two_workers_start_together(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "AUGSEARCH_DATABASE_URL": fresh_pg_url, "AUGSEARCH_DATA_DIR": str(tmp_path),
           "AUGSEARCH_WORKER_POLL_S": "0.3", "OMP_NUM_THREADS": "1"}  # fmt: skip
    cli = [sys.executable, "-m", "service.cli"]
    upgrade = subprocess.run([*cli, "db", "upgrade"], env=env, capture_output=True, timeout=120)
    assert upgrade.returncode == 0, upgrade.stderr.decode()[-2000:]
    assert "Optuna's tables ready" in upgrade.stdout.decode()
    assert _schema_rows(fresh_pg_url) == (1, 1)
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = [
        subprocess.Popen([*cli, "worker"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        for log in logs
    ]
    try:
        wait_for(lambda: len(workers_alive(fresh_pg_url)) == 2, 120, "both workers to register")
        assert [w.poll() for w in workers] == [None, None], [log.read_text() for log in logs]
    finally:
        stop_all(workers)


@pytest.mark.postgres
def test_a_worker_waits_for_a_database_that_is_not_there_yet(
    fresh_pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_url(fresh_pg_url)
    later = url.set(database=f"{url.database}_later").render_as_string(hide_password=False)
    admin = create_engine(fresh_pg_url, isolation_level="AUTOCOMMIT")
    with pytest.raises(SchemaNotReady, match="still not usable after 1 s"):
        ensure_optuna_schema(later, wait_s=1)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            ensure_optuna_schema(later, wait_s=60)
        except BaseException as exc:
            errors.append(exc)

    caplog.set_level(logging.WARNING, logger="augsearch.storage")
    waiter = threading.Thread(target=wait)
    waiter.start()
    try:
        time.sleep(3)
        assert waiter.is_alive() and "not usable yet" in caplog.text
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{url.database}_later"'))
        waiter.join(timeout=60)
        assert not waiter.is_alive() and not errors, errors
        assert _schema_rows(later) == (1, 1)
    finally:
        waiter.join(timeout=60)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}_later" WITH (FORCE)'))
        admin.dispose()
