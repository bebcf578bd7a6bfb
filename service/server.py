"""``augsearch serve``: the API server and its embedded workers, started and stopped together.

Before anything starts, the service's tables (SQLite) and Optuna's are created, so that the
workers never race to make them. The server says where it answers and who runs the trials.
SIGTERM and Ctrl-C stop the API, then the workers (`service.embedded`), which hand their
running trials back, and only then does the process exit (0).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING

import typer

from service.cli_client import console
from service.settings import LOOPBACK_HOSTS, Settings

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_optuna_schema(settings: Settings) -> None:
    """Create Optuna's tables once, before workers open the database together and race."""
    from search.schema import SchemaNotReady, ensure_optuna_schema

    try:
        ensure_optuna_schema(settings.optuna_storage_url)
    except SchemaNotReady as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from exc


def run_server(
    settings: Settings, port: int, workers: int, device: str, optuna_dashboard: bool
) -> None:
    """Start embedded workers, then the API server (blocking until stopped).

    SIGTERM and Ctrl-C stop the API, then the workers, which hand their running trials back;
    a second signal kills the workers still draining.

    Raises:
        typer.Exit: code 1 when the embedded workers kept dying.
    """
    import uvicorn

    from service.embedded import EmbeddedWorkers

    api = _prepare_api(settings, optuna_dashboard)
    server = uvicorn.Server(uvicorn.Config(api, host=settings.host, port=port, log_level="warning"))
    fleet = EmbeddedWorkers(settings.optuna_storage_url, device,
                            settings.artifact_store_location, workers,
                            on_give_up=lambda: setattr(server, "should_exit", True))  # fmt: skip
    _announce(settings.host, port, workers, device)

    draining = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if draining.is_set():
            fleet.hurry()  # another signal: do not wait for the workers' epochs
        server.should_exit = True

    # uvicorn handles these while it serves, then restores these handlers and raises the
    # signal again: it lands here instead of killing the process before the workers stop.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    fleet.start()
    try:
        server.run()
    finally:
        draining.set()
        if workers:
            console.print(f"stopping {_workers(workers)} (running trials are handed back)")
        fleet.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if fleet.gave_up:
        console.print("[red]error:[/red] the embedded workers kept dying; see the log above")
        raise typer.Exit(code=1)


def _prepare_api(settings: Settings, optuna_dashboard: bool) -> FastAPI:
    """Migrate (SQLite), create Optuna's tables, and build the app (with optuna-dashboard)."""
    from service.app import create_app
    from service.db.migrate import upgrade

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    settings.ensure_dirs()
    if settings.is_sqlite:
        upgrade(settings.database_url)  # the embedded default migrates itself
    create_optuna_schema(settings)  # before any worker starts
    if settings.single_user:
        console.print(
            "[bold yellow]SINGLE-USER MODE: no authentication, every request acts as the local "
            f"admin; bound to the loopback address {settings.host} only.[/bold yellow]"
        )
        # Loopback names only: a page on another site cannot reach the service through a
        # rebinding DNS name.
        settings.trusted_hosts = settings.trusted_hosts or [*LOOPBACK_HOSTS, "[::1]"]
    api = create_app(settings)
    if optuna_dashboard:
        # optuna-dashboard runs beside the API for its lifetime (service.dashboard owns it).
        from service.dashboard import mount_optuna_dashboard

        dashboard_url = mount_optuna_dashboard(api, settings)
        if dashboard_url is not None:  # else it logged why not
            console.print(f"optuna-dashboard: {dashboard_url}")
    return api


def _workers(count: int) -> str:
    return f"{count} embedded worker{'s' if count != 1 else ''}"


def _announce(host: str, port: int, workers: int, device: str) -> None:
    """Say where the service answers and who runs the trials."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
    console.print(f"dashboard: {url}/")
    console.print(f"API: {url}/api/v1 (docs: {url}/docs)")
    if workers:
        console.print(f"{_workers(workers)} on {device} run the trials")
    else:
        console.print(
            "[yellow]no embedded workers (--workers 0): searches wait for `augsearch worker` "
            "processes on this database[/yellow]"
        )
