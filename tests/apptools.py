"""Building blocks of the in-process service fixtures (service and security suites): a migrated
SQLite template, settings in a temporary data dir, the app under a test client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.app import create_app
from service.db.migrate import upgrade
from service.runtime import Runtime
from service.settings import Settings


def migrated_sqlite(folder: Path) -> Path:
    """A SQLite file in ``folder`` migrated to head, to be copied per test (faster than
    migrating each time)."""
    path = folder / "augsearch.db"
    upgrade(f"sqlite:///{path}")
    return path


def temp_settings(
    tmp_path: Path, database_url: str, cache: Path, root: Path, **overrides: Any
) -> Settings:
    """Settings on a data dir under ``tmp_path`` whose decoded-dataset cache is the shared
    ``cache``, with ``root`` (created) as the one allowed dataset root and small test caps."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "cache").symlink_to(cache)
    root.mkdir(parents=True)
    fields: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "allowed_dataset_roots": [root],
        "max_trials": 50,
        "max_epochs": 20,
        "max_page_size": 100,
        "heartbeat_interval_s": 1,
    }
    return Settings(**{**fields, **overrides})


@contextmanager
def app_client(settings: Settings) -> Iterator[TestClient]:
    """The app in-process with its lifespan run, without the background reconciler."""
    with TestClient(create_app(settings, reconcile=False)) as client:
        yield client


def runtime_of(client: TestClient) -> Runtime:
    """The runtime the app built in its lifespan."""
    result: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return result
