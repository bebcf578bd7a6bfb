"""Compressed checkpoints end to end: a tiny real search, then ONNX, int8 and pruned variants
made by a real worker as jobs, downloaded through the API and checked independently."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import safetensors.torch
import torch
from fastapi.testclient import TestClient

from search.checkpoints import ModelCard, build_model_from_card
from search.compress.queue import JOBS_STUDY
from search.datasets import load_dataset
from search.objective import split_for_search
from search.spec import SearchSpec
from service.app import create_app
from service.checkpoints import schemas
from service.reconciler import Reconciler
from service.runtime import Runtime
from service.settings import Settings

TINY = {
    "strategy": "randaugment",
    "n_trials": 1,
    "baselines": ["none"],
    "train_size": 300,
    "recipe": {"epochs": 1, "batch_size": 64, "width": 0.25},
    "final_recipe": {"epochs": 2, "batch_size": 64, "width": 0.25},
    "final_pick": {"candidates": 1, "presets": 0},
}
PRUNED = {"format": "pruned", "sparsity": 0.6}
# A real search and three compression jobs: ~40 s on two CPU cores.
pytestmark = pytest.mark.slow


@dataclass
class Flow:
    """The app that ran a tiny search, its runtime and settings, and the search."""

    client: TestClient
    runtime: Runtime
    settings: Settings
    search: dict[str, Any]
    first: dict[str, Any]

    def url(self, **params: Any) -> str:
        return f"/api/v1/searches/{self.search['id']}/checkpoint"

    def reconcile(self) -> None:
        """One reconciler pass (it enqueues new variants' jobs and follows them)."""
        reconciler = Reconciler(self.runtime)
        try:
            reconciler.run_once()
        finally:
            reconciler.leader.release()

    def work(self) -> None:
        """A reconciler pass, a real worker run until it is idle, another pass."""
        from search.worker import Worker

        self.reconcile()
        Worker(
            self.settings.optuna_storage_url,
            "cpu",
            self.settings.artifact_store_location,
            poll_interval=0.1,
            idle_exit=0.5,
            data_cache_dir=str(self.settings.data_dir / "cache"),
        ).run()
        self.reconcile()


@pytest.fixture(scope="module")
def flow(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, dataset_cache: Path
) -> Iterator[Flow]:
    """A tiny search on 16x16 digits run to completion, then its three variants requested and
    made by a worker (once for the module: training dominates the cost)."""
    base = tmp_path_factory.mktemp("variants")
    shutil.copy(sqlite_template, base / "augsearch.db")
    (base / "cache").symlink_to(dataset_cache)
    settings = Settings(
        data_dir=base, database_url=f"sqlite:///{base / 'augsearch.db'}", single_user=True
    )
    with TestClient(create_app(settings, reconcile=False)) as client:
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        did = client.post("/api/v1/datasets", json={"source": "digits", "image_size": 16})
        body = {"dataset_id": did.json()["id"], "spec": TINY}
        sid = client.post("/api/v1/searches", json=body).json()["id"]
        flow = Flow(client, runtime, settings, {"id": sid}, {})
        flow.work()
        flow.search = client.get(f"/api/v1/searches/{sid}").json()
        assert flow.search["state"] == "completed", flow.search
        for params in ({"format": "onnx"}, {"format": "int8"}, PRUNED):
            response = client.get(flow.url(), params=params)
            flow.first[params["format"]] = {"status": response.status_code,
                                            "body": response.json(), "headers": response.headers}  # fmt: skip
        flow.work()
        yield flow


def _download(flow: Flow, params: dict[str, Any]) -> bytes:
    response = flow.client.get(flow.url(), params=params)
    assert response.status_code == 200, response.text
    assert hashlib.sha256(response.content).hexdigest() == response.headers["X-Checksum-SHA256"]
    return response.content


def _variant(flow: Flow, name: str) -> dict[str, Any]:
    listing = flow.client.get(f"{flow.url()}/variants").json()
    return next(v for v in listing if v["name"] == name)


def _float_model_and_val(flow: Flow) -> tuple[torch.nn.Module, ModelCard, np.ndarray]:
    state = safetensors.torch.load(_download(flow, {}))
    card = ModelCard.model_validate(flow.client.get(f"{flow.url()}/card").json()["card"])
    model = build_model_from_card(card)
    model.load_state_dict(state)
    spec = SearchSpec.model_validate({**TINY, "dataset": {"source": "digits", "image_size": 16}})
    val = split_for_search(load_dataset(spec.dataset), spec).val
    mean = torch.tensor(card.mean).view(1, -1, 1, 1)
    std = torch.tensor(card.std).view(1, -1, 1, 1)
    images = ((val.images[:64].float() / 255 - mean) / std).numpy()
    return model.eval(), card, images


def test_first_request_is_queued_with_202(flow: Flow) -> None:
    for name, first in flow.first.items():
        assert first["status"] == 202, first
        assert first["body"]["state"] == "queued" and first["headers"]["Retry-After"]
        assert first["body"]["format"] == name
    assert flow.first["pruned"]["body"]["name"] == "pruned-60"


def test_onnx_matches_pytorch_within_1e4(flow: Flow) -> None:
    content = _download(flow, {"format": "onnx"})
    model, _, images = _float_model_and_val(flow)
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: images})[0]
    with torch.inference_mode():
        expected = model(torch.from_numpy(images)).numpy()
    assert np.abs(got - expected).max() <= 1e-4
    card = _variant(flow, "onnx")["card"]
    assert card["onnx_opset"] == 18 and card["max_abs_diff"] <= 1e-4
    assert card["source_sha256"] == flow.client.get(f"{flow.url()}/card").json()["sha256"]


def test_int8_is_smaller_and_runs(flow: Flow) -> None:
    content = _download(flow, {"format": "int8"})
    variant = _variant(flow, "int8")
    card = variant["card"]
    assert len(content) == card["size_bytes"] < card["float_size_bytes"]
    assert card["quantization"]["mode"] == "static"
    assert card["quantization"]["calibration_images"] > 0
    _, _, images = _float_model_and_val(flow)
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: images})[0]
    assert logits.shape == (len(images), 10) and np.isfinite(logits).all()
    ops = {node.op_type for node in __import__("onnx").load_from_string(content).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


def test_pruned_reaches_its_sparsity_and_loads(flow: Flow) -> None:
    state = safetensors.torch.load(_download(flow, PRUNED))
    model, _, _ = _float_model_and_val(flow)
    model.load_state_dict(state)  # same keys and shapes as the float model
    weights = [
        m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros >= 0.6 - 1e-3
    card = _variant(flow, "pruned-60")["card"]
    assert card["target_sparsity"] == 0.6 and card["sparsity"] == pytest.approx(zeros, abs=1e-6)
    assert card["finetune"]["steps"] >= 1


def test_cards_record_size_accuracy_and_latency_beside_float(flow: Flow) -> None:
    listing = flow.client.get(f"{flow.url()}/variants").json()
    assert {v["name"] for v in listing} == {"onnx", "int8", "pruned-60"}
    for variant in listing:
        card = variant["card"]
        assert variant["state"] == "ready" and variant["sha256"] == card["sha256"]
        assert card["size_bytes"] > 0 and card["float_size_bytes"] > 0
        assert 0 <= card["val_accuracy"] <= 1 and 0 <= card["float_val_accuracy"] <= 1
        assert card["latency_ms"] > 0 and card["float_latency_ms"] > 0
        assert card["latency_batch_size"] == 32 and card["latency_threads"] == 1
        assert variant["download_url"].startswith(flow.url())
    # made once: asking again serves the file, no new job is queued
    import optuna

    before = len(optuna.load_study(study_name=JOBS_STUDY, storage=flow.runtime.storage).trials)
    _download(flow, {"format": "onnx"})
    after = len(optuna.load_study(study_name=JOBS_STUDY, storage=flow.runtime.storage).trials)
    assert before == after == 3


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"format": "tflite"}, 422, "safetensors"),
        ({"format": "pruned", "sparsity": 0.99}, 422, "less than or equal to 0.95"),
        ({"format": "pruned", "sparsity": "half"}, 422, "valid number"),
        ({"format": "onnx", "sparsity": 0.5}, 422, "pruned format only"),
        ({"sparsity": 0.5}, 422, "pruned format only"),
    ],
)
def test_bad_queries_are_4xx_with_a_message(
    flow: Flow, params: dict[str, Any], status: int, message: str
) -> None:
    response = flow.client.get(flow.url(), params=params)
    assert response.status_code == status and message in response.text, response.text


def test_unknown_or_unfinished_searches_are_refused(flow: Flow) -> None:
    missing = flow.client.get("/api/v1/searches/999/checkpoint", params={"format": "onnx"})
    assert missing.status_code == 404 and "not found" in missing.text
    body = {"dataset_id": flow.search["dataset_id"], "spec": TINY}
    queued = flow.client.post("/api/v1/searches", json=body).json()["id"]
    response = flow.client.get(f"/api/v1/searches/{queued}/checkpoint", params={"format": "int8"})
    assert response.status_code == 409
    assert "completed search" in response.json()["detail"]
    post = flow.client.post(f"/api/v1/searches/{queued}/checkpoint/variants", json={"format": "x"})
    assert post.status_code == 422
    bare = flow.client.post(f"/api/v1/searches/{queued}/checkpoint/variants")
    assert bare.status_code == 422 and "'format'" in bare.json()["detail"]
    assert flow.client.post("/api/v1/searches/999/checkpoint/variants").status_code == 404
    flow.client.post(f"/api/v1/searches/{queued}/cancel")


def test_failed_job_is_409_and_a_post_retries_it(flow: Flow) -> None:
    record = flow.client.get(f"{flow.url()}/card").json()
    weights = Path(flow.settings.artifact_store_location) / record["artifact_id"]
    original = weights.read_bytes()
    params = {"format": "pruned", "sparsity": 0.3}
    try:
        weights.write_bytes(original[:-8] + b"tampered")
        assert flow.client.get(flow.url(), params=params).status_code == 202
        flow.work()
    finally:
        weights.write_bytes(original)
    failed = flow.client.get(flow.url(), params=params)
    assert failed.status_code == 409, failed.text
    assert "failed" in failed.json()["detail"] and "sha256" in failed.json()["detail"]
    retried = flow.client.post(f"{flow.url()}/variants", json=params)
    assert retried.status_code == 202 and retried.json()["state"] == "queued"
    flow.work()
    assert flow.client.get(flow.url(), params=params).status_code == 200


def test_a_variant_whose_file_is_gone_is_409_until_made_again(flow: Flow) -> None:
    name = f"search-{flow.search['id']}-pruned-60.safetensors"
    path = flow.settings.data_dir / "checkpoints" / name
    assert path.is_file()
    path.unlink()
    gone = flow.client.get(flow.url(), params=PRUNED)
    assert gone.status_code == 409 and "missing from the checkpoint folder" in gone.text
    again = flow.client.post(f"{flow.url()}/variants", json=PRUNED)
    assert again.status_code == 202
    flow.work()
    assert _download(flow, PRUNED) == path.read_bytes()


def test_dashboard_lists_the_variants(flow: Flow) -> None:
    html = flow.client.get(f"/searches/{flow.search['id']}").text
    assert 'id="variants"' in html
    for name in ("onnx", "int8", "pruned-60"):
        assert f'data-variant="{name}"' in html
    assert f'href="{_variant(flow, "int8")["download_url"]}"'.replace("&", "&amp;") in html


def test_api_bounds_are_the_compressors() -> None:
    from search.compress import queue

    assert (schemas.MIN_SPARSITY, schemas.MAX_SPARSITY, schemas.DEFAULT_SPARSITY) == (
        queue.MIN_SPARSITY,
        queue.MAX_SPARSITY,
        queue.DEFAULT_SPARSITY,
    )


def test_client_requests_waits_and_downloads_a_variant(flow: Flow, tmp_path: Path) -> None:
    import threading

    from search.worker import Worker
    from service.client import ApiError, Client

    api = Client(http=flow.client)
    sid = flow.search["id"]
    with pytest.raises(ApiError, match="still queued after 0 s"):
        api.download_checkpoint(sid, tmp_path / "x.onnx", "pruned", 0.4, wait_s=0)
    worker = Worker(
        flow.settings.optuna_storage_url,
        "cpu",
        flow.settings.artifact_store_location,
        poll_interval=0.1,
        data_cache_dir=str(flow.settings.data_dir / "cache"),
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        dest = tmp_path / "pruned.safetensors"
        sha = api.download_checkpoint(sid, dest, "pruned", 0.4, wait_s=120, poll_s=0.2)
    finally:
        worker.stop()
        thread.join()
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha
    assert {v["name"]: v["state"] for v in api.variants(sid)}["pruned-40"] == "ready"
    assert api.request_variant(sid, "pruned", 0.4)["sha256"] == sha
    with pytest.raises(ApiError, match="HTTP 422"):
        api.request_variant(sid, "int8", 0.4)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["checkpoint", "get", "1", "--format", "tflite"], "unknown format"),
        (["checkpoint", "get", "1", "--format", "onnx", "--sparsity", "0.5"], "pruned only"),
        (["checkpoint", "get", "1", "--format", "int8"], "cannot reach"),
        (["checkpoint", "variants", "1"], "cannot reach"),
    ],
)
def test_cli_bad_input_gives_a_message_and_a_non_zero_exit(args: list[str], needle: str) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    result = CliRunner().invoke(app, args, env={"AUGSEARCH_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 1 and needle in result.output, result.output
