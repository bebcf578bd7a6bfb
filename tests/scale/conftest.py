"""Fixtures of the scale-out tests: a fresh PostgreSQL database per test module or test."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator

import optuna
import pytest
from sqlalchemy import create_engine, make_url, text

PG_ENV = "AUGSEARCH_TEST_POSTGRES_URL"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _admin_url() -> str:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set")
    return make_url(base).set(database="postgres").render_as_string(hide_password=False)


@contextlib.contextmanager
def _fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (created via ``postgres``, dropped after)."""
    admin_url = _admin_url()
    name = f"augsearch_scale_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        # The server may just have restarted: retry the drop for a while.
        for attempt in range(30):
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except Exception:
                if attempt == 29:
                    raise
                time.sleep(1)
        admin.dispose()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this module."""
    with _fresh_database() as url:
        yield url


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (nothing created in it yet)."""
    with _fresh_database() as url:
        yield url
