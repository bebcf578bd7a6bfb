"""A whole tiny search in-process: reconciler + a real worker, then policy and checkpoint APIs."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
from fastapi.testclient import TestClient

from service.app import create_app
from service.reconciler import Reconciler
from service.runtime import Runtime
from service.settings import Settings

TINY = {
    "strategy": "randaugment",
    "n_trials": 1,
    "baselines": ["none"],
    "train_size": 300,
    "recipe": {"epochs": 1, "batch_size": 64, "width": 0.25},
    "final_recipe": {"epochs": 1, "batch_size": 64, "width": 0.25},
}


@pytest.fixture(scope="module")
def flow(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, dataset_cache: Path
) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    """A tiny search run to completion by a real worker and recorded by the reconciler (once
    for the module: training dominates the cost)."""
    from search.worker import Worker

    base = tmp_path_factory.mktemp("flow")
    shutil.copy(sqlite_template, base / "augsearch.db")
    (base / "cache").symlink_to(dataset_cache)
    settings = Settings(
        data_dir=base, database_url=f"sqlite:///{base / 'augsearch.db'}", single_user=True
    )
    with TestClient(create_app(settings, reconcile=False)) as client:
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        # 16x16 digits: a quarter of the compute of the native 32x32.
        digits = {"source": "digits", "image_size": 16}
        did = client.post("/api/v1/datasets", json=digits).json()["id"]
        body = {"dataset_id": did, "spec": TINY}
        sid = client.post("/api/v1/searches", json=body).json()["id"]
        reconciler = Reconciler(runtime)
        try:
            reconciler.run_once()
            worker = Worker(
                settings.optuna_storage_url,
                "cpu",
                settings.artifact_store_location,
                poll_interval=0.1,
                idle_exit=0.5,
                max_trials=6,
                data_cache_dir=str(settings.data_dir / "cache"),
            )
            worker.run()
            for _ in range(3):
                reconciler.run_once()
        finally:
            reconciler.leader.release()
        search: dict[str, Any] = client.get(f"/api/v1/searches/{sid}").json()
        assert search["state"] == "completed", search
        yield client, search


@pytest.fixture
def client(flow: tuple[TestClient, dict[str, Any]]) -> TestClient:
    """The app that ran the search."""
    return flow[0]


@pytest.fixture
def completed(flow: tuple[TestClient, dict[str, Any]]) -> dict[str, Any]:
    """The completed search."""
    return flow[1]


def test_completed_search_records_trials_and_progress(
    client: TestClient, completed: dict[str, Any]
) -> None:
    assert completed["best_value"] is not None and 0.0 <= completed["best_value"] <= 1.0
    assert completed["progress"]["complete"] == 1
    assert completed["progress"]["baselines"]["none"] is not None
    trials = client.get(f"/api/v1/searches/{completed['id']}/trials").json()["items"]
    # The final pick retrains the searched policy and the preset.
    assert sorted(t["role"] for t in trials) == ["baseline", "final", "final", "search"]
    for trial in trials:
        assert trial["state"] == "COMPLETE" and trial["worker"] and trial["duration_s"] > 0
        assert len(trial["epochs"]) == 1 and trial["policy"] is not None


def test_policy_in_every_format(client: TestClient, completed: dict[str, Any]) -> None:
    sid, did = completed["id"], completed["dataset_id"]
    as_json = client.get(f"/api/v1/searches/{sid}/policy").json()
    assert as_json["provisional"] is False and as_json["policy"]["schema_version"] == 1
    assert as_json["accuracy"] == completed["best_value"]
    tv = client.get(f"/api/v1/searches/{sid}/policy", params={"format": "torchvision"})
    assert tv.status_code == 200, (as_json["policy"], tv.text)
    assert "torchvision" in tv.json()["exported"]
    # albumentations cannot draw noisy magnitudes: that export answers 422 with the reason,
    # the others must succeed (timm: a config string, or code over timm's ops).
    noisy = float(as_json["policy"].get("m_std") or 0.0) > 0
    alb = client.get(f"/api/v1/searches/{sid}/policy", params={"format": "albumentations"})
    if noisy:
        assert alb.status_code == 422 and "cannot be exported" in alb.json()["detail"]
    else:
        assert alb.status_code == 200, (as_json["policy"], alb.text)
        assert alb.json()["exported"]["transform"]["__class_fullname__"] == "Compose"
    timm = client.get(f"/api/v1/searches/{sid}/policy", params={"format": "timm"})
    assert timm.status_code == 200, (as_json["policy"], timm.text)
    exported = timm.json()["exported"]
    assert exported.startswith("rand-") or "from timm.data.auto_augment import" in exported
    by_dataset = client.get(f"/api/v1/datasets/{did}/policy").json()
    assert by_dataset["policy"] == as_json["policy"] and by_dataset["search_id"] == sid
    assert client.get(f"/api/v1/searches/{sid}/policy", params={"format": "x"}).status_code == 422


def test_checkpoint_download_matches_its_checksum(
    client: TestClient, completed: dict[str, Any]
) -> None:
    url = f"/api/v1/searches/{completed['id']}/checkpoint"
    response = client.get(url)
    assert response.status_code == 200
    sha = response.headers["X-Checksum-SHA256"]
    assert hashlib.sha256(response.content).hexdigest() == sha
    assert response.headers["ETag"] == f'"{sha}"'
    state = safetensors.torch.load(response.content)
    assert state and all(t.numel() > 0 for t in state.values())
    assert client.get(url, headers={"If-None-Match": f'"{sha}"'}).status_code == 304
    card = client.get(f"{url}/card").json()
    assert card["sha256"] == sha and card["card"]["num_classes"] == 10


def test_deleting_the_search_invalidates_the_dataset_policy(
    client: TestClient, completed: dict[str, Any]
) -> None:
    did = completed["dataset_id"]
    assert client.get(f"/api/v1/datasets/{did}/policy").status_code == 200
    assert client.delete(f"/api/v1/searches/{completed['id']}").status_code == 204
    assert client.get(f"/api/v1/datasets/{did}/policy").status_code == 404
