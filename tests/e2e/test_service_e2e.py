"""End to end: ``augsearch serve --workers 1`` as a subprocess, a tiny search on digits over
HTTP, every policy format and the checkpoint, then a restart that keeps everything."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
from servertools import Server

pytestmark = pytest.mark.slow

TINY = {
    "strategy": "randaugment",
    "n_trials": 2,
    "baselines": ["none", "randaugment-2-9"],
    "train_size": 300,
    "recipe": {"epochs": 2, "batch_size": 64, "width": 0.25},
    "final_recipe": {"epochs": 1, "batch_size": 64, "width": 0.25},
}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def _fetch_everything(server: Server, sid: int, did: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fmt in ("json", "torchvision", "albumentations", "timm"):
        response = server.http.get(f"/api/v1/searches/{sid}/policy", params={"format": fmt})
        assert response.status_code in (200, 422), response.text
        out[fmt] = response.json()
    assert out["json"]["provisional"] is False
    assert "transform = " in out["torchvision"]["exported"]
    out["dataset"] = server.http.get(f"/api/v1/datasets/{did}/policy").json()
    assert out["dataset"]["policy"] == out["json"]["policy"]
    checkpoint = server.http.get(f"/api/v1/searches/{sid}/checkpoint")
    assert checkpoint.status_code == 200
    sha = checkpoint.headers["X-Checksum-SHA256"]
    assert hashlib.sha256(checkpoint.content).hexdigest() == sha
    assert safetensors.torch.load(checkpoint.content)
    out["sha256"] = sha
    out["card"] = server.http.get(f"/api/v1/searches/{sid}/checkpoint/card").json()
    out["trials"] = server.http.get(f"/api/v1/searches/{sid}/trials").json()
    return out


def test_search_over_http_survives_a_restart(data_dir: Path) -> None:
    server = Server(data_dir)
    try:
        did, sid = server.launch(TINY)
        search = server.wait_completed(sid, timeout_s=600, poll_s=1)
        assert search["best_value"] is not None
        assert search["progress"]["complete"] == 2
        before = _fetch_everything(server, sid, did)
        # 2 baselines, 2 search trials, then the final pick of both searched policies and both
        # presets; one preset drops out when a searched policy is that very preset (the first
        # search trial starts at RandAugment(2, 9) and may draw the plain base).
        pick = search["final_pick"]
        assert pick["size"] in (3, 4) and pick["done"] == pick["size"]
        assert before["trials"]["total"] == 4 + pick["size"]
    finally:
        server.end()
    server = Server(data_dir)
    try:
        assert server.search(sid)["state"] == "completed"
        after = _fetch_everything(server, sid, did)
        assert after == before
    finally:
        server.end()
