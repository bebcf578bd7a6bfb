"""Concurrent lifecycle changes: many processes' advances enqueue the final pick once, and a
cancel racing advances is never overwritten (SQLite file, and PostgreSQL when configured)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from sqlalchemy import create_engine, make_url, text
from test_lifecycle import _spec, cheap_objective

from search import lifecycle
from search.locks import lock_key, search_lock

PG_ENV = "AUGSEARCH_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'optuna.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set")
    name = f"augsearch_locks_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _race(n: int, url: str, call: Callable[[int, optuna.storages.BaseStorage], object]) -> None:
    """Run ``call(i, storage)`` in ``n`` threads at once, each with a storage of its own (as
    separate processes have)."""
    storages = [lifecycle.make_storage(url, heartbeat_interval=None) for _ in range(n)]
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def one(index: int, storage: optuna.storages.BaseStorage) -> None:
        barrier.wait()
        try:
            call(index, storage)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(storages)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def _spent(url: str, search_id: str) -> optuna.Study:
    """A search whose budget is spent: the next advance enqueues its final pick."""
    storage = lifecycle.make_storage(url, heartbeat_interval=None)
    lifecycle.create_search_study(storage, search_id, _spec(n_trials=2))
    study = lifecycle.load_search_study(storage, search_id)
    study.optimize(cheap_objective(0.8), n_trials=4)
    return study


def test_racing_advances_enqueue_the_final_pick_once(storage_url: str) -> None:
    study = _spent(storage_url, "race")
    _race(8, storage_url, lambda _, s: lifecycle.advance(s, "race"))
    finals = [t for t in study.get_trials() if lifecycle.role_of(t) == "final"]
    assert sorted(t.user_attrs["contender"] for t in finals) == [0, 1, 2]
    assert study.user_attrs["state"] == lifecycle.FINALIZING


def test_a_cancel_racing_advances_holds(storage_url: str) -> None:
    study = _spent(storage_url, "cancel")

    def advance_or_cancel(index: int, storage: optuna.storages.BaseStorage) -> None:
        if index == 0:
            lifecycle.cancel(storage, "cancel")
        lifecycle.advance(storage, "cancel")

    _race(6, storage_url, advance_or_cancel)
    study = lifecycle.load_search_study(lifecycle.make_storage(storage_url), "cancel")
    assert study.user_attrs["state"] == lifecycle.CANCELLED


def test_the_lock_excludes_other_holders(storage_url: str) -> None:
    storage = lifecycle.make_storage(storage_url, heartbeat_interval=None)
    other = lifecycle.make_storage(storage_url, heartbeat_interval=None)
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def holder() -> None:
        with search_lock(storage, "x"):
            inside.set()
            release.wait(timeout=30)
            order.append("first")

    thread = threading.Thread(target=holder)
    thread.start()
    assert inside.wait(timeout=30)
    waiter = threading.Thread(target=lambda: _then(other, order))
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive()  # blocked while the first holds the lock
    release.set()
    thread.join(timeout=30)
    waiter.join(timeout=30)
    assert order == ["first", "second"]
    assert lock_key("x") == lock_key("x") != lock_key("y")


def _then(storage: optuna.storages.BaseStorage, order: list[str]) -> None:
    with search_lock(storage, "x"):
        order.append("second")
