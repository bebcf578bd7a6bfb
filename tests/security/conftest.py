"""Fixtures of the attack suite: a multi-user service (tokens, no single-user mode) on a real
migrated SQLite database, three accounts (alice, bob, an admin) and alice's objects."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from apptools import app_client, migrated_sqlite, runtime_of, temp_settings
from fastapi.testclient import TestClient
from security_support import MAX_UPLOAD, Accounts, Owned, complete_search

from service.runtime import Runtime
from service.settings import Settings
from service.users.service import create_user_with_token


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test."""
    return migrated_sqlite(tmp_path_factory.mktemp("security-template"))


@pytest.fixture(scope="session")
def decoded_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Decoded-dataset cache shared by the session (digits is decoded once)."""
    return tmp_path_factory.mktemp("security-cache")


@pytest.fixture
def secure_settings(tmp_path: Path, migrated_template: Path, decoded_cache: Path) -> Settings:
    """Multi-user settings: tokens required, one allowed dataset root, small upload cap."""
    shutil.copy(migrated_template, tmp_path / "augsearch.db")
    return temp_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'augsearch.db'}",
        decoded_cache,
        tmp_path / "roots" / "root",
        single_user=False,
        max_upload_bytes=MAX_UPLOAD,
        max_concurrent_searches=2,
    )


@pytest.fixture
def api(secure_settings: Settings) -> Iterator[TestClient]:
    """The app in-process (lifespan run, no background reconciler), with no credentials."""
    with app_client(secure_settings) as client:
        yield client


@pytest.fixture
def runtime(api: TestClient) -> Runtime:
    """The runtime built in the app's lifespan."""
    return runtime_of(api)


@pytest.fixture
def accounts(runtime: Runtime) -> Accounts:
    """alice and bob (ordinary users) and root (an admin), each with a token."""
    tokens = {}
    with runtime.transaction() as session:
        for name, admin in (("alice", False), ("bob", False), ("root", True)):
            tokens[name] = create_user_with_token(session, name, admin)[1]

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    return Accounts(
        bearer(tokens["alice"]), bearer(tokens["bob"]), bearer(tokens["root"]), tokens["alice"]
    )


@pytest.fixture
def owned(api: TestClient, accounts: Accounts, runtime: Runtime) -> Owned:
    """alice's digits dataset and a completed search on it."""
    dataset = api.post("/api/v1/datasets", json={"source": "digits"}, headers=accounts.alice)
    assert dataset.status_code == 201, dataset.text
    spec = {"strategy": "randaugment", "n_trials": 2, "recipe": {"epochs": 1}}
    body = {"dataset_id": dataset.json()["id"], "spec": spec}
    search = api.post("/api/v1/searches", json=body, headers=accounts.alice)
    assert search.status_code == 201, search.text
    path = complete_search(runtime, search.json()["id"])
    return Owned(dataset.json()["id"], search.json()["id"], path)
