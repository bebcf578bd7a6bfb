"""A real server (uvicorn in a thread) holding a finished search and a running one, trained by a
real worker on ``digits``, and a Playwright chromium page that fails on console errors."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from service.app import create_app
from service.db.migrate import upgrade
from service.settings import Settings

CHROMIUM = "/usr/bin/chromium"

# Small enough to train in seconds on a CPU, large enough to learn something.
RECIPE = {"epochs": 2, "width": 0.5, "batch_size": 16, "optimizer": "adamw", "lr": 0.01,
          "weight_decay": 0.0005}  # fmt: skip
FINISHED_SPEC = {
    "strategy": "randaugment", "n_trials": 3, "baselines": ["none"], "recipe": RECIPE,
    "final_recipe": {**RECIPE, "train_subset": 300}, "train_size": 200, "sampler": "random",
    "pruner": "none", "seed": 3, "parallelism": 1,
}  # fmt: skip
# Its preset's final may score 1.000 on digits' validation, which would end the search
# (docs/search.md, "A saturated validation"): the pages under test need it running.
RUNNING_SPEC = {
    "strategy": "autoaugment", "n_trials": 6, "num_sub_policies": 2, "baselines": ["none"],
    "recipe": {**RECIPE, "epochs": 1}, "train_size": 200, "sampler": "random", "seed": 1,
    "parallelism": 1, "final_pick": {"end_when_saturated": False},
}  # fmt: skip


@dataclass
class LiveServer:
    """The server under test and what it holds."""

    url: str
    settings: Settings
    dataset_id: int = 0
    finished_id: int = 0
    running_id: int = 0
    worker_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def _wait_state(http: httpx.Client, search_id: int, state: str, timeout: float) -> None:
    seen: list[str] = []

    def reached() -> bool:
        response = http.get(f"/api/v1/searches/{search_id}")
        seen.append(f"{response.status_code} {response.text[:300]}")
        return response.status_code == 200 and response.json()["state"] == state

    try:
        _wait(reached, timeout, f"search {search_id} to be {state}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; last answers: {seen[-3:]}") from exc
    errors = [a for a in seen if not a.startswith("200")]
    assert not errors, f"the API answered errors while polling: {errors[:3]}"


def _populate(server: LiveServer, http: httpx.Client) -> Any:
    """Train a finished and a running search through the real API, reconciler and worker."""
    from search.worker import Worker

    dataset = http.post("/api/v1/datasets", json={"source": "digits"})
    assert dataset.status_code == 201, dataset.text
    server.dataset_id = dataset.json()["id"]
    settings = server.settings
    worker = Worker(settings.optuna_storage_url, artifact_store=settings.artifact_store_location,
                    heartbeat_interval=1, poll_interval=0.2,
                    data_cache_dir=str(settings.data_dir / "cache"))  # fmt: skip
    server.worker_name = worker.name
    for spec, name in ((FINISHED_SPEC, "finished"), (RUNNING_SPEC, "running")):
        body = {"dataset_id": server.dataset_id, "name": f"{name} search", "spec": spec}
        created = http.post("/api/v1/searches", json=body)
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        _wait_state(http, sid, "running", 30)
        worker.search_ids = {str(sid)}
        if name == "finished":
            # Idle for longer than a reconciler pass, so the final training it enqueues is run.
            worker.run(max_idle=2.0)
            _wait_state(http, sid, "completed", 120)
            server.finished_id = sid
        else:
            worker.max_trials = worker.trials_done + 2
            worker.run(max_idle=2.0)
            server.running_id = sid
    return worker


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The server, populated once per session; a worker stays registered (idle) meanwhile."""
    data_dir = tmp_path_factory.mktemp("browser-data")
    settings = Settings(data_dir=data_dir, single_user=True, heartbeat_interval_s=1,
                        reconcile_interval_s=0.3, max_concurrent_searches=10)  # fmt: skip
    settings.ensure_dirs()
    upgrade(settings.database_url)
    uv, thread, url = _serve(settings)
    server = LiveServer(url=url, settings=settings)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        worker = _populate(server, http)
    # Serve only the finished search: the worker stays alive and idle, so it is listed.
    worker.search_ids = {str(server.finished_id)}
    worker.max_trials = None
    idle = threading.Thread(target=worker.run, daemon=True)
    idle.start()
    try:
        yield server
    finally:
        worker.stop()
        idle.join(timeout=10)
        uv.should_exit = True
        thread.join(timeout=10)


def _serve(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Start the app on a free loopback port in a thread; returns the server, thread and URL."""
    port = _free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    _wait(lambda: uv.started, 20, "the server to start")
    return uv, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def locked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A server outside single-user mode (empty) and a valid token of one user: (url, token)."""
    from service.db.engine import make_engine, make_sessionmaker
    from service.users.service import create_user_with_token

    settings = Settings(data_dir=tmp_path_factory.mktemp("locked-data"), single_user=False)
    settings.ensure_dirs()
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        _, token = create_user_with_token(session, "ada")
        session.commit()
    engine.dispose()
    uv, thread, url = _serve(settings)
    try:
        yield url, token
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        yield instance
        instance.close()


@dataclass
class Console:
    """What the browser console reported, and the messages a test expects (substrings)."""

    errors: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)

    def unexpected(self) -> list[str]:
        """Errors no test declared."""
        return [e for e in self.errors if not any(x in e for x in self.expected)]


@pytest.fixture
def console() -> Console:
    """The console log of the test's page."""
    return Console()


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    """A fresh 1280x900 page; the test fails if the browser console logged an unexpected error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.on("console", lambda msg: console.errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: console.errors.append(str(exc)))
    yield tab
    context.close()
    assert not console.unexpected(), f"browser console errors: {console.unexpected()}"
