"""Who sees what of the workers: admins everything; other users the workers' states and the
trials of their own searches, never a host, pid or another user's search."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import optuna
from fastapi.testclient import TestClient
from security_support import Accounts, Owned

from search.worker_registry import WORKERS_STUDY
from service.runtime import Runtime

PRIVATE = ("name", "device", "host", "pid", "trials_done", "last_seen", "heartbeat_timeout_s")


def _register(runtime: Runtime, records: dict[str, tuple[str, str | None, float]]) -> None:
    """Write registry records as workers do: name -> (state, current trial, age in s)."""
    registry = optuna.create_study(
        storage=runtime.storage, study_name=WORKERS_STUDY, load_if_exists=True
    )
    now = datetime.now(UTC)
    for name, (state, trial, age) in records.items():
        host, _, pid = name.partition(":")
        registry.set_user_attr(
            name,
            {"device": "cuda:0", "host": host, "pid": int(pid), "state": state,
             "current_trial": trial, "trials_done": 4, "heartbeat_s": 10.0,
             "last_seen": (now - timedelta(seconds=age)).isoformat()},
        )  # fmt: skip


def _bobs_search(api: TestClient, accounts: Accounts) -> int:
    dataset = api.post("/api/v1/datasets", json={"source": "digits"}, headers=accounts.bob)
    spec = {"strategy": "randaugment", "n_trials": 2, "recipe": {"epochs": 1}}
    body = {"dataset_id": dataset.json()["id"], "spec": spec}
    return int(api.post("/api/v1/searches", json=body, headers=accounts.bob).json()["id"])


def test_workers_show_hosts_to_admins_only_and_searches_to_their_owners(
    api: TestClient, accounts: Accounts, owned: Owned, runtime: Runtime
) -> None:
    alices, bobs = owned.search_id, _bobs_search(api, accounts)
    _register(
        runtime,
        {
            "gpu-a:101": ("busy", f"{alices}#3", 1.0),
            "gpu-b:202": ("busy", f"{bobs}#0", 2.0),
            "gpu-c:303": ("idle", None, 5.0),
            "gpu-d:404": ("busy", f"{alices}#1", 45.0),  # missed three beats: lost
            "gpu-e:505": ("stopped", None, 1.0),
            "gpu-f:606": ("busy", None, 7200.0),  # lost long ago: no longer listed
        },
    )
    everything = api.get("/api/v1/workers", headers=accounts.admin).json()
    assert [(w["name"], w["host"], w["pid"], w["state"]) for w in everything] == [
        ("gpu-a:101", "gpu-a", 101, "busy"),
        ("gpu-b:202", "gpu-b", 202, "busy"),
        ("gpu-c:303", "gpu-c", 303, "idle"),
        ("gpu-d:404", "gpu-d", 404, "lost"),
    ]
    assert [w["search_id"] for w in everything] == [alices, bobs, None, None]
    assert everything[0]["heartbeat_timeout_s"] == 30.0 and everything[0]["trials_done"] == 4

    def seen_by(headers: dict[str, str]) -> list[dict[str, Any]]:
        response = api.get("/api/v1/workers", headers=headers)
        assert response.status_code == 200, response.text
        workers: list[dict[str, Any]] = response.json()
        assert all(w[field] is None for w in workers for field in PRIVATE)
        return workers

    assert [(w["state"], w["search_id"], w["current_trial"]) for w in seen_by(accounts.alice)] == [
        ("busy", alices, f"{alices}#3"),
        ("busy", None, None),
        ("idle", None, None),
        ("lost", None, None),
    ]
    assert [w["search_id"] for w in seen_by(accounts.bob)] == [None, bobs, None, None]
    assert api.get("/api/v1/workers").status_code == 401
    page = api.get("/workers", headers=accounts.alice).text
    assert "gpu-a" not in page and f'href="/searches/{alices}"' in page
    assert f'href="/searches/{bobs}"' not in page
    assert "gpu-b:202" in api.get("/workers", headers=accounts.admin).text
