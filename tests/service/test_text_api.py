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
TEXT_SPEC = {"strategy": "eda", "n_trials": 2, "text_recipe": {"epochs": 2},
             "final_pick": {"candidates": 1, "presets": 1}}  # fmt: skip


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
    assert policy["policy"]["kind"] in ("text", "none") and not policy["provisional"]
    python = client.get(f"/api/v1/datasets/{search['dataset_id']}/policy?format=python").json()
    namespace: dict[str, Any] = {}
    exec(python["exported"], namespace)  # the served function runs
    copies = namespace["augment_copies"]("a small dog runs", np.random.default_rng(0))
    text = policy["policy"].get("text")
    assert len(copies) == (
        text["copies"] if text and any(s["magnitude"] for s in text["ops"]) else 0
    )
    if policy["policy"]["kind"] == "text":
        refused = client.get(f"/api/v1/searches/{search['id']}/policy?format=torchvision")
        assert refused.status_code == 422 and "augments sentences" in refused.json()["detail"]
    checkpoint = client.get(f"/api/v1/searches/{search['id']}/checkpoint")
    assert checkpoint.status_code == 200 and len(checkpoint.content) > 1000
