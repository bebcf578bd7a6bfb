"""Access control: 401 without a valid token on every route but health, 404 for another
user's ids on every route that takes one, admins see everything, cookie sign-in and CSRF."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from security_support import Accounts, Owned

PUBLIC = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
          "/signin", "/signout"}  # fmt: skip
ID_PARAMS = {"dataset_id", "search_id"}
SMALL = {"strategy": "randaugment", "n_trials": 1, "recipe": {"epochs": 1}}


def _routes(api: TestClient) -> list[tuple[str, str]]:
    """Every (method, path template) the app serves, mounts (static files) aside."""
    found: list[tuple[str, str]] = []
    for route in iter_route_contexts(api.app.routes):  # type: ignore[attr-defined]
        methods = getattr(route, "methods", None) or ()
        found.extend((m, str(route.path)) for m in sorted(methods) if m != "HEAD")
    return found


def _fill(path: str, dataset_id: int, search_id: int) -> str:
    return (
        path.replace("{dataset_id}", str(dataset_id))
        .replace("{search_id}", str(search_id))
        .replace("{name}", "randaugment-2-9")
    )


def _protected(api: TestClient) -> list[tuple[str, str]]:
    return [(m, p) for m, p in _routes(api) if p not in PUBLIC]


def _owned_routes(api: TestClient) -> list[tuple[str, str]]:
    return [(m, p) for m, p in _routes(api) if set(re.findall(r"{(\w+)}", p)) & ID_PARAMS]


def test_the_route_list_is_complete(api: TestClient) -> None:
    protected = _protected(api)
    assert len(protected) >= 25
    assert ("POST", "/api/v1/datasets/upload") in protected
    assert len(_owned_routes(api)) >= 15


def test_no_token_answers_401_on_every_route(api: TestClient) -> None:
    failures = {}
    for method, path in _protected(api):
        response = api.request(method, _fill(path, 1, 1))
        if response.status_code != 401:
            failures[f"{method} {path}"] = response.status_code
    assert failures == {}


@pytest.mark.parametrize(
    "header",
    [
        "Bearer aug_not-a-real-token",
        "Bearer ",
        "Basic YWxpY2U6c2VjcmV0",
        "aug_missing-scheme",
        "Bearer " + "x" * 5000,
        b"Bearer \xe9t\xe9",
    ],
)
def test_invalid_tokens_answer_401_on_every_route(api: TestClient, header: str | bytes) -> None:
    failures = {}
    for method, path in _protected(api):
        response = api.request(method, _fill(path, 1, 1), headers={"Authorization": header})
        if response.status_code != 401:
            failures[f"{method} {path}"] = response.status_code
    assert failures == {}


def test_a_revoked_token_is_refused(api: TestClient, accounts: Accounts) -> None:
    from sqlalchemy import update

    from service.db.models import ApiToken

    assert api.get("/api/v1/datasets", headers=accounts.bob).status_code == 200
    with api.app.state.runtime.transaction() as session:  # type: ignore[attr-defined]
        session.execute(update(ApiToken).values(revoked=True))
    assert api.get("/api/v1/datasets", headers=accounts.bob).status_code == 401


def test_health_probes_need_no_token(api: TestClient) -> None:
    assert api.get("/healthz").status_code == 200
    assert api.get("/readyz").status_code == 200


def test_another_users_ids_answer_404_on_every_route(
    api: TestClient, accounts: Accounts, owned: Owned
) -> None:
    failures = {}
    for method, path in _owned_routes(api):
        url = _fill(path, owned.dataset_id, owned.search_id)
        response = api.request(method, url, headers=accounts.bob)
        if response.status_code != 404:
            failures[f"{method} {path}"] = response.status_code
    assert failures == {}
    # Nothing was changed by the attempts: alice still sees her completed search and dataset.
    search = api.get(f"/api/v1/searches/{owned.search_id}", headers=accounts.alice)
    assert search.status_code == 200 and search.json()["state"] == "completed"
    assert api.get(f"/api/v1/datasets/{owned.dataset_id}", headers=accounts.alice).is_success


def test_the_owner_and_admins_reach_every_read_route(
    api: TestClient, accounts: Accounts, owned: Owned
) -> None:
    reads = [p for m, p in _owned_routes(api) if m == "GET"]
    for who in (accounts.alice, accounts.admin):
        failures = {}
        for path in reads:
            response = api.get(_fill(path, owned.dataset_id, owned.search_id), headers=who)
            if response.status_code != 200:
                failures[path] = response.status_code
        assert failures == {}


def test_lists_show_only_the_callers_objects(
    api: TestClient, accounts: Accounts, owned: Owned
) -> None:
    for listing in ("/api/v1/datasets", "/api/v1/searches"):
        assert api.get(listing, headers=accounts.bob).json()["total"] == 0
        assert api.get(listing, headers=accounts.alice).json()["total"] == 1
        assert api.get(listing, headers=accounts.admin).json()["total"] == 1
    filtered = api.get(
        "/api/v1/searches", params={"dataset_id": owned.dataset_id}, headers=accounts.bob
    )
    assert filtered.json()["items"] == []


def test_bob_cannot_launch_on_alices_dataset(
    api: TestClient, accounts: Accounts, owned: Owned
) -> None:
    body = {"dataset_id": owned.dataset_id, "spec": SMALL}
    assert api.post("/api/v1/searches", json=body, headers=accounts.bob).status_code == 404
    dashboard = api.post("/launch", json=body, headers=accounts.bob)
    assert dashboard.status_code == 404


def test_signin_sets_a_strict_httponly_cookie(api: TestClient, accounts: Accounts) -> None:
    assert "token" in api.get("/signin").text
    wrong = api.post("/signin", data={"token": "aug_wrong"}, follow_redirects=False)
    assert wrong.status_code == 401 and "invalid" in wrong.text
    response = api.post("/signin", data={"token": accounts.alice_token}, follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "augsearch_token=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    # The cookie now authenticates the dashboard and the API's reads (live polling).
    assert api.get("/").status_code == 200
    assert api.get("/api/v1/searches").status_code == 200
    out = api.post("/signout", follow_redirects=False)
    assert out.status_code == 303 and 'augsearch_token=""' in out.headers["set-cookie"]


def test_signin_from_another_origin_is_refused(api: TestClient, accounts: Accounts) -> None:
    response = api.post(
        "/signin",
        data={"token": accounts.alice_token},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_cookie_writes_need_the_csrf_header(
    api: TestClient, accounts: Accounts, owned: Owned
) -> None:
    api.cookies.set("augsearch_token", accounts.alice_token)
    body = {"dataset_id": owned.dataset_id, "spec": SMALL}
    refused = api.post("/api/v1/searches", json=body)
    assert refused.status_code == 403 and "X-Requested-With" in refused.json()["detail"]
    assert api.delete(f"/api/v1/searches/{owned.search_id}").status_code == 403
    assert api.post("/launch", json=body).status_code == 403
    allowed = api.post("/launch", json=body, headers={"X-Requested-With": "augsearch-dashboard"})
    assert allowed.status_code == 201
    assert api.get(f"/api/v1/searches/{owned.search_id}").status_code == 200


def test_cross_site_writes_are_refused_even_with_the_header(
    api: TestClient, accounts: Accounts, owned: Owned
) -> None:
    api.cookies.set("augsearch_token", accounts.alice_token)
    body = {"dataset_id": owned.dataset_id, "spec": SMALL}
    for headers in (
        {"X-Requested-With": "x", "Origin": "https://evil.example"},
        {"X-Requested-With": "x", "Sec-Fetch-Site": "cross-site"},
        {"X-Requested-With": "x", "Origin": "null"},
    ):
        assert api.post("/api/v1/searches", json=body, headers=headers).status_code == 403
    # A bearer token is no ambient credential, but a browser's cross-site write is still refused.
    evil = {**accounts.alice, "Origin": "https://evil.example"}
    assert api.post("/api/v1/searches", json=body, headers=evil).status_code == 403
    same = {"X-Requested-With": "x", "Origin": "http://testserver"}
    assert api.post("/api/v1/searches", json=body, headers=same).status_code == 201


def test_only_admins_register_server_paths_and_downloads(
    api: TestClient, accounts: Accounts
) -> None:
    body = {"source": "path", "path": "/tmp"}
    refused = api.post("/api/v1/datasets", json=body, headers=accounts.alice)
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    download = {"source": "torchvision", "dataset": "MNIST", "download": True}
    refused = api.post("/api/v1/datasets", json=download, headers=accounts.alice)
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
