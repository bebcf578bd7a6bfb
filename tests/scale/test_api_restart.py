"""API restart mid-search: ``augsearch serve --workers 1`` is stopped (SIGTERM, then SIGKILL)
while a search runs, started again on the same data dir, and the search completes with its
exact budget; no trial listed before the restart is lost or changed, and the result is served."""

from __future__ import annotations

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

pytestmark = pytest.mark.slow

BUDGET = 3
TINY = {
    "strategy": "randaugment",
    "n_trials": BUDGET,
    "baselines": ["none"],
    "sampler": "random",
    "train_size": 200,
    "recipe": {"epochs": 2, "batch_size": 64, "width": 0.25},
    "final_recipe": {"epochs": 1, "batch_size": 64, "width": 0.25},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One ``augsearch serve --workers 1`` process (API + embedded worker) on a data dir."""

    def __init__(self, data_dir: Path) -> None:
        port = _free_port()
        self.log = data_dir / f"server-{port}.log"
        env = {
            **os.environ,
            "AUGSEARCH_DATA_DIR": str(data_dir),
            "AUGSEARCH_SINGLE_USER": "true",
            "AUGSEARCH_RECONCILE_INTERVAL_S": "0.5",
            "AUGSEARCH_WORKER_POLL_S": "0.3",
            # Short heartbeats: the trial interrupted by a SIGKILL is reaped within seconds.
            "AUGSEARCH_HEARTBEAT_INTERVAL_S": "1",
        }
        cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "1"]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if self.http.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not ready: {self.log.read_text()[-3000:]}")

    def end(self, sig: signal.Signals) -> None:
        """Send ``sig`` and wait for the process to exit."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def trials(self, sid: int) -> list[dict[str, Any]]:
        """The API's trial listing of a search."""
        response = self.http.get(f"/api/v1/searches/{sid}/trials", params={"limit": 100})
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def search(self, sid: int) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/searches/{sid}")
        assert response.status_code == 200, response.text
        return dict(response.json())


def _wait(server: Server, sid: int, done: Any, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.3)
    raise TimeoutError(f"search {sid}: {what}: {server.log.read_text()[-3000:]}")


def _finished(trials: list[dict[str, Any]]) -> dict[int, tuple[str, str, Any]]:
    """Finished trials by number: (role, state, params); these must never change."""
    return {
        t["number"]: (t["role"], t["state"], t["params"])
        for t in trials
        if t["state"] in ("COMPLETE", "PRUNED", "FAIL")
    }


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_search_survives_an_api_restart_mid_search(tmp_path: Path, sig: signal.Signals) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    server = Server(data_dir)
    try:
        dataset = server.http.post("/api/v1/datasets", json={"source": "digits", "image_size": 16})
        assert dataset.status_code == 201, dataset.text
        did = dataset.json()["id"]
        launched = server.http.post("/api/v1/searches", json={"dataset_id": did, "spec": TINY})
        assert launched.status_code == 201, launched.text
        sid = launched.json()["id"]
        _wait(
            server,
            sid,
            lambda: any(t["state"] == "COMPLETE" for t in server.trials(sid)),
            "no trial completed",
        )
        before = server.trials(sid)
        assert server.search(sid)["state"] != "completed"  # really mid-search
    finally:
        server.end(sig)
    server = Server(data_dir)
    try:
        _wait(
            server,
            sid,
            lambda: server.search(sid)["state"] in ("completed", "failed", "cancelled"),
            "did not finish after the restart",
            timeout_s=150,
        )
        assert server.search(sid)["state"] == "completed", server.search(sid)
        after = server.trials(sid)
        old = _finished(before)
        assert {n: _finished(after)[n] for n in old} == old  # nothing lost or rewritten
        numbers = [t["number"] for t in after]
        assert len(numbers) == len(set(numbers))
        search = [t for t in after if t["role"] == "search"]
        assert sum(t["state"] == "COMPLETE" for t in search) == BUDGET
        assert sum(t["role"] == "final" and t["state"] == "COMPLETE" for t in after) == 1
        policy = server.http.get(f"/api/v1/searches/{sid}/policy")
        assert policy.status_code == 200, policy.text
        assert policy.json()["provisional"] is False
        checkpoint = server.http.get(f"/api/v1/searches/{sid}/checkpoint")
        assert checkpoint.status_code == 200
        assert server.http.get(f"/api/v1/datasets/{did}/policy").status_code == 200
    finally:
        server.end(signal.SIGINT)
