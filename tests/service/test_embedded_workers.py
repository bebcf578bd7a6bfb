"""`augsearch serve`'s embedded workers: one that dies is logged and started again; workers
that keep dying stop the server; those that ignore the drain are killed."""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from service.embedded import EmbeddedWorkers


def _workers(script: str, **kwargs: Any) -> tuple[EmbeddedWorkers, threading.Event]:
    gave_up = threading.Event()
    workers = EmbeddedWorkers("sqlite://", "cpu", "art", 1, on_give_up=gave_up.set, **kwargs)
    workers.command = [sys.executable, "-c", script]  # a worker reduced to how it ends
    return workers, gave_up


def test_workers_that_keep_dying_are_restarted_then_stop_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="augsearch.serve")
    workers, gave_up = _workers("raise SystemExit(3)", max_restarts=2, window_s=60)
    workers.start()
    try:
        assert gave_up.wait(60), caplog.text
    finally:
        workers.stop()
    assert workers.gave_up
    assert caplog.text.count("exited with code 3 while the server runs; starting it again") == 2
    assert "3 worker deaths in 60 s: giving up, stopping the server" in caplog.text


def test_a_worker_that_ignores_the_stop_is_killed_after_the_drain(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ready = tmp_path / "ready"
    script = (
        "import pathlib, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ready)!r}).touch()\ntime.sleep(600)"
    )
    workers, gave_up = _workers(script, drain_s=1.0)
    workers.start()
    while not ready.exists():
        time.sleep(0.05)
    start = time.monotonic()
    workers.stop()
    assert time.monotonic() - start < 10
    assert workers.procs[0].returncode == -9 and not gave_up.is_set()
    assert "did not stop in time: killed" in caplog.text
