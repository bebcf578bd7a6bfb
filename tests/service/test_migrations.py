"""Migrations: the service's tables and Optuna's share one database; no drift; reversible."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from sqlalchemy import create_engine, inspect

from service.db.migrate import VERSION_TABLE, check, downgrade, upgrade
from service.db.models import Base

SERVICE_TABLES = set(Base.metadata.tables)


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _coexist_and_roundtrip(url: str) -> None:
    upgrade(url)
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=storage, study_name="coexist")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    storage.engine.dispose()
    tables = _tables(url)
    assert tables >= SERVICE_TABLES
    assert {"studies", "trials", "alembic_version", VERSION_TABLE} <= tables
    check(url)  # raises on drift between models and migrations
    downgrade(url, "base")
    remaining = _tables(url)
    assert not (SERVICE_TABLES & remaining)
    assert "studies" in remaining  # Optuna's tables are left alone
    upgrade(url)
    assert _tables(url) >= SERVICE_TABLES
    loaded = optuna.load_study(study_name="coexist", storage=url)
    assert len(loaded.trials) == 2


def test_sqlite_one_file_holds_both_and_roundtrips(tmp_path: Path) -> None:
    _coexist_and_roundtrip(f"sqlite:///{tmp_path / 'both.db'}")


@pytest.mark.postgres
def test_postgres_one_database_holds_both_and_roundtrips(
    postgres_url: str, empty_postgres: Callable[[str], None]
) -> None:
    downgrade(postgres_url, "base")
    try:
        _coexist_and_roundtrip(postgres_url)
    finally:
        upgrade(postgres_url)
        empty_postgres(postgres_url)
