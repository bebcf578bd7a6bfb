"""Worker processes: the ``augsearch worker`` entry point and one process per device or GPU.

The parent of a fleet forwards SIGTERM to its children and waits for them to drain (each
finishes its epoch and hands its trial back: failed, and re-queued with the same params), then
exits 0. A parent that is killed takes its children with it (`search.parent`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

from search.objective import worker_identity
from search.parent import die_with_parent
from search.worker import Worker

log = logging.getLogger("augsearch.worker")


def run_worker(
    storage_url: str,
    device: str = "cpu",
    artifact_dir: str | Path = "augsearch-data/artifacts",
    **kwargs: Any,
) -> int:
    """Entry point of ``augsearch worker``: run one worker until it stops; returns exit code 0.

    Keyword arguments are passed to `Worker`; ``max_idle`` to `Worker.run`; ``torch_threads``
    sets this process's torch threads (see `threads_per_worker`); with ``parent_pid`` the
    process ends with that one (`search.parent.die_with_parent`).
    """
    parent_pid = kwargs.pop("parent_pid", None)
    if parent_pid is not None:
        die_with_parent(int(parent_pid))
    threads = kwargs.pop("torch_threads", None)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    max_idle = kwargs.pop("max_idle", None)
    worker = Worker(storage_url, device, str(artifact_dir), **kwargs)
    worker.run(max_idle=max_idle)
    return 0


def threads_per_worker(n_workers: int) -> int:
    """Torch threads of each of ``n_workers`` CPU workers sharing this machine.

    Oversubscribed threads (each process defaulting to every core) made trials ~10x slower
    on a 2-core machine; the cores are shared out instead, one thread at least.
    """
    return max(1, (os.cpu_count() or 1) // max(1, n_workers))


def _worker_main(
    device: str, gpu: int | None, storage_url: str, artifact_dir: str, kwargs: dict[str, Any]
) -> None:
    if gpu is not None:
        # Set before anything touches CUDA, so this process sees only its GPU as cuda:0.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        kwargs.setdefault("name", f"{worker_identity()}:gpu{gpu}")
    run_worker(storage_url, device, artifact_dir, **kwargs)


def run_worker_processes(
    storage_url: str,
    devices: Sequence[str],
    artifact_dir: str | Path = "augsearch-data/artifacts",
    *,
    gpus: Sequence[int] | None = None,
    **kwargs: Any,
) -> int:
    """Run one worker process per device and wait for all of them.

    SIGTERM (and Ctrl-C) to this process is forwarded to every worker, which stops after its
    current epoch (its trial is re-queued); this process then waits for them to drain.

    Args:
        storage_url: the Optuna storage.
        devices: torch device of each process (``["cpu", "cpu"]``, ``["cuda:0"] * 2`` ...).
        artifact_dir: artifact store of every worker.
        gpus: with ``devices`` all ``cuda:0``, the GPU each process sees
            (``CUDA_VISIBLE_DEVICES``).
        **kwargs: passed to `Worker` (``max_idle`` to `Worker.run`).

    Returns:
        0 if every worker exited cleanly (or was stopped before it started), else 1.
    """
    if not devices:
        raise ValueError("devices must name at least one device")
    if gpus is not None and len(gpus) != len(devices):
        raise ValueError(f"{len(gpus)} gpus for {len(devices)} devices")
    ctx = multiprocessing.get_context("spawn")
    gpu_of = list(gpus) if gpus is not None else [None] * len(devices)
    cpu_workers = sum(1 for dev in devices if dev == "cpu")
    if cpu_workers > 1:
        kwargs.setdefault("torch_threads", threads_per_worker(cpu_workers))
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(dev, gpu, storage_url, str(artifact_dir), dict(kwargs, parent_pid=os.getpid())),
            name=f"augsearch-worker-{i}",
        )
        for i, (dev, gpu) in enumerate(zip(devices, gpu_of, strict=True))
    ]
    for proc in procs:
        proc.start()
    forwarded = threading.Event()

    def forward(signum: int, frame: Any) -> None:
        log.info("SIGTERM: stopping %d workers after their current epoch", len(procs))
        forwarded.set()
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, forward) if in_main else None
    try:
        for proc in procs:
            try:
                proc.join()
            except KeyboardInterrupt:
                forward(signal.SIGINT, None)
                proc.join()
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    # A worker killed by the forwarded signal before it set its handler had no trial yet.
    clean = (0, -signal.SIGTERM) if forwarded.is_set() else (0,)
    return 0 if all(p.exitcode in clean for p in procs) else 1


def run_workers(
    storage_url: str,
    gpus: Sequence[int],
    artifact_dir: str | Path = "augsearch-data/artifacts",
    **kwargs: Any,
) -> int:
    """Run one worker process per GPU (``--gpus 0,1``); see `run_worker_processes`.

    Returns:
        0 if every worker exited cleanly, else 1.
    """
    if not gpus or len(set(gpus)) != len(gpus) or min(gpus) < 0:
        raise ValueError(f"gpus must be distinct non-negative indices, got {list(gpus)}")
    return run_worker_processes(
        storage_url, ["cuda:0"] * len(gpus), artifact_dir, gpus=list(gpus), **kwargs
    )
