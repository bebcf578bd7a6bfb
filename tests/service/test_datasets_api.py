"""The datasets API in-process against a real database."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from service.settings import Settings


def _png(colour: tuple[int, int, int], size: int = 12) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_folder(root: Path) -> Path:
    for cls, colour in (("cat", (200, 10, 10)), ("dog", (10, 10, 200))):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.png").write_bytes(_png((colour[0], colour[1] + i, colour[2])))
    return root


def test_register_digits_records_decoded_statistics(digits: dict[str, object]) -> None:
    assert digits["source"] == "digits"
    assert digits["num_images"] == 1797
    assert digits["image_size"] == 32
    assert digits["channels"] == 1
    counts = digits["counts_per_class"]
    assert isinstance(counts, dict) and sum(counts.values()) == 1797 and len(counts) == 10
    assert len(str(digits["content_hash"])) == 64


def test_list_show_and_paginate(client: TestClient, digits: dict[str, object]) -> None:
    client.post("/api/v1/datasets", json={"source": "digits", "name": "second"})
    page = client.get("/api/v1/datasets", params={"limit": 1}).json()
    assert page["total"] == 2 and len(page["items"]) == 1
    assert page["items"][0]["name"] == "second"
    shown = client.get(f"/api/v1/datasets/{digits['id']}").json()
    assert shown["counts_per_class"] == digits["counts_per_class"]


def test_unknown_ids_and_fields(client: TestClient) -> None:
    missing = client.get("/api/v1/datasets/999")
    assert missing.status_code == 404 and "999" in missing.json()["detail"]
    bad = client.post("/api/v1/datasets", json={"source": "digits", "owner_id": 5})
    assert bad.status_code == 422
    incomplete = client.post("/api/v1/datasets", json={"source": "torchvision"})
    assert incomplete.status_code == 422
    too_big = client.get("/api/v1/datasets", params={"limit": 101})
    assert too_big.status_code == 422 and "100" in too_big.json()["detail"]


def test_samples_png_is_a_grid(client: TestClient, digits: dict[str, object]) -> None:
    response = client.get(f"/api/v1/datasets/{digits['id']}/samples.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (8 * 32, 10 * 32)
    again = client.get(f"/api/v1/datasets/{digits['id']}/samples.png")
    assert again.content == response.content


def test_server_path_inside_root_is_decoded(client: TestClient, settings: Settings) -> None:
    folder = _image_folder(settings.allowed_dataset_roots[0] / "pets")
    response = client.post("/api/v1/datasets", json={"source": "path", "path": str(folder)})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["counts_per_class"] == {"cat": 3, "dog": 3}
    assert body["channels"] == 3 and body["image_size"] == 12


def test_server_path_escapes_are_refused(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    outside = _image_folder(tmp_path / "outside")
    root = settings.allowed_dataset_roots[0]
    (root / "link").symlink_to(outside)
    for path in (str(outside), str(root / ".." / "outside"), str(root / "link")):
        response = client.post("/api/v1/datasets", json={"source": "path", "path": path})
        assert response.status_code == 403, path
        assert "outside the allowed" in response.json()["detail"]


def test_upload_zip_archive(client: TestClient, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for cls, colour in (("a", (250, 0, 0)), ("b", (0, 250, 0))):
            for i in range(2):
                archive.writestr(f"shapes/{cls}/{i}.png", _png(colour))
    files = {"file": ("shapes.zip", buffer.getvalue(), "application/zip")}
    response = client.post("/api/v1/datasets/upload", files=files, data={"name": "shapes"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "shapes" and body["source"] == "archive"
    assert body["counts_per_class"] == {"a": 2, "b": 2}


def test_upload_refuses_non_archives_and_oversized_bodies(
    client: TestClient, settings: Settings
) -> None:
    files = {"file": ("notes.txt", b"hello", "text/plain")}
    assert client.post("/api/v1/datasets/upload", files=files).status_code == 422
    settings.max_upload_bytes = 1000
    big = {"file": ("big.zip", b"x" * 5000, "application/zip")}
    response = client.post("/api/v1/datasets/upload", files=big)
    assert response.status_code == 413
    assert not any((settings.data_dir / "uploads").iterdir())


def test_delete_dataset(client: TestClient, digits: dict[str, object]) -> None:
    assert client.delete(f"/api/v1/datasets/{digits['id']}").status_code == 204
    assert client.get(f"/api/v1/datasets/{digits['id']}").status_code == 404
