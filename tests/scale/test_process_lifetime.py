"""No process outlives ``augsearch serve``: on SIGTERM it stops its embedded workers (which hand
their running trials back) and optuna-dashboard before it exits 0; killed, its children end
with it all the same, as do the workers of a killed fleet (``augsearch worker --gpus``). An
embedded worker that dies while the server runs is started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from scaletools import wait_for
from servertools import Server, descendants, free_port, wait_gone

from search.worker_registry import workers_alive

pytestmark = pytest.mark.slow
LONG = {  # trials long enough to be interrupted
    "strategy": "randaugment",
    "n_trials": 4,
    "baselines": ["none"],
    "sampler": "random",
    "train_size": 200,
    "recipe": {"epochs": 100, "batch_size": 64, "width": 0.25},
    "final_recipe": {"epochs": 1, "batch_size": 64, "width": 0.25},
}


def _serve(tmp_path: Path, *args: str) -> tuple[Server, str]:
    """``augsearch serve --workers 2`` on a new data dir, once both workers look for work."""
    data = tmp_path / "data"
    data.mkdir()
    env = {"AUGSEARCH_OPTUNA_DASHBOARD_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    server = Server(data, poll_s=0.3, heartbeat_s=1, workers=2, args=args, env=env)
    url = f"sqlite:///{data / 'augsearch.db'}"
    try:
        wait_for(lambda: len(workers_alive(url)) == 2, 120, "both embedded workers")
    except AssertionError:
        server.end(signal.SIGKILL)
        raise AssertionError(server.tail()) from None
    return server, url


def _search_trials(url: str) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(url)
    trials = [
        t
        for study in storage.get_all_studies()
        if study.study_name.startswith("search-")
        for t in storage.get_all_trials(study._study_id)
    ]
    storage.engine.dispose()
    return trials


def _running(url: str) -> list[optuna.trial.FrozenTrial]:
    return [t for t in _search_trials(url) if t.state == TrialState.RUNNING]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_no_child_outlives_the_server(tmp_path: Path, sig: signal.Signals) -> None:
    server, url = _serve(tmp_path, "--optuna-dashboard")
    children: set[int] = set()
    try:
        server.launch(LONG)
        wait_for(lambda: any(t.intermediate_values for t in _running(url)), 120, "a trial")
        children = descendants(server.proc.pid)
        assert len(children) >= 3, children  # two workers and optuna-dashboard
        server.proc.send_signal(sig)
        code = server.proc.wait(timeout=90)
        assert wait_gone(children, timeout_s=30) == set(), server.tail()
    finally:
        for pid in wait_gone(children, timeout_s=0):
            os.kill(pid, signal.SIGKILL)
        server.end(signal.SIGKILL)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), server.tail()
    # Either way the workers were told to stop: each handed its running trial back.
    trials = _search_trials(url)
    stopped = [t for t in trials if t.user_attrs.get("error") == "TrialStopped: worker terminated"]
    assert stopped and not _running(url)
    waiting = {t.system_attrs.get("failed_trial") for t in trials if t.state == TrialState.WAITING}
    assert {t.number for t in stopped} <= waiting


def test_a_worker_that_dies_is_started_again(tmp_path: Path) -> None:
    server, _ = _serve(tmp_path)
    try:
        first = descendants(server.proc.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: len(descendants(server.proc.pid) - first) == 1 and server.proc.poll() is None,
            30,
            "a new worker",
        )
        assert f"(pid {victim}) exited with code -9 while the server runs" in server.tail()
    finally:
        server.end(signal.SIGTERM)
    assert server.proc.returncode == 0, server.tail()


def test_a_killed_fleet_takes_its_workers_with_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    code = (
        "from search.fleet import run_worker_processes\n"
        f"run_worker_processes({url!r}, ['cpu', 'cpu'], {str(tmp_path)!r}, poll_interval=0.2)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    children: set[int] = set()
    try:
        wait_for(lambda: len(workers_alive(url)) == 2, 120, "both workers")
        children = descendants(parent.pid)
        parent.kill()
        parent.wait()
        assert wait_gone(children, timeout_s=30) == set()
    finally:
        for pid in wait_gone(children, timeout_s=0):
            os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
