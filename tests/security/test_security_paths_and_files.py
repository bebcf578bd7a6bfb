"""Server paths stay under the configured roots; checkpoints are served only when their bytes
still hash to the sha256 recorded when they were written."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from security_support import Accounts, Owned

from service.settings import Settings


def _image_folder(root: Path) -> Path:
    for k, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            buffer = io.BytesIO()
            Image.new("RGB", (8, 8), (50 * k + i, 0, 0)).save(buffer, format="PNG")
            (root / cls / f"{i}.png").write_bytes(buffer.getvalue())
    return root


@pytest.fixture
def root(secure_settings: Settings) -> Path:
    return secure_settings.allowed_dataset_roots[0]


def _register(api: TestClient, headers: dict[str, str], path: str) -> object:
    return api.post("/api/v1/datasets", json={"source": "path", "path": path}, headers=headers)


def test_a_folder_under_the_root_is_accepted(
    api: TestClient, accounts: Accounts, root: Path
) -> None:
    _image_folder(root / "pets")
    response = _register(api, accounts.admin, str(root / "pets"))
    assert response.status_code == 201, response.text  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "escape",
    ["../../outside", "pets/../../outside", "/etc", "/", "file:///etc", "pets/\x00"],
)
def test_paths_escaping_the_root_are_refused(
    api: TestClient, accounts: Accounts, root: Path, escape: str
) -> None:
    _image_folder(root.parent.parent / "outside")
    _image_folder(root / "pets")
    path = escape if escape.startswith(("/", "file:")) else str(root) + "/" + escape
    response = _register(api, accounts.admin, path)
    assert response.status_code == 403, response.text  # type: ignore[attr-defined]


def test_sibling_prefix_is_not_inside_the_root(
    api: TestClient, accounts: Accounts, root: Path
) -> None:
    sibling = _image_folder(root.parent / (root.name + "2"))  # /…/root2 next to /…/root
    assert str(sibling).startswith(str(root))
    response = _register(api, accounts.admin, str(sibling))
    assert response.status_code == 403  # type: ignore[attr-defined]


def test_a_symlink_out_of_the_root_is_refused(
    api: TestClient, accounts: Accounts, root: Path, tmp_path: Path
) -> None:
    outside = _image_folder(tmp_path / "secret")
    os.symlink(outside, root / "link")
    assert _register(api, accounts.admin, str(root / "link")).status_code == 403  # type: ignore[attr-defined]


def test_a_symlink_inside_a_folder_pointing_out_is_refused(
    api: TestClient, accounts: Accounts, root: Path, tmp_path: Path
) -> None:
    folder = _image_folder(root / "pets")
    outside = _image_folder(tmp_path / "secret")
    os.symlink(outside / "cat", folder / "stolen")
    response = _register(api, accounts.admin, str(folder))
    assert response.status_code == 403 and "stolen" in response.json()["detail"]  # type: ignore[attr-defined]


def test_a_symlink_staying_inside_the_root_is_allowed(
    api: TestClient, accounts: Accounts, root: Path
) -> None:
    _image_folder(root / "pets")
    os.symlink(root / "pets", root / "alias")
    assert _register(api, accounts.admin, str(root / "alias")).status_code == 201  # type: ignore[attr-defined]


def test_no_configured_roots_refuses_every_path(
    secure_settings: Settings, accounts: Accounts
) -> None:
    from service.datasets.service import resolve_server_path
    from service.errors import Forbidden

    bare = secure_settings.model_copy(update={"allowed_dataset_roots": []})
    with pytest.raises(Forbidden, match="no dataset roots"):
        resolve_server_path("/tmp", bare)


def test_a_verified_checkpoint_downloads_with_its_checksum(
    api: TestClient, accounts: Accounts, owned: Owned
) -> None:
    import hashlib

    response = api.get(f"/api/v1/searches/{owned.search_id}/checkpoint", headers=accounts.alice)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == response.headers["x-checksum-sha256"]
    assert response.content == owned.checkpoint.read_bytes()


def test_a_tampered_checkpoint_is_refused_and_logged(
    api: TestClient, accounts: Accounts, owned: Owned, caplog: pytest.LogCaptureFixture
) -> None:
    data = bytearray(owned.checkpoint.read_bytes())
    data[-1] ^= 0xFF
    owned.checkpoint.write_bytes(bytes(data))
    response = api.get(f"/api/v1/searches/{owned.search_id}/checkpoint", headers=accounts.alice)
    assert response.status_code == 409 and "hash" in response.json()["detail"]
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_a_checkpoint_recorded_outside_the_store_is_refused(
    api: TestClient, accounts: Accounts, owned: Owned, tmp_path: Path
) -> None:
    from sqlalchemy import update

    from service.db.models import CheckpointRecord

    stray = tmp_path / "elsewhere.safetensors"
    stray.write_bytes(owned.checkpoint.read_bytes())
    with api.app.state.runtime.transaction() as session:  # type: ignore[attr-defined]
        session.execute(update(CheckpointRecord).values(path=str(stray)))
    response = api.get(f"/api/v1/searches/{owned.search_id}/checkpoint", headers=accounts.alice)
    assert response.status_code == 409 and "outside" in response.json()["detail"]
