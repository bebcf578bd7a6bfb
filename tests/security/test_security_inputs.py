"""Hostile input is a 4xx with a clear, strict-JSON message, never a 500: non-finite numbers,
deep nesting, URL chains in server paths, a client hanging up mid-upload; and no 4xx message
names the server's data or temporary folders."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from security_support import Accounts

from search.datasets.archive import STAGING_PREFIX
from service.settings import Settings


def _strict_json(text: str) -> Any:
    """The body parsed as strict JSON (NaN and the infinities are not JSON)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-JSON constant {constant} in the response")

    return json.loads(text, parse_constant=refuse)


def _post_raw(api: TestClient, path: str, raw: str, headers: dict[str, str]) -> Any:
    return api.post(path, content=raw, headers={**headers, "Content-Type": "application/json"})


def _png(colour: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (colour, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_folder(folder: Path, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    for k, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            (folder / name / f"{i}.png").write_bytes(_png(40 * k + i))
    return folder


@pytest.fixture
def root(secure_settings: Settings) -> Path:
    return secure_settings.allowed_dataset_roots[0]


@pytest.fixture
def digits_id(api: TestClient, accounts: Accounts) -> int:
    response = api.post("/api/v1/datasets", json={"source": "digits"}, headers=accounts.alice)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/api/v1/searches", '{"dataset_id": NaN}'),
        ("/api/v1/searches", '{"dataset_id": Infinity}'),
        ("/api/v1/searches", '{"dataset_id": -Infinity}'),
        ("/api/v1/searches", '{"dataset_id": 1, "name": NaN}'),
        ("/api/v1/searches", '{"dataset_id": 1, "spec": NaN}'),
        ("/api/v1/searches", "NaN"),
        ("/api/v1/searches", '[NaN, {"a": [Infinity]}]'),
        ("/api/v1/datasets", '{"source": "digits", "image_size": NaN}'),
        ("/api/v1/datasets", '{"source": NaN}'),
        ("/api/v1/datasets", '{"source": "path", "path": NaN}'),
        ("/api/v1/datasets", '{"source": "digits", "image_size": 1e999}'),
        ("/api/v1/datasets", '{"source": "digits", "download": -Infinity}'),
    ],
)
def test_non_finite_numbers_are_a_422_without_an_echo_of_them(
    api: TestClient, accounts: Accounts, path: str, raw: str
) -> None:
    response = _post_raw(api, path, raw, accounts.alice)
    assert response.status_code == 422, response.text
    detail = _strict_json(response.text)["detail"]
    assert isinstance(detail, list) and detail and all("msg" in e for e in detail)


@pytest.mark.parametrize(
    "spec",
    [
        '{"recipe": {"lr": NaN}}',
        '{"recipe": {"lr": 1e999}}',
        '{"recipe": {"weight_decay": -Infinity}}',
        '{"final_recipe": {"width": NaN}}',
        '{"val_fraction": Infinity}',
        '{"co_search": {"mixup_alpha": {"low": NaN, "high": 1.0}}}',
    ],
)
def test_non_finite_numbers_in_a_search_spec_are_refused_by_name(
    api: TestClient, accounts: Accounts, digits_id: int, spec: str
) -> None:
    raw = f'{{"dataset_id": {digits_id}, "spec": {spec}}}'
    response = _post_raw(api, "/api/v1/searches", raw, accounts.alice)
    assert response.status_code == 422, response.text
    assert "finite number" in _strict_json(response.text)["detail"]


def test_deeply_nested_json_is_a_4xx_at_every_depth(api: TestClient, accounts: Accounts) -> None:
    # Where the parser, the validator and the renderer each reach the recursion limit depends
    # on the stack beneath them: try every depth around it.
    limit = sys.getrecursionlimit()
    for depth in range(limit - 150, limit + 20):
        nested = "[" * depth + "]" * depth
        for raw in (
            nested,
            f'{{"dataset_id": {nested}}}',
            f'{{"source": "digits", "name": {nested}}}',
        ):
            path = "/api/v1/datasets" if "source" in raw else "/api/v1/searches"
            response = _post_raw(api, path, raw, accounts.alice)
            assert response.status_code in (400, 422), (depth, raw[:40], response.text[:200])
            assert _strict_json(response.text)["detail"]


@pytest.mark.parametrize("via", ["chain", "link-to-chain"])
def test_a_url_chain_in_a_server_path_is_refused(
    api: TestClient, accounts: Accounts, root: Path, tmp_path: Path, via: str
) -> None:
    # fsspec reads "<root>/sneaky::x" as "x" inside "<root>/sneaky", a link out of the root,
    # while the literal folder "sneaky::x" lies inside it.
    _image_folder(tmp_path / "secret")
    os.symlink(tmp_path / "secret", root / "sneaky")
    _image_folder(root / "sneaky::x")
    if via == "link-to-chain":
        os.symlink(root / "sneaky::x", root / "alias")
    path = str(root / ("alias" if via == "link-to-chain" else "sneaky::x"))
    response = api.post(
        "/api/v1/datasets", json={"source": "path", "path": path}, headers=accounts.admin
    )
    assert response.status_code == 403, response.text
    assert "plain server path" in response.json()["detail"]


def test_a_server_path_is_named_as_the_user_wrote_it(
    api: TestClient, accounts: Accounts, root: Path
) -> None:
    _image_folder(root / "lonely", classes=("cat",))
    (root / "sub").mkdir()
    written = f"{root}/sub/../lonely"
    response = api.post(
        "/api/v1/datasets", json={"source": "path", "path": written}, headers=accounts.admin
    )
    assert response.status_code == 422, response.text
    assert f"'{written}'" in response.json()["detail"]


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buffer.getvalue()


# Each bad upload, and what its message names instead of a server path.
BAD_UPLOADS = {
    "one class": (_zip([("cat/1.png", _png(1))]), "'pets.zip'"),
    "an empty class": (_zip([("cat/1.png", _png(1)), ("dog/notes.txt", b"x")]), "'pets.zip'"),
    "undecodable image": (
        _zip([("cat/1.png", _png(1)), ("cat/bad.png", b"\x89PNG no"), ("dog/1.png", _png(2))]),
        "bad.png",
    ),
    "missing manifest file": (
        _zip(
            [
                ("manifest.csv", b"path,label\ncat/1.png,cat\ndog/2.png,dog\n"),
                ("cat/1.png", _png(1)),
            ]
        ),
        "'pets.zip/manifest.csv'",
    ),
    "unreadable manifest": (
        _zip([("manifest.csv", b"\xff\xfe\x00,,\n")]),
        "'pets.zip/manifest.csv'",
    ),
    "not an archive": (b"just some bytes", "pets.zip is neither"),
    "splits that differ": (
        _zip(
            [
                ("train/cat/1.png", _png(1)),
                ("train/dog/1.png", _png(2)),
                ("val/cat/1.png", _png(3)),
                ("val/bird/1.png", _png(4)),
            ]
        ),
        "'pets.zip'",
    ),
}


def _server_folders(settings: Settings) -> set[str]:
    folders = {str(settings.data_dir), tempfile.gettempdir()}
    return folders | {os.path.realpath(f) for f in folders}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_no_upload_message_names_a_server_folder(
    api: TestClient, accounts: Accounts, secure_settings: Settings, case: str
) -> None:
    data, named = BAD_UPLOADS[case]
    response = api.post(
        "/api/v1/datasets/upload", files={"file": ("pets.zip", data)}, headers=accounts.alice
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert named in detail, detail
    for leak in (*_server_folders(secure_settings), STAGING_PREFIX, "object at 0x"):
        assert leak not in detail, (leak, detail)


def test_a_missing_torchvision_dataset_does_not_name_the_data_dir(
    api: TestClient, accounts: Accounts, secure_settings: Settings
) -> None:
    body = {"source": "torchvision", "dataset": "CIFAR10"}
    response = api.post("/api/v1/datasets", json=body, headers=accounts.alice)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "data_batch_1.bin" in detail
    for leak in _server_folders(secure_settings):
        assert leak not in detail, (leak, detail)


async def _upload_then_hang_up(app: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Send the start of a multipart upload straight to the ASGI app, then disconnect."""
    boundary = "augsearchboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="pets.zip"\r\nContent-Type: application/zip\r\n\r\n'
    ).encode() + b"\x00" * 100_000
    incoming = [{"type": "http.request", "body": head, "more_body": True}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/datasets/upload",
        "raw_path": b"/api/v1/datasets/upload",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
            (b"transfer-encoding", b"chunked"),
            *raw_headers,
        ],
    }
    await app(scope, receive, send)
    return sent


def test_a_client_hanging_up_mid_upload_is_logged_quietly(
    api: TestClient,
    accounts: Accounts,
    secure_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    caplog.set_level(logging.INFO)
    assert api.portal is not None
    sent = api.portal.call(_upload_then_hang_up, api.app, accounts.alice)
    assert sent and sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("disconnected" in r.getMessage() for r in caplog.records)
    assert list((secure_settings.data_dir / "uploads").iterdir()) == []
    assert list(spool.iterdir()) == []
