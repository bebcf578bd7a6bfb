"""The tokens API: a user lists and revokes only their own tokens; an admin any; a revoked
token stops at once while the owner's other tokens keep working."""

from __future__ import annotations

from fastapi.testclient import TestClient
from security_support import Accounts

from service.runtime import Runtime
from service.users.service import create_user_with_token


def test_users_list_and_revoke_their_own_tokens_only(
    api: TestClient, accounts: Accounts, runtime: Runtime
) -> None:
    with runtime.transaction() as session:
        spare = create_user_with_token(session, "alice", token_name="laptop")[1]
    spare_headers = {"Authorization": f"Bearer {spare}"}
    mine = api.get("/api/v1/tokens", headers=accounts.alice).json()
    assert [(t["user"], t["name"], t["state"]) for t in mine] == [
        ("alice", "", "live"),
        ("alice", "laptop", "live"),
    ]
    assert all("token" not in t and "token_hash" not in t for t in mine)
    bobs = api.get("/api/v1/tokens", headers=accounts.bob).json()
    assert [t["user"] for t in bobs] == ["bob"]
    everyone = api.get("/api/v1/tokens", headers=accounts.admin).json()
    assert sorted(t["user"] for t in everyone) == ["alice", "alice", "bob", "root"]

    laptop = mine[1]["id"]
    # Another user's token id answers like an unknown one.
    for token_id in (laptop, 999):
        refused = api.post(f"/api/v1/tokens/{token_id}/revoke", headers=accounts.bob)
        assert (
            refused.status_code == 404 and refused.json()["detail"] == f"token {token_id} not found"
        )
    assert api.get("/api/v1/datasets", headers=spare_headers).status_code == 200
    revoked = api.post(f"/api/v1/tokens/{laptop}/revoke", headers=accounts.alice)
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert api.get("/api/v1/datasets", headers=spare_headers).status_code == 401
    assert api.get("/api/v1/datasets", headers=accounts.alice).status_code == 200
    # An admin revokes anyone's; the revoke is idempotent.
    for _ in range(2):
        done = api.post(f"/api/v1/tokens/{bobs[0]['id']}/revoke", headers=accounts.admin)
        assert done.status_code == 200 and done.json()["user"] == "bob"
    assert api.get("/api/v1/tokens", headers=accounts.bob).status_code == 401
    assert api.post("/api/v1/tokens/0/revoke", headers=accounts.alice).status_code == 422
    assert api.get("/api/v1/tokens").status_code == 401
