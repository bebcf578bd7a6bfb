"""The searches API: launch validation, limits, filters, the state machine over HTTP."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

SMALL = {"strategy": "randaugment", "n_trials": 2, "recipe": {"epochs": 1}, "baselines": ["none"]}


def _launch(client: TestClient, dataset_id: Any, **spec: Any) -> Any:
    return client.post(
        "/api/v1/searches", json={"dataset_id": dataset_id, "spec": {**SMALL, **spec}}
    )


def test_launch_stores_a_validated_queued_search(
    client: TestClient, digits: dict[str, Any]
) -> None:
    response = _launch(client, digits["id"], priority=5)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["state"] == "queued" and body["priority"] == 5
    assert body["spec"]["dataset"]["source"] == "digits"
    assert body["spec"]["n_trials"] == 2 and body["spec"]["final_recipe"]["epochs"] == 3
    assert body["progress"]["n_trials"] == 2
    shown = client.get(f"/api/v1/searches/{body['id']}").json()
    assert shown == body


def test_launch_rejects_bad_specs(client: TestClient, digits: dict[str, Any]) -> None:
    cases = [
        ({"n_trials": 51}, "n_trials must be at most 50"),
        ({"recipe": {"epochs": 21}}, "epochs must be at most 20"),
        ({"bogus": 1}, "bogus"),
        ({"dataset": {"source": "digits"}}, "dataset_id"),
        ({"strategy": "nonsense"}, "strategy"),
    ]
    for spec, needle in cases:
        response = _launch(client, digits["id"], **spec)
        assert response.status_code == 422, spec
        assert needle in response.json()["detail"], response.json()
    extra = client.post("/api/v1/searches", json={"dataset_id": digits["id"], "state": "completed"})
    assert extra.status_code == 422
    assert _launch(client, 999).status_code == 404


def test_concurrent_search_quota(client: TestClient, digits: dict[str, Any]) -> None:
    for _ in range(3):
        assert _launch(client, digits["id"]).status_code == 201
    refused = _launch(client, digits["id"])
    assert refused.status_code == 429 and "limit is 3" in refused.json()["detail"]


def test_list_filters_and_pagination(client: TestClient, digits: dict[str, Any]) -> None:
    ids = [_launch(client, digits["id"]).json()["id"] for _ in range(3)]
    client.post(f"/api/v1/searches/{ids[0]}/cancel")
    page = client.get("/api/v1/searches", params={"limit": 2}).json()
    assert page["total"] == 3 and [s["id"] for s in page["items"]] == ids[::-1][:2]
    cancelled = client.get("/api/v1/searches", params={"state": "cancelled"}).json()
    assert [s["id"] for s in cancelled["items"]] == [ids[0]]
    other = client.get("/api/v1/searches", params={"dataset_id": 12345}).json()
    assert other["total"] == 0
    assert client.get("/api/v1/searches", params={"state": "bogus"}).status_code == 422


def test_cancel_resume_delete_follow_the_state_machine(
    client: TestClient, digits: dict[str, Any]
) -> None:
    sid = _launch(client, digits["id"]).json()["id"]
    assert client.delete(f"/api/v1/searches/{sid}").status_code == 409
    assert client.post(f"/api/v1/searches/{sid}/resume").status_code == 409
    cancelled = client.post(f"/api/v1/searches/{sid}/cancel").json()
    assert cancelled["state"] == "cancelled" and cancelled["finished_at"] is not None
    assert client.post(f"/api/v1/searches/{sid}/cancel").status_code == 409
    resumed = client.post(f"/api/v1/searches/{sid}/resume").json()
    assert resumed["state"] == "queued" and resumed["finished_at"] is None
    client.post(f"/api/v1/searches/{sid}/cancel")
    assert client.delete(f"/api/v1/searches/{sid}").status_code == 204
    assert client.get(f"/api/v1/searches/{sid}").status_code == 404
    assert client.post("/api/v1/searches/999/cancel").status_code == 404


def test_dataset_in_use_cannot_be_deleted(client: TestClient, digits: dict[str, Any]) -> None:
    sid = _launch(client, digits["id"]).json()["id"]
    response = client.delete(f"/api/v1/datasets/{digits['id']}")
    assert response.status_code == 409 and str(sid) in response.json()["detail"]


def test_trials_of_a_new_search_are_empty_and_paginated(
    client: TestClient, digits: dict[str, Any]
) -> None:
    sid = _launch(client, digits["id"]).json()["id"]
    page = client.get(f"/api/v1/searches/{sid}/trials", params={"limit": 5}).json()
    assert page == {"items": [], "total": 0, "offset": 0, "limit": 5}
    assert client.get("/api/v1/searches/999/trials").status_code == 404
