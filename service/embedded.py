"""The embedded workers of ``augsearch serve``: started with the server, watched, stopped with it.

Each is an ``augsearch worker`` process in its own process group, so a Ctrl-C in the terminal
reaches the server alone and the server stops them in order: SIGTERM, then a wait while each
finishes its epoch and hands its trial back. Whatever kills the server, its workers end with it
(`search.parent.die_with_parent`, asked for through ``AUGSEARCH_PARENT_PID``). A worker that
dies while the server runs is logged and started again; one that keeps dying stops the server.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from search.parent import PARENT_ENV

log = logging.getLogger("augsearch.serve")


class EmbeddedWorkers:
    """``count`` worker processes on the service's storage.

    Args:
        storage_url: the Optuna storage (its tables must exist: see `search.schema`).
        device: torch device of every worker.
        artifacts: artifact store of every worker.
        count: how many processes.
        on_give_up: called (from the watching thread) when workers keep dying.
        max_restarts: restarts allowed within ``window_s`` before giving up.
        window_s: the window of ``max_restarts`` (seconds).
        drain_s: how long `stop` waits for the workers to hand their trials back.
    """

    def __init__(
        self,
        storage_url: str,
        device: str,
        artifacts: str,
        count: int,
        *,
        on_give_up: Callable[[], None],
        max_restarts: int = 5,
        window_s: float = 300.0,
        drain_s: float = 60.0,
    ) -> None:
        self.command = [sys.executable, "-m", "service.cli", "worker", "--storage", storage_url,
                        "--device", device, "--artifact-dir", artifacts]  # fmt: skip
        self.device = device
        self.count = count
        self.on_give_up = on_give_up
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.drain_s = drain_s
        self.gave_up = False
        self.procs: list[subprocess.Popen[bytes]] = []
        self._deaths: deque[float] = deque()
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        """Start the workers and the thread that watches them."""
        self.procs = [self._spawn() for _ in range(self.count)]
        if self.count:
            self._watcher = threading.Thread(
                target=self._watch, name="embedded-workers", daemon=True
            )
            self._watcher.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, PARENT_ENV: str(os.getpid())}
        if self.device == "cpu":  # CPU workers share the cores out instead of oversubscribing
            from search.fleet import threads_per_worker

            env.setdefault("OMP_NUM_THREADS", str(threads_per_worker(self.count)))
        return subprocess.Popen(self.command, env=env, process_group=0)

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            for index, proc in enumerate(self.procs):
                code = proc.poll()
                if code is not None and not self._stopping.is_set():
                    self._replace(index, proc.pid, code)

    def _replace(self, index: int, pid: int, code: int) -> None:
        """Start a dead worker again, or give up when workers keep dying."""
        now = time.monotonic()
        self._deaths.append(now)
        while now - self._deaths[0] > self.window_s:
            self._deaths.popleft()
        if len(self._deaths) > self.max_restarts:
            log.error(
                "embedded worker %d (pid %d) exited with code %s, %d worker deaths in %.0f s: "
                "giving up, stopping the server",
                index,
                pid,
                code,
                len(self._deaths),
                self.window_s,
            )
            self.gave_up = True
            self._stopping.set()
            self.on_give_up()
            return
        log.error(
            "embedded worker %d (pid %d) exited with code %s while the server runs; "
            "starting it again",
            index,
            pid,
            code,
        )
        self.procs[index] = self._spawn()

    def hurry(self) -> None:
        """Cut `stop`'s wait short: workers still running are killed now."""
        self._hurry.set()

    def stop(self) -> None:
        """Stop the workers: SIGTERM, wait up to ``drain_s`` for them, kill what is left.

        A killed worker's trial stops heart-beating and is retried once it is stale.
        """
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
        running = [p for p in self.procs if p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.drain_s
        for proc in running:
            while proc.poll() is None and time.monotonic() < deadline:
                if self._hurry.wait(0.1):
                    break
            if proc.poll() is None:
                log.warning("embedded worker pid %d did not stop in time: killed", proc.pid)
                proc.kill()
                proc.wait()
