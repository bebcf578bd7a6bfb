"""API restart mid-search: ``augsearch serve --workers 1`` is stopped (SIGTERM, then SIGKILL)
while a search runs, started again on the same data dir, and the search completes with its
exact budget; no trial listed before the restart is lost or changed, and the result is served."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from servertools import Server, wait_until

pytestmark = pytest.mark.slow

BUDGET = 3
TINY = {
    "strategy": "randaugment",
    "n_trials": BUDGET,
    "baselines": ["none"],
    "sampler": "random",
    "train_size": 200,
    "recipe": {"epochs": 2, "batch_size": 64, "width": 0.25},
    "final_recipe": {"epochs": 1, "batch_size": 64, "width": 0.25},
    "final_pick": {"candidates": 1, "presets": 0},
}


def _trials(server: Server, sid: int) -> list[dict[str, Any]]:
    """The API's trial listing of a search."""
    response = server.http.get(f"/api/v1/searches/{sid}/trials", params={"limit": 100})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def _finished(trials: list[dict[str, Any]]) -> dict[int, tuple[str, str, Any]]:
    """Finished trials by number: (role, state, params); these must never change."""
    return {
        t["number"]: (t["role"], t["state"], t["params"])
        for t in trials
        if t["state"] in ("COMPLETE", "PRUNED", "FAIL")
    }


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_search_survives_an_api_restart_mid_search(tmp_path: Path, sig: signal.Signals) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    server = Server(data_dir, poll_s=0.3, heartbeat_s=1)
    try:
        did, sid = server.launch(TINY)
        wait_until(
            server,
            lambda: any(t["state"] == "COMPLETE" for t in _trials(server, sid)),
            f"search {sid}: no trial completed",
            timeout_s=120,
            poll_s=0.3,
        )
        before = _trials(server, sid)
        assert server.search(sid)["state"] != "completed"  # really mid-search
    finally:
        server.end(sig)
    server = Server(data_dir, poll_s=0.3, heartbeat_s=1)
    try:
        server.wait_completed(sid, timeout_s=150, poll_s=0.3)
        after = _trials(server, sid)
        old = _finished(before)
        assert {n: _finished(after)[n] for n in old} == old  # nothing lost or rewritten
        numbers = [t["number"] for t in after]
        assert len(numbers) == len(set(numbers))
        search = [t for t in after if t["role"] == "search"]
        assert sum(t["state"] == "COMPLETE" for t in search) == BUDGET
        assert sum(t["role"] == "final" and t["state"] == "COMPLETE" for t in after) == 1
        policy = server.http.get(f"/api/v1/searches/{sid}/policy")
        assert policy.status_code == 200, policy.text
        assert policy.json()["provisional"] is False
        checkpoint = server.http.get(f"/api/v1/searches/{sid}/checkpoint")
        assert checkpoint.status_code == 200
        assert server.http.get(f"/api/v1/datasets/{did}/policy").status_code == 200
    finally:
        server.end(signal.SIGINT)
