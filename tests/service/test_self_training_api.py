"""Self-training through the API: unlabelled images attached to a dataset, a job launched on a
completed search, run by a real worker and followed by the reconciler, its best student served
as a verified checkpoint; every bad request answered with a clear 4xx."""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.reconciler import Reconciler
from service.runtime import Runtime
from service.settings import Settings

TINY = {
    "strategy": "randaugment",
    "n_trials": 1,
    "baselines": ["none"],
    "train_size": 300,
    "final_pick": {"candidates": 1, "presets": 0},
    "recipe": {"arch": "resnet8", "epochs": 1, "batch_size": 64},
    "final_recipe": {"arch": "resnet8", "epochs": 1, "batch_size": 64},
}
JOB = {"iterations": 2, "student": {"drop_path": 0.1, "dropout": 0.1}, "pseudo_labels": "soft"}


def _zip(count: int) -> bytes:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for i in range(count):
            png = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(png, "PNG")
            zf.writestr(f"unsorted/{i}.png", png.getvalue())
    return buffer.getvalue()


def _work(runtime: Runtime, settings: Settings, reconciler: Reconciler, trials: int) -> None:
    from search.worker import Worker

    reconciler.run_once()
    Worker(
        settings.optuna_storage_url, "cpu", settings.artifact_store_location,
        poll_interval=0.05, idle_exit=0.5, max_trials=trials,
        data_cache_dir=str(settings.data_dir / "cache"),
    ).run()  # fmt: skip
    for _ in range(3):
        reconciler.run_once()


@pytest.fixture(scope="module")
def flow(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, dataset_cache: Path
) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    """A tiny completed search, unlabelled images on its dataset and one finished job."""
    base = tmp_path_factory.mktemp("self-train")
    shutil.copy(sqlite_template, base / "augsearch.db")
    (base / "cache").symlink_to(dataset_cache)
    settings = Settings(
        data_dir=base, database_url=f"sqlite:///{base / 'augsearch.db'}", single_user=True
    )
    with TestClient(create_app(settings, reconcile=False)) as client:
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        did = client.post("/api/v1/datasets", json={"source": "digits", "image_size": 16}).json()
        sid = client.post("/api/v1/searches", json={"dataset_id": did["id"], "spec": TINY})
        search_id = sid.json()["id"]
        reconciler = Reconciler(runtime)
        try:
            _work(runtime, settings, reconciler, trials=6)
            assert client.get(f"/api/v1/searches/{search_id}").json()["state"] == "completed"
            files = {"file": ("extra.zip", _zip(40), "application/zip")}
            up = client.post(
                "/api/v1/unlabelled/upload", files=files, data={"dataset_id": str(did["id"])}
            )
            assert up.status_code == 201, up.text
            launched = client.post(
                f"/api/v1/searches/{search_id}/self-train",
                json={"unlabelled_id": up.json()["id"], **JOB},
            )
            assert launched.status_code == 201, launched.text
            assert launched.json()["state"] == "queued"
            _work(runtime, settings, reconciler, trials=3)
            job = client.get(f"/api/v1/self-trainings/{launched.json()['id']}").json()
        finally:
            reconciler.leader.release()
        yield client, {
            "dataset": did, "search_id": search_id, "unlabelled": up.json(), "job": job,
            "reconciler": reconciler,
        }  # fmt: skip


def test_unlabelled_upload_is_decoded_to_the_datasets_shape(
    flow: tuple[TestClient, dict[str, Any]],
) -> None:
    client, ctx = flow
    unlabelled = ctx["unlabelled"]
    assert unlabelled["num_images"] == 40 and unlabelled["source"] == "archive"
    listed = client.get("/api/v1/unlabelled", params={"dataset_id": ctx["dataset"]["id"]})
    assert [u["id"] for u in listed.json()["items"]] == [unlabelled["id"]]
    assert client.get(f"/api/v1/unlabelled/{unlabelled['id']}").json()["name"] == "extra.zip"


def test_job_runs_every_step_and_serves_the_best_student(
    flow: tuple[TestClient, dict[str, Any]],
) -> None:
    client, ctx = flow
    job = ctx["job"]
    assert job["state"] == "completed", job
    assert [(s["role"], s["state"]) for s in job["steps"]] == [
        ("teacher", "COMPLETE"), ("student", "COMPLETE"), ("student", "COMPLETE")
    ]  # fmt: skip
    assert job["trainings"] == 3 and job["best_step"] in (1, 2)
    assert job["teacher_value"] is not None and job["best_value"] is not None
    assert job["steps"][1]["pseudo_labels"]["unlabelled"] == 40
    listed = client.get(f"/api/v1/searches/{ctx['search_id']}/self-trainings").json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]
    card = client.get(f"/api/v1/self-trainings/{job['id']}/checkpoint/card").json()
    assert card["card"]["recipe"]["drop_path"] == 0.1 and card["best_step"] == job["best_step"]
    download = client.get(f"/api/v1/self-trainings/{job['id']}/checkpoint")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == card["sha256"]
    again = client.get(
        f"/api/v1/self-trainings/{job['id']}/checkpoint",
        headers={"If-None-Match": f'"{card["sha256"]}"'},
    )
    assert again.status_code == 304


def test_the_search_page_shows_each_iteration(flow: tuple[TestClient, dict[str, Any]]) -> None:
    client, ctx = flow
    page = client.get(f"/searches/{ctx['search_id']}")
    assert page.status_code == 200
    assert "Self-training" in page.text and "student 2" in page.text


def test_cancel_and_conflicts(flow: tuple[TestClient, dict[str, Any]]) -> None:
    client, ctx = flow
    body = {"unlabelled_id": ctx["unlabelled"]["id"], "iterations": 1}
    second = client.post(f"/api/v1/searches/{ctx['search_id']}/self-train", json=body).json()
    cancelled = client.post(f"/api/v1/self-trainings/{second['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = client.post(f"/api/v1/self-trainings/{second['id']}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    no_file = client.get(f"/api/v1/self-trainings/{second['id']}/checkpoint")
    assert no_file.status_code == 404 and "no checkpoint yet" in no_file.json()["detail"]
    in_use = client.delete(f"/api/v1/unlabelled/{ctx['unlabelled']['id']}")
    assert in_use.status_code == 409 and "used by self-trainings" in in_use.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"iterations": 0}, 422, "iterations"),
        ({"student": {"arch": "airbench", "drop_path": 0.2}}, 422, "residual blocks"),
        ({"confidence_threshold": 1.5}, 422, "confidence_threshold"),
        ({"unlabelled_id": 999}, 404, "unlabelled image set 999 not found"),
        ({"surprise": 1}, 422, "surprise"),
    ],
)
def test_bad_self_training_requests(
    flow: tuple[TestClient, dict[str, Any]], body: dict[str, Any], status: int, message: str
) -> None:
    client, ctx = flow
    full = {"unlabelled_id": ctx["unlabelled"]["id"], **body}
    response = client.post(f"/api/v1/searches/{ctx['search_id']}/self-train", json=full)
    assert response.status_code == status, response.text
    assert message in response.text


def test_self_training_needs_a_completed_search_of_the_same_dataset(
    flow: tuple[TestClient, dict[str, Any]],
) -> None:
    client, ctx = flow
    other = client.post("/api/v1/datasets", json={"source": "digits", "image_size": 12}).json()
    queued = client.post("/api/v1/searches", json={"dataset_id": other["id"], "spec": TINY})
    body = {"unlabelled_id": ctx["unlabelled"]["id"]}
    response = client.post(f"/api/v1/searches/{queued.json()['id']}/self-train", json=body)
    assert response.status_code == 409 and "needs it completed" in response.text
    client.post(f"/api/v1/searches/{queued.json()['id']}/cancel")
    files = {"file": ("other.zip", _zip(3), "application/zip")}
    up = client.post("/api/v1/unlabelled/upload", files=files, data={"dataset_id": other["id"]})
    assert up.status_code == 201 and up.json()["num_images"] == 3
    body = {"unlabelled_id": up.json()["id"]}
    response = client.post(f"/api/v1/searches/{ctx['search_id']}/self-train", json=body)
    assert response.status_code == 422 and "not to the search's dataset" in response.text
    assert client.delete(f"/api/v1/unlabelled/{up.json()['id']}").status_code == 204


@pytest.mark.parametrize(
    ("files", "data", "message"),
    [
        ({"file": ("x.txt", b"hello", "text/plain")}, {"dataset_id": "1"}, "not an archive"),
        ({"file": ("x.zip", b"PK broken", "application/zip")}, {"dataset_id": "1"},
         "cannot load unlabelled images"),
        ({"file": ("x.zip", _zip(2), "application/zip")}, {"dataset_id": "abc"}, "dataset_id"),
        ({"file": ("x.zip", _zip(2), "application/zip")}, {"dataset_id": "9999"},
         "dataset 9999 not found"),
        ({"file": ("x.zip", _zip(1), "application/zip")}, {"dataset_id": "1"}, "at least 2"),
    ],
)  # fmt: skip
def test_bad_uploads(
    flow: tuple[TestClient, dict[str, Any]],
    files: dict[str, Any],
    data: dict[str, str],
    message: str,
) -> None:
    client, ctx = flow
    if data["dataset_id"] == "1":
        data = {"dataset_id": str(ctx["dataset"]["id"])}
    response = client.post("/api/v1/unlabelled/upload", files=files, data=data)
    assert 400 <= response.status_code < 500, response.text
    assert message in response.text
    assert "augsearch-archive" not in response.text  # no server folder leaks


def test_folder_registration_checks_the_allowed_roots(
    flow: tuple[TestClient, dict[str, Any]], tmp_path: Path
) -> None:
    client, ctx = flow
    body = {"dataset_id": ctx["dataset"]["id"], "path": str(tmp_path)}
    response = client.post("/api/v1/unlabelled", json=body)
    assert response.status_code == 403 and "dataset roots" in response.text


def test_python_client_round_trip(flow: tuple[TestClient, dict[str, Any]], tmp_path: Path) -> None:
    from service.client import ApiError, Client

    http, ctx = flow
    client = Client(http=http)  # type: ignore[arg-type]
    job = ctx["job"]
    assert client.unlabelled(ctx["dataset"]["id"])["items"][0]["id"] == ctx["unlabelled"]["id"]
    assert client.self_training(job["id"])["best_step"] == job["best_step"]
    assert job["id"] in [j["id"] for j in client.self_trainings(ctx["search_id"])["items"]]
    dest = tmp_path / "student.safetensors"
    sha = client.download_self_training_checkpoint(job["id"], dest)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha
    archive = tmp_path / "more.zip"
    archive.write_bytes(_zip(4))
    added = client.upload_unlabelled(ctx["dataset"]["id"], archive, name="more")
    assert added["num_images"] == 4 and added["name"] == "more"
    with pytest.raises(ApiError, match="residual blocks") as err:
        client.start_self_training(
            ctx["search_id"], added["id"], student={"arch": "airbench", "drop_path": 0.3}
        )
    assert err.value.status_code == 422


def test_cli_prints_each_iteration_and_refuses_bad_input() -> None:
    from typer.testing import CliRunner

    from service.cli import app
    from service.cli_client import console
    from service.cli_self_training import print_steps

    runner = CliRunner()
    both = runner.invoke(app, ["unlabelled", "add", "--dataset", "1"])
    assert both.exit_code == 1 and "exactly one" in both.output
    dead = runner.invoke(app, ["self-train", "list", "1", "--url", "http://127.0.0.1:9"])
    assert dead.exit_code == 1 and "cannot reach" in dead.output
    job = {
        "best_step": 1,
        "steps": [
            {"step": 0, "state": "COMPLETE", "val_accuracy": 0.9, "test_accuracy": None},
            {"step": 1, "state": "COMPLETE", "val_accuracy": 0.95, "test_accuracy": 0.93,
             "pseudo_labels": {"used": 40, "unlabelled": 50}},
        ],
    }  # fmt: skip
    with console.capture() as captured:
        print_steps(job)
    text = captured.get()
    assert "student 1 (served)" in text and "0.9500" in text and "40 of 50" in text


def test_a_launch_without_a_body_is_a_clear_422(flow: tuple[TestClient, dict[str, Any]]) -> None:
    client, ctx = flow
    response = client.post(f"/api/v1/searches/{ctx['search_id']}/self-train")
    assert response.status_code == 422 and "unlabelled_id" in response.text
    assert client.post("/api/v1/searches/9999/self-train").status_code == 404


def test_zz_deleting_the_search_waits_for_its_jobs_then_removes_them(
    flow: tuple[TestClient, dict[str, Any]],
) -> None:
    # Named to run last in this module: it deletes the search the others read.
    import optuna

    client, ctx = flow
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    body = {"unlabelled_id": ctx["unlabelled"]["id"], "iterations": 1}
    queued = client.post(f"/api/v1/searches/{ctx['search_id']}/self-train", json=body).json()
    refused = client.delete(f"/api/v1/searches/{ctx['search_id']}")
    assert refused.status_code == 409 and "unfinished self-trainings" in refused.text
    client.post(f"/api/v1/self-trainings/{queued['id']}/cancel")
    path = (
        runtime.settings.data_dir / "checkpoints" / f"self-training-{ctx['job']['id']}.safetensors"
    )
    assert path.is_file()
    assert client.delete(f"/api/v1/searches/{ctx['search_id']}").status_code == 204
    assert client.get(f"/api/v1/self-trainings/{ctx['job']['id']}").status_code == 404
    assert not path.exists()
    names = {s.study_name for s in optuna.get_all_study_summaries(runtime.storage)}
    assert f"selftrain-{ctx['job']['id']}" not in names
