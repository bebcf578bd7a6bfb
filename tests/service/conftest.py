"""Fixtures: a real database built by ``alembic upgrade head`` (SQLite, and PostgreSQL when
``AUGSEARCH_TEST_POSTGRES_URL`` is set), settings in a temporary data dir, the app in-process."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from apptools import app_client, migrated_sqlite, runtime_of, temp_settings
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from service.db.migrate import upgrade
from service.reconciler import Reconciler
from service.runtime import Runtime
from service.settings import Settings

PG_ENV = "AUGSEARCH_TEST_POSTGRES_URL"
KEEP_TABLES = {"alembic_version", "augsearch_alembic_version", "version_info"}


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating per test is slower)."""
    return migrated_sqlite(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, migrated, dropped at the end."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set")
    name = f"augsearch_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def truncate_postgres(url: str) -> None:
    """Empty every table but the version tables (service and Optuna rows alike)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        names = conn.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        ).all()
        tables = [n for n in names if n not in KEEP_TABLES]
        if tables:
            joined = ", ".join(f'"{t}"' for t in tables)
            conn.execute(text(f"TRUNCATE {joined} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def empty_postgres() -> Callable[[str], None]:
    """The function that empties a PostgreSQL test database."""
    return truncate_postgres


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    """The database of one test: a copy of the SQLite template, or the emptied PG database."""
    if request.param == "sqlite":
        path = tmp_path / "augsearch.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    truncate_postgres(url)
    yield url


@pytest.fixture(scope="session")
def dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Decoded-dataset cache shared by the session (decoding digits once is enough)."""
    return tmp_path_factory.mktemp("dataset-cache")


@pytest.fixture
def settings(tmp_path: Path, database_url: str, dataset_cache: Path) -> Settings:
    """Single-user settings in a temporary data dir, with one allowed dataset root."""
    return temp_settings(
        tmp_path,
        database_url,
        dataset_cache,
        tmp_path / "datasets",
        single_user=True,
        max_concurrent_searches=3,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The app in-process (lifespan run), without the background reconciler."""
    with app_client(settings) as test_client:
        yield test_client


@pytest.fixture
def runtime(client: TestClient) -> Runtime:
    """The runtime the app built in its lifespan."""
    return runtime_of(client)


@pytest.fixture
def reconciler(runtime: Runtime) -> Iterator[Reconciler]:
    """A reconciler whose leader lock is released after the test."""
    reconciler = Reconciler(runtime)
    try:
        yield reconciler
    finally:
        reconciler.leader.release()


@pytest.fixture
def digits(client: TestClient) -> dict[str, object]:
    """The built-in digits dataset, registered."""
    response = client.post("/api/v1/datasets", json={"source": "digits"})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body
