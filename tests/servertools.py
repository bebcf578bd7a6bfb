"""An ``augsearch serve`` subprocess for the end-to-end and restart tests, with waiting helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One ``augsearch serve --workers 1`` process (API + embedded worker) on a data dir.

    Args:
        data_dir: The ``AUGSEARCH_DATA_DIR`` it serves; the log lands there too.
        poll_s: Seconds between the embedded worker's polls, and between readiness checks.
        heartbeat_s: Trial heartbeat interval; short ones let a killed trial be reaped sooner.
    """

    def __init__(self, data_dir: Path, poll_s: float = 0.5, heartbeat_s: float = 5) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / f"server-{self.port}.log"
        env = {
            **os.environ,
            "AUGSEARCH_DATA_DIR": str(data_dir),
            "AUGSEARCH_SINGLE_USER": "true",
            "AUGSEARCH_RECONCILE_INTERVAL_S": "0.5",
            "AUGSEARCH_WORKER_POLL_S": str(poll_s),
            "AUGSEARCH_HEARTBEAT_INTERVAL_S": str(heartbeat_s),
        }
        cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port),
               "--workers", "1"]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT
        )
        self.http = httpx.Client(base_url=self.url, timeout=60)
        self._wait_ready(poll_s)

    def _wait_ready(self, poll_s: float, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.tail()}")
            try:
                if self.http.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(poll_s)
        raise TimeoutError(f"server not ready: {self.tail()}")

    def tail(self) -> str:
        """The end of the server's log, for failure messages."""
        return self.log.read_text()[-3000:]

    def end(self, sig: signal.Signals = signal.SIGINT) -> None:
        """Send ``sig`` and wait for the process to exit (killing it after 60 s)."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def launch(self, spec: dict[str, Any]) -> tuple[int, int]:
        """Register a 16 px digits dataset and launch a search of ``spec`` on it.

        Returns:
            ``(dataset_id, search_id)``.
        """
        dataset = self.http.post("/api/v1/datasets", json={"source": "digits", "image_size": 16})
        assert dataset.status_code == 201, dataset.text
        did = int(dataset.json()["id"])
        launched = self.http.post("/api/v1/searches", json={"dataset_id": did, "spec": spec})
        assert launched.status_code == 201, launched.text
        return did, int(launched.json()["id"])

    def search(self, sid: int) -> dict[str, Any]:
        """The API's view of a search."""
        response = self.http.get(f"/api/v1/searches/{sid}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_completed(self, sid: int, timeout_s: float, poll_s: float) -> dict[str, Any]:
        """Wait for search ``sid`` to end and assert it completed; returns the search."""
        wait_until(
            self,
            lambda: self.search(sid)["state"] in ("completed", "failed", "cancelled"),
            f"search {sid} did not finish",
            timeout_s,
            poll_s,
        )
        search = self.search(sid)
        assert search["state"] == "completed", search
        return search


def wait_until(
    server: Server, done: Callable[[], bool], what: str, timeout_s: float, poll_s: float
) -> None:
    """Poll ``done`` until it holds; a timeout names ``what`` and shows the server's log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: {server.tail()}")
