"""What the service builds at start-up from its settings: engine, sessions, Optuna storage."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.db.engine import make_engine, make_sessionmaker
from service.db.models import User
from service.policies.cache import PolicyCache
from service.settings import Settings

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

    from search.storage import PoolOptions


def pool_options(settings: Settings, *, worker: bool = False) -> PoolOptions:
    """The database connections of one process, as configured (the service's Optuna storage,
    or with ``worker`` a worker's or the storage proxy's, which apply
    ``worker_durable_commits``; the service's own are durable)."""
    from search.storage import PoolOptions

    return PoolOptions(
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle_s=settings.db_pool_recycle_s,
        pool_timeout_s=settings.db_pool_timeout_s,
        durable_commits=settings.worker_durable_commits if worker else True,
    )


def make_optuna_storage(settings: Settings) -> RDBStorage:
    """Optuna's RDB storage on the configured URL, with heartbeats and stale-trial retry.

    The service always talks to the database directly (never through a gRPC proxy), so its
    reconciler can fail stale trials whatever the workers use.

    Args:
        settings: Service settings (storage URL, heartbeat interval, pool).

    Returns:
        The storage (its tables are created on first use by Optuna's own migrations).

    Raises:
        ValueError: when the storage URL is a ``grpc://`` proxy.
    """
    from optuna.storages import RDBStorage

    from search.storage import make_storage  # heavy (optuna): only when needed

    storage = make_storage(
        settings.optuna_storage_url,
        heartbeat_interval=settings.heartbeat_interval_s,
        pool=pool_options(settings),
    )
    if not isinstance(storage, RDBStorage):
        raise ValueError("the service needs a database URL for Optuna, not a gRPC proxy")
    return storage


@dataclass
class Runtime:
    """Process-wide resources, built in the app lifespan (or by the CLI) and disposed at exit."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    policy_cache: PolicyCache = field(default_factory=PolicyCache)
    local_user: User | None = None
    _storage: RDBStorage | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        """Create directories, the engine and the session factory."""
        settings.ensure_dirs()
        engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_recycle_s=settings.db_pool_recycle_s,
            pool_timeout_s=settings.db_pool_timeout_s,
        )
        return cls(settings=settings, engine=engine, sessions=make_sessionmaker(engine))

    @property
    def storage(self) -> RDBStorage:
        """The Optuna storage, built on first use (creating it touches the database)."""
        with self._lock:
            if self._storage is None:
                self._storage = make_optuna_storage(self.settings)
            return self._storage

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error (job boundaries)."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        """Dispose of the engines."""
        if self._storage is not None:
            engine = getattr(self._storage, "engine", None)
            if engine is not None:
                engine.dispose()
        self.engine.dispose()
