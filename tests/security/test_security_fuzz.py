"""Schemathesis against the app's own OpenAPI schema, in-process, with a valid token: no
generated request may make the server answer 5xx or break the documented schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.app import create_app
from service.db.migrate import upgrade
from service.settings import Settings
from service.users.service import create_user_with_token

# Every other default check runs (server errors, status codes, content types, response
# schemas and headers, schema-invalid data rejected). positive_data_acceptance is left out:
# rules the schema cannot state (``source: path`` needs ``path``, a dataset id must exist, a
# search spec must satisfy SearchSpec) rightly answer 4xx to schema-valid requests.

# One app for the whole module: schemathesis calls it in-process for every generated case.
_STATE: dict[str, object] = {}
EXAMPLES = 20
# Registering a dataset decodes it (seconds to minutes at large image sizes): its validation
# has its own tests, the fuzzer stays on the routes that answer at once.
LONG_WORK = {"POST /api/v1/datasets"}


def _lazy_app() -> FastAPI:
    app = _STATE.get("app")
    assert isinstance(app, FastAPI), "the fuzz_app fixture builds the app first"
    return app


@pytest.fixture(scope="module", autouse=True)
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, decoded_cache: Path) -> Iterator[None]:
    base = tmp_path_factory.mktemp("fuzz")
    (base / "data").mkdir()
    (base / "data" / "cache").symlink_to(decoded_cache)
    (base / "root").mkdir()
    upgrade(f"sqlite:///{base / 'augsearch.db'}")
    cfg = Settings(
        data_dir=base / "data",
        database_url=f"sqlite:///{base / 'augsearch.db'}",
        allowed_dataset_roots=[base / "root"],
        max_upload_bytes=64 * 1024,
        max_trials=20,
        max_epochs=5,
    )
    app = create_app(cfg, reconcile=False, dashboard=False)
    with TestClient(app) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        with runtime.transaction() as session:
            _, token = create_user_with_token(session, "fuzzer")
        headers = {"Authorization": f"Bearer {token}"}
        client.post("/api/v1/datasets", json={"source": "digits"}, headers=headers)
        _STATE.update(app=app, headers=headers)
        yield
    _STATE.clear()


def _operations() -> list[object]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", _lazy_app())
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    return [op for op in operations if op.label not in LONG_WORK]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_no_schema_violations(mode: GenerationMode) -> None:
    headers = _STATE["headers"]
    assert isinstance(headers, dict)
    operations = _operations()
    assert len(operations) >= 19
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))  # type: ignore[attr-defined]
        @settings(
            max_examples=EXAMPLES, deadline=None, derandomize=True,
            suppress_health_check=list(HealthCheck), database=None,
        )  # fmt: skip
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Unsatisfiable:
            # An operation without inputs (GET /workers) has no schema-invalid request.
            assert mode is GenerationMode.NEGATIVE, operation
