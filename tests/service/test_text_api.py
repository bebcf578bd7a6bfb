"""Text datasets and text searches through the REST API, in-process against a real database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.reconciler import Reconciler
from service.runtime import Runtime
from service.settings import Settings

SMALL = {"source": "wordnet-topics", "topics": ["animal", "food", "plant"], "per_class": 20}
TABLE = "text,label\nthe cat sat on the mat,pet\na dog barks at night,pet\nbuy cheap shares,spam\n"
# Every contender of this search is a text policy (no `none` baseline): on 60 texts and 2
# epochs the winner between `none` and an EDA policy is a coin flip that depends on which
# parameters the worker's sampler draws (seeded by the worker's name, i.e. host and pid).
TEXT_SPEC = {"strategy": "eda", "n_trials": 2, "text_recipe": {"epochs": 2},
             "baselines": ["eda-defaults"], "final_pick": {"candidates": 1, "presets": 1}}  # fmt: skip


def test_register_wordnet_topics(client: TestClient) -> None:
    response = client.post("/api/v1/datasets", json={**SMALL, "name": "topics"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["source"] == "wordnet-topics" and body["classes"] == ["animal", "food", "plant"]
    assert body["num_images"] == 60 and body["counts_per_class"] == dict.fromkeys(
        body["classes"], 20
    )
    assert body["image_size"] == 0 and body["channels"] == 0
    samples = client.get(f"/api/v1/datasets/{body['id']}/samples.png")
    assert samples.status_code == 422 and "holds texts" in samples.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"source": "wordnet-topics", "topics": ["animal", "nope"]}, "nope"),
        ({"source": "wordnet-topics", "image_size": 32}, "'image_size' is for images"),
        ({"source": "digits", "per_class": 20}, "only for source 'wordnet-topics'"),
        ({"source": "text-table"}, "needs 'path'"),
    ],
)
def test_text_registrations_are_checked(
    client: TestClient, body: dict[str, Any], message: str
) -> None:
    response = client.post("/api/v1/datasets", json=body)
    assert response.status_code == 422 and message in response.text, response.text


def test_text_table_by_server_path(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    root = settings.allowed_dataset_roots[0]
    (root / "mail.csv").write_text(TABLE)
    response = client.post(
        "/api/v1/datasets", json={"source": "text-table", "path": str(root / "mail.csv")}
    )
    assert response.status_code == 201, response.text
    assert response.json()["counts_per_class"] == {"pet": 2, "spam": 1}
    (root / "bad.csv").write_text(TABLE + ",spam\n")
    bad = client.post(
        "/api/v1/datasets", json={"source": "text-table", "path": str(root / "bad.csv")}
    )
    assert bad.status_code == 422 and "row 4" in bad.json()["detail"], bad.text
    (tmp_path / "out.csv").write_text(TABLE)
    outside = client.post(
        "/api/v1/datasets", json={"source": "text-table", "path": str(tmp_path / "out.csv")}
    )
    assert outside.status_code == 403
    (root / "notes.txt").write_text(TABLE)
    wrong = client.post(
        "/api/v1/datasets", json={"source": "text-table", "path": str(root / "notes.txt")}
    )
    assert wrong.status_code == 422 and "not a text table" in wrong.json()["detail"]


def test_text_table_upload(client: TestClient, settings: Settings) -> None:
    files = {"file": ("mail.csv", TABLE.encode(), "text/csv")}
    response = client.post("/api/v1/datasets/upload", files=files, data={"name": "mail"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["source"] == "text-table" and body["name"] == "mail"
    uploads = settings.data_dir / "uploads"
    assert len(list(uploads.iterdir())) == 1
    bad = {"file": ("bad.jsonl", b'{"text": "hi", "label": "a"}\n{"text": "oops"\n', "x")}
    refused = client.post("/api/v1/datasets/upload", files=bad)
    assert refused.status_code == 422 and "row 2 is not JSON" in refused.json()["detail"], (
        refused.text
    )
    assert "uploads" not in refused.json()["detail"]
    assert len(list(uploads.iterdir())) == 1  # the refused file is gone
    assert client.delete(f"/api/v1/datasets/{body['id']}").status_code == 204
    assert not list(uploads.iterdir())


def test_an_image_strategy_on_a_text_dataset_is_refused(client: TestClient) -> None:
    did = client.post("/api/v1/datasets", json=SMALL).json()["id"]
    response = client.post(
        "/api/v1/searches", json={"dataset_id": did, "spec": {"strategy": "randaugment"}}
    )
    assert response.status_code == 422 and "strategy 'eda'" in response.text


@pytest.fixture(scope="module")
def text_flow(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    """A small eda search run to completion by a real worker and recorded by the reconciler."""
    from search.worker import Worker

    base = tmp_path_factory.mktemp("text-flow")
    shutil.copy(sqlite_template, base / "augsearch.db")
    settings = Settings(
        data_dir=base, database_url=f"sqlite:///{base / 'augsearch.db'}", single_user=True
    )
    with TestClient(create_app(settings, reconcile=False)) as client:
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        did = client.post("/api/v1/datasets", json=SMALL).json()["id"]
        created = client.post("/api/v1/searches", json={"dataset_id": did, "spec": TEXT_SPEC})
        assert created.status_code == 201, created.text
        reconciler = Reconciler(runtime)
        try:
            reconciler.run_once()
            worker = Worker(settings.optuna_storage_url, "cpu", settings.artifact_store_location,
                            poll_interval=0.1, idle_exit=0.5, max_trials=8)  # fmt: skip
            worker.run()
            for _ in range(3):
                reconciler.run_once()
        finally:
            reconciler.leader.release()
        search: dict[str, Any] = client.get(f"/api/v1/searches/{created.json()['id']}").json()
        assert search["state"] == "completed", search
        yield client, search


def test_a_text_search_serves_its_policy_and_checkpoint(
    text_flow: tuple[TestClient, dict[str, Any]],
) -> None:
    client, search = text_flow
    policy = client.get(f"/api/v1/searches/{search['id']}/policy").json()
    assert policy["policy"]["kind"] == "text" and not policy["provisional"]
    python = client.get(f"/api/v1/datasets/{search['dataset_id']}/policy?format=python").json()
    namespace: dict[str, Any] = {}
    exec(python["exported"], namespace)  # the served function runs
    copies = namespace["augment_copies"]("a small dog runs", np.random.default_rng(0))
    assert len(copies) == policy["policy"]["text"]["copies"]
    refused = client.get(f"/api/v1/searches/{search['id']}/policy?format=torchvision")
    assert refused.status_code == 422 and "augments sentences" in refused.json()["detail"]
    checkpoint = client.get(f"/api/v1/searches/{search['id']}/checkpoint")
    assert checkpoint.status_code == 200 and len(checkpoint.content) > 1000


def test_the_dashboard_shows_sentences_for_a_text_policy(
    text_flow: tuple[TestClient, dict[str, Any]],
) -> None:
    client, search = text_flow
    page = client.get(f"/searches/{search['id']}/policy")
    assert page.status_code == 200, page.text
    html = page.text
    # Every contender of the search is a text policy (see TEXT_SPEC).
    assert search_policy_kind(client, search["id"]) == "text"
    assert 'id="policy-text-examples"' in html and "preview.png" not in html
    assert 'data-format="python"' in html and 'data-format="torchvision"' not in html
    assert "def augment_copies" in html
    dataset = client.get(f"/datasets/{search['dataset_id']}")
    assert dataset.status_code == 200 and "samples.png" not in dataset.text
    assert "60 texts" in dataset.text


def search_policy_kind(client: TestClient, search_id: int) -> str:
    return str(client.get(f"/api/v1/searches/{search_id}/policy").json()["policy"]["kind"])


def test_text_examples_are_real_sentences_of_the_dataset() -> None:
    from ops.text_presets import eda_policy
    from service.dashboard.text_examples import EXAMPLE_DRAWS, text_examples

    policy = eda_policy(alpha=0.3).model_dump(mode="json")
    examples = text_examples(SMALL, policy, seed=1)
    assert len(examples) == 3  # one per topic
    for text, augmented in examples:
        assert len(augmented) == EXAMPLE_DRAWS and any(a != text for a in augmented)
    assert text_examples(SMALL, policy, seed=1) == examples


def test_client_registers_text_sets_and_starts_eda_searches(client: TestClient) -> None:
    from service.cli_client import _spec_from
    from service.client import Client

    api = Client(http=client)  # type: ignore[arg-type]
    topics = api.add_dataset("wordnet-topics", topics=["animal", "food"], per_class=10)
    assert topics["num_images"] == 20
    spec = _spec_from(None, 2, 3, "eda")
    assert spec == {"n_trials": 2, "strategy": "eda", "text_recipe": {"epochs": 3}}
    search = api.start_search(int(topics["id"]), spec)
    assert search["spec"]["baselines"] == ["none", "eda-defaults"]
    assert search["spec"]["text_recipe"]["epochs"] == 3


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["dataset", "add", "text-upload"], "needs --path"),
        (
            ["dataset", "add", "digits", "--topics", "animal,food"],
            "are for source 'wordnet-topics'",
        ),
    ],
)
def test_cli_text_errors(args: list[str], needle: str) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    result = CliRunner().invoke(app, args, env={"AUGSEARCH_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 1 and needle in result.output
