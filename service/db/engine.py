"""Engine and session factories (called from the app lifespan and the CLI, never at import)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the workers' writes; busy_timeout makes writers wait for the
    # lock instead of failing at once with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 5,
    pool_recycle_s: int = 1800,
    pool_timeout_s: float = 30.0,
    **kwargs: Any,
) -> Engine:
    """Build an engine; SQLite gets WAL, a busy timeout and foreign keys, servers a sized pool.

    A server database (PostgreSQL) gets ``pool_pre_ping`` so connections killed by a server
    restart are replaced on checkout, and ``pool_recycle`` so idle ones are renewed before a
    firewall or the server drops them. Each process holds at most
    ``pool_size + max_overflow`` connections.

    Args:
        url: SQLAlchemy database URL.
        pool_size: Connections kept open (server databases).
        max_overflow: Extra connections opened under load (server databases).
        pool_recycle_s: Age after which a connection is replaced (server databases).
        pool_timeout_s: How long a checkout waits for a free connection (server databases).
        **kwargs: Extra ``create_engine`` arguments.

    Returns:
        The engine.
    """
    if url.startswith("sqlite"):
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    pool = {
        "pool_pre_ping": True,
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_recycle": pool_recycle_s,
        "pool_timeout": pool_timeout_s,
    }
    return create_engine(url, **{**pool, **kwargs})


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit (responses are built late)."""
    return sessionmaker(engine, expire_on_commit=False)
