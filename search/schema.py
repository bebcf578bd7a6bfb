"""Optuna's own tables: created once per database, however many processes open it together.

Optuna creates its tables (and stamps its Alembic chain in ``alembic_version``) whenever an
``RDBStorage`` opens a database. Processes that open a fresh database at the same time race,
and the losers die: on SQLite with ``table studies already exists``, on PostgreSQL with a
``UniqueViolation`` on ``CREATE TYPE studydirection``; a creator killed half-way leaves tables
without their version row and stamp, and the next two openers race on those.

`ensure_optuna_schema` creates the schema while holding the database's ``optuna-schema`` lock
(`search.locks.database_lock`) and skips it once the schema is stamped, so one process creates
it and the others wait for it. ``augsearch db upgrade`` and the service's start-up call it
before any worker starts; `search.storage.make_storage` calls it too, and workers give it time
to wait out a database that does not answer yet or a schema another program is making.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from sqlalchemy.pool import NullPool

from search.locks import database_lock

#: How long workers and the service's start-up wait for a usable schema (seconds).
SCHEMA_WAIT_S = 120.0
_RETRY_S = 2.0
log = logging.getLogger("augsearch.storage")


class SchemaNotReady(RuntimeError):
    """Optuna's tables could not be reached or made in the time given."""


def ensure_optuna_schema(url: str, *, wait_s: float = SCHEMA_WAIT_S) -> None:
    """Make sure Optuna's tables exist in the database of ``url``, creating them at most once.

    Args:
        url: SQLAlchemy URL of the Optuna storage (not ``grpc://``, not in-memory SQLite).
        wait_s: how long to retry, one log line a try, while the database cannot be reached
            or the schema cannot be made (0: one try; its error is raised as it is).

    Raises:
        SchemaNotReady: the schema is still not usable after ``wait_s`` seconds.
        sqlalchemy.exc.DBAPIError: with ``wait_s`` 0, the error of the one try.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            _create_once(url)
            return
        except sqlalchemy.exc.DBAPIError as exc:
            if wait_s <= 0:
                raise
            left = deadline - time.monotonic()
            reason = (str(exc).strip() or repr(exc)).splitlines()[0][:300]
            if left <= 0:
                raise SchemaNotReady(
                    f"Optuna's tables in {_safe(url)} are still not usable after "
                    f"{wait_s:.0f} s: {reason}"
                ) from exc
            log.warning(
                "Optuna's tables in %s are not usable yet (%s); retrying in %.0f s, "
                "giving up in %.0f s",
                _safe(url),
                reason,
                min(_RETRY_S, left),
                left,
            )
            time.sleep(min(_RETRY_S, left))


def _create_once(url: str) -> None:
    """Create the schema under the database's lock unless it is stamped already."""
    kwargs = _engine_kwargs(url)
    engine = sqlalchemy.create_engine(url, **kwargs)
    try:
        if _stamped(engine):
            return
        log.info("Optuna's tables in %s are missing: creating them", _safe(url))
        with database_lock(engine, "optuna-schema", "schema"):
            if _stamped(engine):
                return  # made by the process that held the lock before us
            if engine.dialect.name == "sqlite":  # before anyone else writes it
                with engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # Creates missing tables, the version row and the stamp, in that order.
                RDBStorage(url, engine_kwargs=kwargs).engine.dispose()
    finally:
        engine.dispose()


def _stamped(engine: sqlalchemy.Engine) -> bool:
    """Whether Optuna's Alembic chain is stamped: the last step of its schema's creation."""
    with engine.connect() as conn:
        if not sqlalchemy.inspect(conn).has_table("alembic_version"):
            return False
        return (
            conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).first()
            is not None
        )


def _engine_kwargs(url: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"poolclass": NullPool}  # a few connections, then gone
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    return kwargs


def _safe(url: str) -> str:
    """The URL without its password, for log lines."""
    return sqlalchemy.make_url(url).render_as_string(hide_password=True)
