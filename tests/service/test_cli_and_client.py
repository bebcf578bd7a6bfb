"""The CLI's local commands and error paths, and the Python client against the app in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from service.app import create_app
from service.cli import app
from service.client import ApiError, Client
from service.settings import Settings

runner = CliRunner()
DEAD_URL = "http://127.0.0.1:9"  # nothing listens on the discard port


def test_db_upgrade_and_token_create(tmp_path: Path) -> None:
    env = {"AUGSEARCH_DATA_DIR": str(tmp_path)}
    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    engine = create_engine(f"sqlite:///{tmp_path / 'augsearch.db'}")
    assert "augsearch_searches" in inspect(engine).get_table_names()
    engine.dispose()
    token = runner.invoke(app, ["token", "create", "--user", "alice"], env=env)
    assert token.exit_code == 0 and token.output.strip().startswith("aug_")
    clash = runner.invoke(app, ["token", "create", "--user", "alice", "--admin"], env=env)
    assert clash.exit_code == 1 and "exists" in clash.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["search", "list", "--url", DEAD_URL], "cannot reach"),
        (["search", "start", "--dataset", "1", "--spec", "/nonexistent.json"], "cannot read"),
        (["policy", "get", "--dataset", "1", "--format", "bogus"], "unknown format"),
        (["policy", "get", "--url", DEAD_URL], "exactly one"),
        (["dataset", "add", "nonsense"], "unknown source"),
        (["dataset", "add", "archive"], "needs --path"),
    ],
)
def test_bad_input_gives_a_message_and_a_non_zero_exit(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args, env={"AUGSEARCH_URL": DEAD_URL})
    assert result.exit_code == 1
    assert needle in result.output


def test_tokens_authenticate_requests(settings: Settings, tmp_path: Path) -> None:
    settings.single_user = False
    env = {"AUGSEARCH_DATABASE_URL": settings.database_url, "AUGSEARCH_DATA_DIR": str(tmp_path)}
    token = runner.invoke(app, ["token", "create", "--user", "bob"], env=env).output.strip()
    with TestClient(create_app(settings, reconcile=False, dashboard=False)) as http:
        assert http.get("/api/v1/datasets").status_code == 401
        bad = http.get("/api/v1/datasets", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["detail"] == "invalid or revoked token"
        client = Client(token=token, http=http)
        assert client.datasets()["total"] == 0
        assert http.get("/healthz").status_code == 200


def test_client_round_trip(client: TestClient, digits: dict[str, Any]) -> None:
    api = Client(http=client)
    assert api.datasets()["items"][0]["id"] == digits["id"]
    spec = {
        "strategy": "randaugment",
        "n_trials": 1,
        "baselines": ["none"],
        "recipe": {"epochs": 2},
    }
    search = api.start_search(int(digits["id"]), spec, name="from the client")
    assert api.search(search["id"])["name"] == "from the client"
    assert api.searches(state="queued")["total"] == 1
    with pytest.raises(ApiError) as missing:
        api.policy(dataset=int(digits["id"]))
    assert missing.value.status_code == 404 and "no completed search" in str(missing.value)
    assert api.cancel_search(search["id"])["state"] == "cancelled"
    assert api.health()["checks"]["database"] == "ok"


def test_the_demo_spec_is_a_valid_search_within_the_default_limits() -> None:
    from service.cli import DEMO_IMAGE_SIZE, DEMO_SPEC
    from service.searches.eta import planned_finals
    from service.searches.service import validate_spec

    dataset = {"source": "digits", "image_size": DEMO_IMAGE_SIZE}
    spec = validate_spec(DEMO_SPEC, dataset, Settings())
    # Epochs and batch size come from the data; the final pick fits the demo's few minutes.
    assert spec.recipe.epochs is None and spec.recipe.batch_size is None
    assert planned_finals(spec) == 3 and spec.holdout_fraction > 0


def test_the_progress_bar_counts_the_budget_and_the_final_pick() -> None:
    from service.cli_client import progress_line

    search = {"id": 3, "state": "finalizing", "best_value": 0.91,
              "progress": {"n_trials": 10, "budget_used": 10, "complete": 4, "pruned": 6,
                           "pruned_epochs": 81, "skipped": 1, "finals": 3, "finals_done": 1,
                           "eta_s": 125.0}}  # fmt: skip
    label, done, total = progress_line(search)
    assert (done, total) == (11, 13)
    assert label == (
        "search 3 [finalizing] best 0.9100 pruned 6 (81 epochs) skipped 1 final 1/3 ETA 2.1 min"
    )
    search["progress"] = {"n_trials": 10, "complete": 2}  # a cache written before the pick
    assert progress_line(search)[1:] == (2, 10)
