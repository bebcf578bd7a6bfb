"""An ``augsearch serve`` subprocess for the end-to-end and restart tests, with waiting helpers,
and the processes a test started, read from ``/proc`` (Linux)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
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
        workers: Embedded worker processes.
        args: More ``serve`` options.
        env: More environment variables.
    """

    def __init__(
        self,
        data_dir: Path,
        poll_s: float = 0.5,
        heartbeat_s: float = 5,
        *,
        workers: int = 1,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
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
            **(env or {}),
        }
        cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port),
               "--workers", str(workers), *args]  # fmt: skip
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


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # the name, in parentheses, may hold spaces
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting to be reaped."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (children, their children...)."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        stat = _stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None and stat[0] not in ("Z", "X"):
            parent_of[int(entry.name)] = stat[1]
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parent_of.items() if parent in frontier} - found
        found |= frontier
    return found


def python_processes_with_env(name: str, value: str) -> list[int]:
    """Living processes of this Python (other than this one) started with ``name=value`` in
    their environment: workers, servers, optuna-dashboard; not a database server a test
    restarted, which inherits the variable too; nor this process's own multiprocessing helpers
    (resource tracker, forkserver), which end when it does."""
    marker = f"{name}={value}".encode()
    python = os.path.realpath(sys.executable)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            executable = os.path.realpath(entry / "exe")
        except OSError:
            continue
        ours = marker in environ.split(b"\0") and executable == python
        if ours and alive(int(entry.name)) and not _own_multiprocessing_helper(entry):
            found.append(int(entry.name))
    return found


def _own_multiprocessing_helper(proc: Path) -> bool:
    try:
        parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return False
    helpers = (b"multiprocessing.resource_tracker", b"multiprocessing.forkserver")
    return parent == os.getpid() and any(h in cmdline for h in helpers)


def wait_gone(pids: set[int], timeout_s: float) -> set[int]:
    """Wait until none of ``pids`` is alive; returns those still alive at the timeout."""
    deadline = time.monotonic() + timeout_s
    left = {p for p in pids if alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = {p for p in left if alive(p)}
    return left
