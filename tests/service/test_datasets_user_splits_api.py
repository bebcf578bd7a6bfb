"""Validation the user controls, through the REST API: uploaded split folders, manifests."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from search.datasets import SPLIT_CODES, load_dataset, parse_dataset_spec
from service.settings import Settings


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (10, 10), value).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _upload(client: TestClient, name: str, data: bytes) -> tuple[int, dict[str, object]]:
    files = {"file": (name, data, "application/zip")}
    response = client.post("/api/v1/datasets/upload", files=files)
    return response.status_code, response.json()


def _split_members(splits: dict[str, tuple[str, ...]]) -> dict[str, bytes]:
    members = {}
    value = 0
    for split, classes in splits.items():
        for cls in classes:
            for i in range(2):
                value += 7
                members[f"pets/{split}/{cls}/{i}.png"] = _png(value)
    return members


def test_upload_with_train_val_and_test_folders_keeps_the_splits(
    client: TestClient, settings: Settings
) -> None:
    members = _split_members(
        {"train": ("cat", "dog"), "val": ("cat", "dog"), "test": ("cat", "dog")}
    )
    status, body = _upload(client, "pets.zip", _zip(members))
    assert status == 201, body
    assert body["classes"] == ["cat", "dog"] and body["num_images"] == 12
    spec = body["spec"]
    assert isinstance(spec, dict) and spec["source"] == "archive"
    ds = load_dataset(parse_dataset_spec(spec), cache_dir=settings.data_dir / "cache")
    assert ds.splits is not None
    assert sorted(ds.splits.tolist()) == [
        SPLIT_CODES[s] for s in ("train", "val", "test") for _ in range(4)
    ]


def test_upload_whose_splits_have_other_classes_is_refused(client: TestClient) -> None:
    members = _split_members({"train": ("cat", "dog"), "val": ("cat", "fox")})
    status, body = _upload(client, "pets.zip", _zip(members))
    assert status == 422
    assert "only in train/: dog; only in val/: fox" in str(body["detail"])


def test_upload_of_a_manifest_archive(client: TestClient) -> None:
    members = {f"img/{i}.png": _png(20 * i) for i in range(6)}
    rows = [f"img/{i}.png,{'ab'[i % 2]},g{i // 2},{'val' if i == 0 else 'train'}" for i in range(6)]
    members["manifest.csv"] = ("path,label,group,split\n" + "\n".join(rows) + "\n").encode()
    status, body = _upload(client, "table.zip", _zip(members))
    assert status == 201, body
    assert body["counts_per_class"] == {"a": 3, "b": 3}


def _manifest_folder(root: Path, lines: list[str]) -> Path:
    (root / "img").mkdir(parents=True)
    for i in range(4):
        (root / "img" / f"{i}.png").write_bytes(_png(40 * i))
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


GOOD = [
    "path,label,split",
    "img/0.png,a,train",
    "img/1.png,b,train",
    "img/2.png,a,val",
    "img/3.png,b,test",
]


def test_register_a_manifest_under_an_allowed_root(client: TestClient, settings: Settings) -> None:
    manifest = _manifest_folder(settings.allowed_dataset_roots[0] / "plants", GOOD)
    response = client.post("/api/v1/datasets", json={"source": "manifest", "path": str(manifest)})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "plants" and body["source"] == "manifest"
    assert body["counts_per_class"] == {"a": 2, "b": 2}


def test_bad_manifests_give_clear_422s(client: TestClient, settings: Settings) -> None:
    root = settings.allowed_dataset_roots[0]
    cases = {
        "nolabel": (["path,split", "img/0.png,train"], "lacks the column(s) label"),
        "badsplit": ([*GOOD[:4], "img/3.png,b,holdout"], "unknown split value(s) 'holdout'"),
        "escape": ([*GOOD[:4], "../nolabel/img/0.png,b,test"], "escaping the manifest's folder"),
    }
    for name, (lines, message) in cases.items():
        manifest = _manifest_folder(root / name, lines)
        body = {"source": "manifest", "path": str(manifest)}
        response = client.post("/api/v1/datasets", json=body)
        assert response.status_code == 422, (name, response.text)
        assert message in response.json()["detail"], name
    not_a_manifest = client.post(
        "/api/v1/datasets", json={"source": "manifest", "path": str(root / "nolabel" / "img")}
    )
    assert not_a_manifest.status_code == 422
    assert "not a manifest file" in not_a_manifest.json()["detail"]
    assert client.post("/api/v1/datasets", json={"source": "manifest"}).status_code == 422


def test_manifest_outside_the_roots_is_forbidden(client: TestClient, tmp_path: Path) -> None:
    manifest = _manifest_folder(tmp_path / "outside", GOOD)
    response = client.post("/api/v1/datasets", json={"source": "manifest", "path": str(manifest)})
    assert response.status_code == 403
    assert "outside the allowed" in response.json()["detail"]
