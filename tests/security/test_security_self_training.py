"""Self-training's own ids: another user's unlabelled sets and jobs answer 404 everywhere, and
nobody attaches images to (or self-trains on) another user's dataset or search."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image
from security_support import Accounts, Owned


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for i in range(3):
            png = io.BytesIO()
            Image.fromarray(np.full((32, 32), i * 40, np.uint8)).save(png, "PNG")
            zf.writestr(f"{i}.png", png.getvalue())
    return buffer.getvalue()


def test_other_users_sets_and_jobs_answer_404(
    api: TestClient, accounts: Accounts, owned: Owned
) -> None:
    files = {"file": ("u.zip", _zip(), "application/zip")}
    data = {"dataset_id": str(owned.dataset_id)}
    stolen = api.post("/api/v1/unlabelled/upload", files=files, data=data, headers=accounts.bob)
    assert stolen.status_code == 404
    mine = api.post("/api/v1/unlabelled/upload", files=files, data=data, headers=accounts.alice)
    assert mine.status_code == 201, mine.text
    uid = mine.json()["id"]
    job = api.post(
        f"/api/v1/searches/{owned.search_id}/self-train",
        json={"unlabelled_id": uid, "iterations": 1},
        headers=accounts.alice,
    )
    assert job.status_code == 201, job.text
    jid = job.json()["id"]
    for method, url in [
        ("GET", f"/api/v1/unlabelled/{uid}"),
        ("DELETE", f"/api/v1/unlabelled/{uid}"),
        ("GET", f"/api/v1/self-trainings/{jid}"),
        ("POST", f"/api/v1/self-trainings/{jid}/cancel"),
        ("GET", f"/api/v1/self-trainings/{jid}/checkpoint"),
        ("GET", f"/api/v1/self-trainings/{jid}/checkpoint/card"),
        ("GET", f"/api/v1/searches/{owned.search_id}/self-trainings"),
    ]:
        assert api.request(method, url, headers=accounts.bob).status_code == 404, url
    assert api.get("/api/v1/unlabelled", headers=accounts.bob).json()["total"] == 0
    assert api.get(f"/api/v1/self-trainings/{jid}", headers=accounts.admin).status_code == 200
    assert api.get(f"/api/v1/self-trainings/{jid}", headers=accounts.alice).json()["state"] == (
        "queued"
    )
