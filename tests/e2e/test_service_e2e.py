"""End to end: ``augsearch serve --workers 1`` as a subprocess, a tiny search on digits over
HTTP, every policy format and the checkpoint, then a restart that keeps everything."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import safetensors.torch

pytestmark = pytest.mark.slow

TINY = {
    "strategy": "randaugment",
    "n_trials": 2,
    "baselines": ["none", "randaugment-2-9"],
    "train_size": 300,
    "recipe": {"epochs": 2, "batch_size": 64, "width": 0.25},
    "final_recipe": {"epochs": 1, "batch_size": 64, "width": 0.25},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One ``augsearch serve`` process on a data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / f"server-{self.port}.log"
        env = {
            **os.environ,
            "AUGSEARCH_DATA_DIR": str(data_dir),
            "AUGSEARCH_SINGLE_USER": "true",
            "AUGSEARCH_RECONCILE_INTERVAL_S": "0.5",
            "AUGSEARCH_WORKER_POLL_S": "0.5",
            "AUGSEARCH_HEARTBEAT_INTERVAL_S": "5",
        }
        cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port),
               "--workers", "1"]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT
        )
        self.http = httpx.Client(base_url=self.url, timeout=60)
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if self.http.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"server not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def _wait_completed(server: Server, sid: int, timeout_s: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        search: dict[str, Any] = server.http.get(f"/api/v1/searches/{sid}").json()
        if search["state"] in ("completed", "failed", "cancelled"):
            assert search["state"] == "completed", search
            return search
        time.sleep(1)
    raise TimeoutError(f"search {sid} did not finish: {server.log.read_text()[-3000:]}")


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
        dataset = server.http.post("/api/v1/datasets", json={"source": "digits", "image_size": 16})
        assert dataset.status_code == 201, dataset.text
        did = dataset.json()["id"]
        launched = server.http.post("/api/v1/searches", json={"dataset_id": did, "spec": TINY})
        assert launched.status_code == 201, launched.text
        sid = launched.json()["id"]
        search = _wait_completed(server, sid)
        assert search["best_value"] is not None
        assert search["progress"]["complete"] == 2
        before = _fetch_everything(server, sid, did)
        assert before["trials"]["total"] == 5  # 2 baselines, 2 search trials, 1 final
    finally:
        server.stop()
    server = Server(data_dir)
    try:
        assert server.http.get(f"/api/v1/searches/{sid}").json()["state"] == "completed"
        after = _fetch_everything(server, sid, did)
        assert after == before
    finally:
        server.stop()
