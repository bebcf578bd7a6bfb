"""What ``augsearch serve`` says at start (where it answers, who runs the trials), and the
optuna-dashboard link: never shown for a port in use, taken away when the child exits."""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from servertools import Server, free_port

from service.app import create_app
from service.dashboard import mount_optuna_dashboard
from service.dashboard.optuna_ui import PORT_ENV
from service.settings import Settings

LINK = 'id="optuna-dashboard-link"'


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield int(sock.getsockname()[1])


@pytest.mark.slow
def test_serve_says_where_it_answers_and_that_searches_wait_without_workers(
    tmp_path: Path, busy_port: int
) -> None:
    server = Server(
        tmp_path, workers=0, args=["--optuna-dashboard"], env={PORT_ENV: str(busy_port)}
    )
    try:
        page = server.http.get("/workers")
        assert page.status_code == 200 and LINK not in page.text
    finally:
        server.end(signal.SIGTERM)
    said = " ".join(server.tail().split())  # the console wraps long lines
    assert f"dashboard: {server.url}/" in said
    assert f"API: {server.url}/api/v1 (docs: {server.url}/docs)" in said
    assert "no embedded workers (--workers 0): searches wait for `augsearch worker`" in said
    assert f"optuna-dashboard not started: port {busy_port} on 127.0.0.1 is in use" in said
    assert server.proc.returncode == 0


def test_a_port_in_use_starts_no_optuna_dashboard_and_links_none(
    settings: Settings, busy_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, reconcile=False)
    assert mount_optuna_dashboard(app, settings, port=busy_port) is None
    assert f"port {busy_port} on 127.0.0.1 is in use" in caplog.text
    with TestClient(app) as client:
        assert LINK not in client.get("/workers").text


def test_the_link_goes_when_optuna_dashboard_exits(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    app = create_app(settings, reconcile=False)
    assert mount_optuna_dashboard(app, settings, port=port) is not None
    caplog.set_level(logging.WARNING, logger="service.dashboard.optuna_ui")
    # Taken after the check, before the start: the child cannot bind and exits.
    with socket.create_server(("127.0.0.1", port)), TestClient(app) as client:
        assert LINK in client.get("/workers").text
        deadline = time.monotonic() + 60
        while LINK in client.get("/workers").text:
            assert time.monotonic() < deadline, "the link stayed"
            time.sleep(0.3)
    assert "optuna-dashboard exited with code" in caplog.text
