"""``augsearch serve --optuna-dashboard``: optuna-dashboard on its own port, same storage.

optuna-dashboard's bundle calls absolute ``/api`` paths, so it cannot live under a sub-path of
this app; it runs as a child process next to it, started and stopped with the app's lifespan,
and the dashboard's navigation links to it while it runs: a port already in use, or a child
that exits, is logged and the link goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from service.settings import Settings

PORT_ENV = "AUGSEARCH_OPTUNA_DASHBOARD_PORT"
DEFAULT_PORT = 8080
log = logging.getLogger(__name__)


def dashboard_port() -> int:
    """The optuna-dashboard port: ``AUGSEARCH_OPTUNA_DASHBOARD_PORT`` or 8080.

    Raises:
        ValueError: if the variable is not a port number.
    """
    raw = os.environ.get(PORT_ENV, str(DEFAULT_PORT))
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ValueError(f"{PORT_ENV} must be a port number (1-65535), got {raw!r}")
    return int(raw)


def command(settings: Settings, port: int) -> list[str]:
    """The optuna-dashboard command line for the service's storage and artifacts."""
    script = Path(sys.executable).with_name("optuna-dashboard")
    cmd = [str(script), settings.optuna_storage_url, "--host", settings.host,
           "--port", str(port), "--quiet"]  # fmt: skip
    if "://" not in settings.artifact_store_location:  # the CLI only knows file-system stores
        cmd += ["--artifact-dir", settings.artifact_store_location]
    return cmd


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port`` (a bind there fails)."""
    try:
        socket.create_server((host, port)).close()
    except OSError:
        return True
    return False


def mount_optuna_dashboard(app: FastAPI, settings: Settings, port: int | None = None) -> str | None:
    """Run optuna-dashboard beside ``app`` for the app's lifetime and link to it.

    Args:
        app: The service app (its lifespan is wrapped).
        settings: Service settings (storage URL, artifact store, bind host).
        port: Port of optuna-dashboard (default: :func:`dashboard_port`).

    Returns:
        The URL the dashboard links to (also stored as ``app.state.optuna_dashboard_url``),
        or None when the port is in use: nothing is started and nothing links to it.
    """
    port = port if port is not None else dashboard_port()
    if port_in_use(settings.host, port):
        log.warning(
            "optuna-dashboard not started: port %d on %s is in use (choose another with %s)",
            port,
            settings.host,
            PORT_ENV,
        )
        return None
    url = f"http://{settings.host}:{port}/dashboard/"
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(instance: FastAPI) -> AsyncIterator[Any]:
        # Started through search.parent, so that it ends with this process however it ends.
        launcher = [sys.executable, "-m", "search.parent", str(os.getpid())]
        child = subprocess.Popen([*launcher, *command(settings, port)])
        watch = asyncio.create_task(_unlink_when_gone(instance, child))
        try:
            async with inner(instance) as state:
                yield state
        finally:
            watch.cancel()
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()

    app.router.lifespan_context = lifespan
    app.state.optuna_dashboard_url = url
    return url


async def _unlink_when_gone(app: FastAPI, child: subprocess.Popen[bytes]) -> None:
    """Drop the navigation's link once optuna-dashboard exits (it failed to start, or died)."""
    while child.poll() is None:
        await asyncio.sleep(0.5)
    app.state.optuna_dashboard_url = None
    log.warning(
        "optuna-dashboard exited with code %s; the dashboard no longer links to it",
        child.returncode,
    )
