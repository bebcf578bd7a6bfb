"""The Optuna storage of searches: RDB (SQLite, PostgreSQL) or a gRPC storage proxy.

Workers, the runner and the service all build their storage here, so connection pools,
heartbeats and the retry of stale trials are configured once:

- PostgreSQL/MySQL engines get a bounded pool (``pool_size + max_overflow`` connections per
  process), ``pool_pre_ping`` (a connection that died with a server restart is replaced on
  checkout instead of failing the next query) and ``pool_recycle`` (connections are renewed
  before a firewall or the server drops them when idle).
- SQLite files get WAL mode and a long busy timeout.
- ``grpc://host:port`` gives an Optuna ``GrpcStorageProxy`` (``augsearch storage-proxy`` runs
  the server). The proxy does not carry Optuna's heartbeats, so workers behind it hold a
  *lease* instead: a trial system attr refreshed every heartbeat interval. `fail_stale_trials`
  fails RUNNING trials whose heartbeat (RDB) or lease (any storage) is older than the grace
  period, and re-queues them with the same params.
- Claiming a waiting trial (WAITING -> RUNNING) is one conditional UPDATE (`ClaimingRDBStorage`):
  Optuna reads the trial, then writes it, and on SQLite (whose driver runs the read outside a
  transaction and ignores ``FOR UPDATE``) two workers could both claim the same enqueued trial.
- A worker writes a trial's attrs and params a batch at a time (`set_trial_user_attrs`,
  `set_trial_params`): on an RDB storage one transaction per batch, through Optuna's own
  RDB helpers, instead of one per key; other storages get one call per key.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.storages._rdb import models as rdb_models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from search.schema import ensure_optuna_schema

LEASE_ATTR = "augsearch:lease"
# Attrs that describe one run of a trial; a retry starts without them.
_RUN_USER_ATTRS = ("finishing", "error", "epochs", "duration_s", "worker", "device")
GRPC_SCHEME = "grpc://"


@dataclass(frozen=True)
class PoolOptions:
    """Database connections of one process: the pool on a server database, and commits.

    Every process holds at most ``pool_size + max_overflow`` connections to the database, so
    keep ``(pool_size + max_overflow) x processes`` below the server's ``max_connections``.
    The pool options are ignored for SQLite and gRPC.

    ``durable_commits=False`` lets a commit return before its write-ahead log is flushed to
    disk (PostgreSQL ``synchronous_commit=off``; an SQLite file in WAL mode
    ``synchronous=NORMAL``; other databases ignore it):
    a commit then costs a round trip instead of an fsync (3.6 ms on this project's benchmark
    machine), which is most of what a worker's bookkeeping of a trial costs. Atomicity and
    consistency are unchanged; a crash of the database server or of the machine (not of a
    worker) can lose the last commits of a fraction of a second (PostgreSQL: at most three
    ``wal_writer_delay``, 0.6 s by default), which for a worker means a trial left RUNNING
    without heartbeat, failed and re-queued with the same params like any stale trial.
    Workers use it by default (`WORKER_POOL`, and the storage proxy, whose commits are the
    workers'); the service's Optuna storage does not.

    Attributes:
        pool_size: connections kept open.
        max_overflow: extra connections opened under load and closed afterwards.
        pool_recycle_s: connections older than this are replaced (seconds).
        pool_timeout_s: how long a checkout waits for a free connection (seconds).
        durable_commits: whether each commit waits for its log to reach the disk.
    """

    pool_size: int = 5
    max_overflow: int = 5
    pool_recycle_s: int = 1800
    pool_timeout_s: float = 30.0
    durable_commits: bool = True

    def engine_kwargs(self) -> dict[str, Any]:
        """``create_engine`` arguments for a server database."""
        if self.pool_size < 1 or self.max_overflow < 0:
            raise ValueError(
                f"pool_size must be >= 1 and max_overflow >= 0, got {self.pool_size}, "
                f"{self.max_overflow}"
            )
        return {
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_recycle": self.pool_recycle_s,
            "pool_timeout": self.pool_timeout_s,
            "pool_pre_ping": True,
        }


# Workers' connections: commits that do not wait for the disk (see `PoolOptions`).
WORKER_POOL = PoolOptions(durable_commits=False)


class RetryStaleTrial:
    """Re-queue a stale (or interrupted) trial as WAITING with the same params.

    Like Optuna's ``RetryHeartbeatStaleTrialCallback`` (same ``failed_trial`` and
    ``retry_history`` system attrs, so ``retry_history()`` works), but the copy drops the attrs
    of the failed run (``finishing``, ``error``, ``epochs``, the lease...): the retry must not
    look half-finished to the budget check.

    Args:
        max_retry: how many times one trial may be retried (None: no limit).
    """

    def __init__(self, max_retry: int | None = 2) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Enqueue the retry of ``trial`` unless it has used up its retries."""
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if self.max_retry is not None and len(history) > self.max_retry:
            return
        system_attrs = {k: v for k, v in trial.system_attrs.items() if k != LEASE_ATTR}
        system_attrs.setdefault("failed_trial", trial.number)
        system_attrs["retry_history"] = history
        user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in _RUN_USER_ATTRS}
        study.add_trial(
            optuna.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs=user_attrs,
                system_attrs=system_attrs,
            )
        )


def parse_grpc_url(url: str) -> tuple[str, int]:
    """``grpc://host:port`` -> (host, port).

    Raises:
        ValueError: when the URL has no host or no valid port.
    """
    rest = url.removeprefix(GRPC_SCHEME).rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not url.startswith(GRPC_SCHEME) or not sep or not host or not port.isdigit():
        raise ValueError(f"gRPC storage URL must be grpc://host:port, got {url!r}")
    if not 0 < int(port) < 65536:
        raise ValueError(f"gRPC storage port must be 1-65535, got {port}")
    return host, int(port)


def make_storage(
    url: str,
    *,
    heartbeat_interval: int | None = 30,
    grace_period: int | None = None,
    max_retry: int | None = 2,
    pool: PoolOptions | None = None,
    schema_wait_s: float = 0.0,
) -> BaseStorage:
    """Build the storage of a URL: an RDBStorage, or a GrpcStorageProxy for ``grpc://``.

    Optuna's tables are created first if they are missing, once whoever else opens the
    database at the same time (`search.schema.ensure_optuna_schema`).

    Args:
        url: SQLAlchemy URL of the database, or ``grpc://host:port`` of a storage proxy.
        heartbeat_interval: seconds between heartbeats of a running trial (None: none).
        grace_period: seconds without heartbeat after which a trial is stale (default 2x).
        max_retry: how many times a stale trial is re-queued with the same params.
        pool: connections: pool of a server database, durable commits (default
            `PoolOptions()`; workers pass `WORKER_POOL`).
        schema_wait_s: how long to wait, retrying, for a database that does not answer or
            a schema that cannot be made yet (0: fail at the first error).

    Raises:
        ValueError: for a malformed ``grpc://`` URL or pool options.
        search.schema.SchemaNotReady: Optuna's tables are still not usable after
            ``schema_wait_s``.
    """
    if url.startswith(GRPC_SCHEME):
        host, port = parse_grpc_url(url)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
        proxy.wait_server_ready(timeout=60)
        return proxy
    pool = pool or PoolOptions()
    engine_kwargs: dict[str, Any] = {}
    sqlite_file = False
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        sqlite_file = url.startswith("sqlite:///") and bool(path) and path != ":memory:"
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs.update(pool.engine_kwargs())
    if sqlite_file or not url.startswith("sqlite"):  # an in-memory database is this process's
        # First: the schema's creator also turns an SQLite file to WAL, under its lock.
        ensure_optuna_schema(url, wait_s=schema_wait_s)
    if sqlite_file:
        with sqlite3.connect(path, timeout=60) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    callback = RetryStaleTrial(max_retry) if heartbeat_interval else None
    with warnings.catch_warnings():
        # Heartbeats are marked experimental; they are what we rely on.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = ClaimingRDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=callback,
        )
    if not pool.durable_commits and (sqlite_file or url.startswith("postgresql")):
        # Set on every new connection of the pool (a session setting, not a startup option:
        # the URL's own ``options`` and PgBouncer's startup checks stay as they are); the
        # connections Optuna opened while setting up are closed first.
        event.listen(storage.engine, "connect", _fast_commits)
        storage.engine.dispose()
    return storage


class ClaimingRDBStorage(RDBStorage):
    """An RDBStorage whose claim of a waiting trial is atomic on every database.

    Optuna's `RDBStorage.set_trial_state_values` reads the trial ``FOR UPDATE``, checks that
    it is WAITING, then writes RUNNING. SQLite ignores ``FOR UPDATE`` and Python's sqlite3
    driver runs the read outside a transaction, so two workers that pop the same enqueued
    trial both read WAITING and both run it (every time, in a two-thread test); the second to
    finish then fails with "Cannot tell a COMPLETE trial". Here the claim is one
    ``UPDATE ... WHERE state = 'WAITING'``, which only one caller can win; every other state
    change is Optuna's own.
    """

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        if state != TrialState.RUNNING or values is not None:
            return super().set_trial_state_values(trial_id, state, values)
        model = rdb_models.TrialModel
        claim = (
            update(model)
            .where(model.trial_id == trial_id, model.state == TrialState.WAITING)
            .values(state=TrialState.RUNNING, datetime_start=datetime.datetime.now())
        )
        with self.engine.begin() as connection:
            claimed = connection.execute(claim).rowcount == 1
        if not claimed:
            # Optuna's contract: a finished trial cannot be updated (it raises for those).
            with _create_scoped_session(self.scoped_session) as session:
                found = model.find_or_raise_by_id(trial_id, session)
                self.check_trial_is_updatable(trial_id, found.state)
        return claimed


def _fast_commits(dbapi_connection: Any, _record: Any) -> None:
    """Commits that do not wait for the disk: WAL mode's synchronous=NORMAL on SQLite (commits
    do not fsync, checkpoints do), ``synchronous_commit=off`` on PostgreSQL."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")
        return
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")
    dbapi_connection.commit()  # a SET inside a transaction that is rolled back is undone


def set_trial_user_attrs(storage: BaseStorage, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Write several user attrs of a running trial, in one transaction on an RDB storage.

    Optuna's storage API writes one attr per call, and on a server database each call is a
    transaction of its own (a trial lookup, an upsert and a commit the server flushes to
    disk); a trial's worker writes a few attrs at a time (role, worker, device and policy
    before its training, its end flag and duration), so this writes them with one lookup and
    one upsert (PostgreSQL, SQLite) in one transaction. Other storages (the gRPC proxy) get
    one call per attr.

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: when the trial is already finished.
    """
    backend = storage._backend if isinstance(storage, _CachedStorage) else storage
    if not isinstance(backend, RDBStorage) or len(attrs) < 2:
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        return
    model = rdb_models.TrialUserAttributeModel
    dialect = backend.engine.name
    if dialect == "sqlite" and sqlite3.sqlite_version_info < (3, 24, 0):
        dialect = "sqlite without upsert"
    rows = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]
    with _create_scoped_session(backend.scoped_session, True) as session:
        if dialect not in ("postgresql", "sqlite"):
            for key, value in attrs.items():
                backend._set_trial_attr_without_commit(session, model, trial_id, key, value)
            return
        trial = rdb_models.TrialModel.find_or_raise_by_id(trial_id, session)
        backend.check_trial_is_updatable(trial_id, trial.state)
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = insert(model).values(rows)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[model.trial_id, model.key],
                set_={"value_json": stmt.excluded.value_json},
            )
        )


def set_trial_params(
    storage: BaseStorage, trial_id: int, params: Sequence[tuple[str, float, BaseDistribution]]
) -> None:
    """Write several params of a running trial (name, internal value, distribution) at once.

    Like ``storage.set_trial_param`` for each (the same checks: the trial is running, each
    distribution agrees with the study's earlier one of that name), but in one transaction
    on an RDB storage, with the inserts sent together; other storages get one call each.

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: when the trial is already finished.
        ValueError: a distribution incompatible with the study's earlier one of its name.
    """
    cache = storage if isinstance(storage, _CachedStorage) else None
    backend = storage._backend if isinstance(storage, _CachedStorage) else storage
    if not isinstance(backend, RDBStorage) or len(params) < 2:
        for name, value, distribution in params:
            storage.set_trial_param(trial_id, name, value, distribution)
        return
    known: dict[str, BaseDistribution] = {}
    if cache is not None:  # what `_CachedStorage.set_trial_param` checks against
        with cache._lock:
            study_id, _ = cache._trial_id_to_study_id_and_number[trial_id]
            known = dict(cache._studies[study_id].param_distribution)
    with _create_scoped_session(backend.scoped_session, True) as session, session.no_autoflush:
        for name, value, distribution in params:
            backend._set_trial_param_without_commit(
                session, trial_id, name, value, distribution, known.get(name)
            )
    if cache is not None:
        with cache._lock:
            for name, _, distribution in params:
                cache._studies[study_id].param_distribution.setdefault(name, distribution)


def has_heartbeat(storage: BaseStorage) -> bool:
    """Whether the storage records Optuna heartbeats (RDB with an interval; not gRPC)."""
    return is_heartbeat_enabled(storage)


@contextmanager
def lease(storage: BaseStorage, trial_id: int, interval_s: float, grace_s: float) -> Iterator[None]:
    """Hold a lease on a running trial: its ``augsearch:lease`` attr is refreshed every interval.

    The attr holds ``{"at": unix time, "grace": seconds}``; `fail_stale_trials` fails the trial
    once ``at`` is older than ``grace``. Used where Optuna's heartbeat is unavailable (gRPC).
    """
    stop = threading.Event()

    def renew() -> None:
        while True:
            # The trial may have finished, or the proxy blinked: try again next interval.
            with contextlib.suppress(Exception):
                storage.set_trial_system_attr(
                    trial_id, LEASE_ATTR, {"at": time.time(), "grace": grace_s}
                )
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=renew, name=f"lease-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _lease_expired(trial: FrozenTrial, now: float) -> bool:
    held = trial.system_attrs.get(LEASE_ATTR)
    if not isinstance(held, dict):
        return False
    return now - float(held.get("at", now)) > float(held.get("grace", 60.0))


def fail_stale_trials(study: optuna.Study, max_retry: int | None = 2) -> list[int]:
    """Fail the study's trials whose worker died, and re-queue them; safe to run anywhere.

    RDB storages with heartbeats use Optuna's ``fail_stale_trials`` (its configured callback
    re-queues); trials held by a lease (gRPC workers) are checked on any storage.

    Returns:
        Numbers of the trials failed by this call.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    before = {t.number for t in running}
    storage = study._storage
    if has_heartbeat(storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    now = time.time()
    failed: list[int] = []
    for trial in running:
        if not _lease_expired(trial, now):
            continue
        try:
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                failed.append(trial.number)
                RetryStaleTrial(max_retry)(study, storage.get_trial(trial._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another reaper (or the worker itself) finished it first
    now_failed = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    return sorted((before & now_failed) | set(failed))


def run_storage_proxy(
    storage_url: str, host: str = "0.0.0.0", port: int = 13000, pool: PoolOptions | None = None
) -> None:
    """Serve an RDB storage to gRPC workers (blocks until the process is stopped).

    Args:
        storage_url: SQLAlchemy URL of the database behind the proxy.
        host: address to bind.
        port: port to bind.
        pool: its database connections (default `WORKER_POOL`: the proxy makes the workers'
            commits).

    Raises:
        ValueError: when the URL is itself a gRPC URL.
    """
    if storage_url.startswith(GRPC_SCHEME):
        raise ValueError("the storage proxy must front a database URL, not another proxy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # get_storage caches the storage as the proxy expects; our engine settings still apply.
        storage = optuna.storages.get_storage(
            make_storage(storage_url, heartbeat_interval=None, pool=pool or WORKER_POOL)
        )
        optuna.storages.run_grpc_proxy_server(storage, host=host, port=port)


def is_transient(exc: BaseException) -> bool:
    """Whether an error is a lost connection to the storage that a retry may outlive.

    Database restarts and network blips surface as SQLAlchemy ``OperationalError`` /
    ``InterfaceError`` (or a DBAPI error that invalidated its connection), gRPC proxies as
    ``UNAVAILABLE`` or ``DEADLINE_EXCEEDED``; Optuna wraps them (``StorageInternalError``), so
    the chain of causes is searched.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_connection_error(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_connection_error(exc: BaseException) -> bool:
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    code = getattr(exc, "code", None)
    if callable(code) and type(exc).__module__.startswith("grpc"):
        return getattr(code(), "name", "") in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    return False
