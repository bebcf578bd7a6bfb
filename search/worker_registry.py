"""The workers registry: who serves a storage, what each is doing, and who is lost.

Workers register in the study ``augsearch-workers``: one user attr per worker name holding
``{device, host, pid, state, current_trial, trials_done, heartbeat_s, last_seen}``. Each
worker writes only its own key, so updates never race: its loop when its state or trial
changes (`WorkerRecord.register`), and a heartbeat thread every ``heartbeat_s`` (the smaller
of `REGISTER_INTERVAL_S` and the trial heartbeat interval) whatever the loop is doing, also
through a trial of hours (`WorkerRecord.heartbeat`). A worker whose ``last_seen`` is older
than `LOST_AFTER_BEATS` of its beats is lost (killed, or its host is down): `is_lost`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import optuna
from optuna.storages import BaseStorage

from search.storage import make_storage

WORKERS_STUDY = "augsearch-workers"
#: A worker's registry record is refreshed at least this often (its heartbeat).
REGISTER_INTERVAL_S = 10.0
#: Beats missed before a worker is lost: 30 s at the default interval.
LOST_AFTER_BEATS = 3
log = logging.getLogger("augsearch.worker")


class WorkerRecord:
    """One worker's record in the registry, written by its loop and its heartbeat thread.

    Args:
        storage: the Optuna storage the worker serves.
        name: the worker's name (its key in the registry).
        device: torch device of the worker.
        interval: seconds between heartbeats.
        trials_done: reads the worker's count of trials run, written with each record.
    """

    def __init__(self, storage: BaseStorage, name: str, device: str, interval: float,
                 trials_done: Callable[[], int]) -> None:  # fmt: skip
        self.storage = storage
        self.name = name
        self.device = device
        self.interval = interval
        self._trials_done = trials_done
        self._study: optuna.Study | None = None
        self._written: tuple[str, str | None, float] | None = None
        self._lock = threading.Lock()

    def register(
        self, state: str, current_trial: str | None = None, *, force: bool = False
    ) -> None:
        """Write the record when the state or trial changed, the record is old, or ``force``."""
        with self._lock:
            if not force and self._written is not None:
                last_state, last_trial, last_at = self._written
                unchanged = (last_state, last_trial) == (state, current_trial)
                if unchanged and time.monotonic() - last_at < self.interval:
                    return
            self._write(state, current_trial)

    def refresh(self) -> None:
        """Write the last record again with a new ``last_seen`` (one heartbeat)."""
        with self._lock:
            if self._written is not None:
                self._write(*self._written[:2])

    def _write(self, state: str, current_trial: str | None) -> None:
        """Write the record (the caller holds ``_lock``)."""
        if self._study is None:
            self._study = optuna.create_study(
                storage=self.storage, study_name=WORKERS_STUDY, load_if_exists=True
            )
        self._study.set_user_attr(
            self.name,
            {
                "device": self.device,
                "host": self.name.split(":")[0],
                "pid": os.getpid(),
                "state": state,
                "current_trial": current_trial,
                "trials_done": self._trials_done(),
                "heartbeat_s": self.interval,
                "last_seen": datetime.now(UTC).isoformat(),
            },
        )
        self._written = (state, current_trial, time.monotonic())

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Refresh the record every ``interval`` s from a thread meanwhile.

        The loop writes only between trials, and a trial can train for hours: without the
        beat a busy worker would look lost. The lock keeps a beat from writing an older state
        over a newer one.
        """
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.interval):
                try:
                    self.refresh()
                except Exception as exc:  # a storage blip: the next beat tries again
                    log.warning("worker %s: registry heartbeat failed: %s", self.name, exc)

        thread = threading.Thread(target=beat, name=f"registry-{self.name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def registry(storage: BaseStorage) -> dict[str, dict[str, Any]]:
    """Every record of the workers registry by worker name, stopped and lost ones included."""
    try:
        study = optuna.load_study(study_name=WORKERS_STUDY, storage=storage)
    except KeyError:
        return {}
    return dict(study.user_attrs)


def is_lost(info: dict[str, Any], now: datetime | None = None) -> bool:
    """Whether a worker missed `LOST_AFTER_BEATS` heartbeats (killed, or its host is down).

    Records written before workers had a heartbeat thread count with `REGISTER_INTERVAL_S`.
    """
    now = now or datetime.now(UTC)
    beat = float(info.get("heartbeat_s") or REGISTER_INTERVAL_S)
    age = (now - datetime.fromisoformat(info["last_seen"])).total_seconds()
    return age > LOST_AFTER_BEATS * beat


def workers_alive(storage: BaseStorage | str) -> dict[str, dict[str, Any]]:
    """Registered workers neither stopped nor lost (`is_lost`), by name.

    Args:
        storage: an Optuna storage, or its URL (opened without heartbeats).
    """
    if isinstance(storage, str):
        storage = make_storage(storage, heartbeat_interval=None)
    now = datetime.now(UTC)
    return {
        name: info
        for name, info in registry(storage).items()
        if info.get("state") != "stopped" and not is_lost(info, now)
    }
