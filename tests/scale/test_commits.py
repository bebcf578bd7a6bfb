"""Workers' commits do not wait for the disk (unless configured to); the service's always do."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.storages import RDBStorage
from sqlalchemy import make_url, text

from search.storage import WORKER_POOL, PoolOptions, make_storage
from search.worker import Worker
from service.runtime import pool_options
from service.settings import Settings


def _setting(storage: object, query: str) -> object:
    assert isinstance(storage, RDBStorage)
    with storage.engine.connect() as conn:
        return conn.execute(text(query)).scalar()


def _worker_backend(worker: Worker) -> RDBStorage:
    backend = getattr(worker.storage, "_backend", worker.storage)
    assert isinstance(backend, RDBStorage)
    return backend


@pytest.mark.postgres
def test_postgres_worker_commits_skip_the_flush_and_the_service_ones_do_not(
    pg_url: str, tmp_path: Path
) -> None:
    show = "SHOW synchronous_commit"
    assert _setting(make_storage(pg_url, heartbeat_interval=None), show) == "on"
    assert _setting(make_storage(pg_url, heartbeat_interval=None, pool=WORKER_POOL), show) == "off"
    worker = Worker(pg_url, artifact_store=tmp_path, heartbeat_interval=10)
    assert _setting(_worker_backend(worker), show) == "off"
    durable = Worker(pg_url, artifact_store=tmp_path, heartbeat_interval=10, pool=PoolOptions())
    assert _setting(_worker_backend(durable), show) == "on"


@pytest.mark.postgres
def test_the_urls_own_options_are_kept(pg_url: str) -> None:
    url = make_url(pg_url).update_query_dict({"options": "-c statement_timeout=12345"})
    storage = make_storage(
        url.render_as_string(hide_password=False), heartbeat_interval=None, pool=WORKER_POOL
    )
    assert _setting(storage, "SHOW statement_timeout") == "12345ms"
    assert _setting(storage, "SHOW synchronous_commit") == "off"


def test_sqlite_worker_commits_skip_the_fsync(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    synchronous = "PRAGMA synchronous"  # 1: NORMAL, 2: FULL
    assert _setting(make_storage(url, heartbeat_interval=None), synchronous) == 2
    assert _setting(make_storage(url, heartbeat_interval=None, pool=WORKER_POOL), synchronous) == 1
    assert _setting(_worker_backend(Worker(url, artifact_store=tmp_path)), synchronous) == 1
    assert _setting(make_storage(url, heartbeat_interval=None), "PRAGMA journal_mode") == "wal"


def test_settings_decide_for_workers_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert not pool_options(settings, worker=True).durable_commits
    assert pool_options(settings).durable_commits
    durable = Settings(data_dir=tmp_path, worker_durable_commits=True)
    assert pool_options(durable, worker=True).durable_commits
