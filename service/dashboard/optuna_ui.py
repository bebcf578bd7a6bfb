"""``augsearch serve --optuna-dashboard``: optuna-dashboard on its own port, same storage.

optuna-dashboard's bundle calls absolute ``/api`` paths, so it cannot live under a sub-path of
this app; it runs as a child process next to it, started and stopped with the app's lifespan,
and the dashboard's navigation links to it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from service.settings import Settings

PORT_ENV = "AUGSEARCH_OPTUNA_DASHBOARD_PORT"
DEFAULT_PORT = 8080


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


def mount_optuna_dashboard(app: FastAPI, settings: Settings, port: int | None = None) -> str:
    """Run optuna-dashboard beside ``app`` for the app's lifetime and link to it.

    Args:
        app: The service app (its lifespan is wrapped).
        settings: Service settings (storage URL, artifact store, bind host).
        port: Port of optuna-dashboard (default: :func:`dashboard_port`).

    Returns:
        The URL the dashboard links to (also stored as ``app.state.optuna_dashboard_url``).
    """
    port = port if port is not None else dashboard_port()
    url = f"http://{settings.host}:{port}/dashboard/"
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(instance: FastAPI) -> AsyncIterator[Any]:
        child = subprocess.Popen(command(settings, port))
        try:
            async with inner(instance) as state:
                yield state
        finally:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()

    app.router.lifespan_context = lifespan
    app.state.optuna_dashboard_url = url
    return url
