"""A per-search lock that serialises the lifecycle's state changes across processes.

`search.lifecycle.advance`, `cancel` and `resume` read a search's state and trials and then
write (enqueue the final pick, set the state). Any worker and the service's reconciler may call
them at the same time; without a lock two callers both see "budget spent" and both enqueue the
final pick, or a cancel lands between another caller's read and write and is overwritten.

- PostgreSQL: a session-level advisory lock keyed by the search, held on a dedicated
  connection for the duration of the change (the server releases it if the process dies).
- SQLite file: an exclusive ``flock`` on a file beside the database (the kernel releases it if
  the process dies); SQLite is single-host, so every process that writes it can see the file.
- Anything else (in-memory SQLite, the gRPC storage proxy): a lock of this process only. A
  gRPC fleet has one storage server; its workers' advances remain idempotent and the
  duplicates they can enqueue are pruned when the search ends.

`database_lock` is the same lock under any name (the creation of Optuna's tables takes
``optuna-schema``, see `search.storage.ensure_optuna_schema`).

The lock is not re-entrant across calls: a function holding it must not take it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from sqlalchemy import Engine, text

_local_locks: dict[int, threading.Lock] = {}
_local_guard = threading.Lock()


def lock_key(search_id: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks, stable across processes."""
    return _key(f"search:{search_id}")


def _key(name: str) -> int:
    digest = hashlib.blake2b(f"augsearch-{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _sqlite_file(engine: Engine) -> Path | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database)


@contextlib.contextmanager
def search_lock(storage: BaseStorage | str, search_id: str) -> Iterator[None]:
    """Hold the lock of one search's lifecycle (blocking) while the body runs."""
    backend = storage._backend if isinstance(storage, _CachedStorage) else storage
    engine = backend.engine if isinstance(backend, RDBStorage) else None
    # One file per database: advances are short, so searches need not lock apart.
    with database_lock(engine, f"search:{search_id}", "lifecycle"):
        yield


@contextlib.contextmanager
def database_lock(engine: Engine | None, name: str, file_tag: str) -> Iterator[None]:
    """Hold the lock ``name`` across every process of ``engine``'s database (blocking).

    Args:
        engine: the database (None, or one without a cross-process lock: this process only).
        name: what is locked (``search:<id>``, ``optuna-schema``): the advisory lock's key.
        file_tag: the SQLite lock file is ``<database>.<file_tag>.lock``.
    """
    key = _key(name)
    if engine is not None and engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    path = _sqlite_file(engine) if engine is not None else None
    if path is not None:
        with open(f"{path}.{file_tag}.lock", "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return
    with _local_guard:
        lock = _local_locks.setdefault(key, threading.Lock())
    with lock:
        yield
