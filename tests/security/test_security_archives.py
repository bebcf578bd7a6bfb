"""Hostile archives: each attack is refused before anything is extracted, nothing lands outside
the extraction folder, and the staging folder is removed (also through the upload route)."""

from __future__ import annotations

import io
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from security_support import Accounts

from search.datasets import DatasetError, archive
from search.datasets.archive import extract_archive, extracted_archive


def png(colour: int = 100, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (colour, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(path: Path, members: list[tuple[str, bytes]], mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tf.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tf.addfile(info, io.BytesIO(member[1]))
    return path


def tar_entry(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


ATTACKS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "zip-slip": (lambda d: make_zip(d / "a.zip", [("../evil.png", png())]), "'..'"),
    "zip-slip-nested": (
        lambda d: make_zip(d / "a.zip", [("cat/../../evil.png", png())]),
        "'..'",
    ),
    "zip-absolute": (lambda d: make_zip(d / "a.zip", [("/tmp/evil.png", png())]), "absolute"),
    "zip-windows-drive": (lambda d: make_zip(d / "a.zip", [("C:\\evil.png", png())]), "absolute"),
    "zip-backslash-slip": (lambda d: make_zip(d / "a.zip", [("..\\evil.png", png())]), "'..'"),
    "zip-symlink": (
        lambda d: make_zip(d / "a.zip", [("cat/link", b"/etc/passwd")], mode=0o120777),
        "not a regular file",
    ),
    "zip-duplicate": (
        lambda d: make_zip(d / "a.zip", [("cat/1.png", png()), ("cat//1.png", png(5))]),
        "more than once",
    ),
    "tar-dotdot": (lambda d: make_tar(d / "a.tgz", [("../evil.png", png())]), "'..'"),
    "tar-absolute": (lambda d: make_tar(d / "a.tgz", [("/tmp/evil.png", png())]), "absolute"),
    "tar-symlink": (
        lambda d: make_tar(d / "a.tgz", [tar_entry("cat/x.png", tarfile.SYMTYPE, "/etc/passwd")]),
        "not a regular file",
    ),
    "tar-symlink-then-file": (
        lambda d: make_tar(
            d / "a.tgz",
            [tar_entry("cat", tarfile.SYMTYPE, "/tmp"), ("cat/evil.png", png())],
        ),
        "not a regular file",
    ),
    "tar-hardlink": (
        lambda d: make_tar(d / "a.tgz", [tar_entry("cat/x.png", tarfile.LNKTYPE, "/etc/passwd")]),
        "not a regular file",
    ),
    "tar-char-device": (
        lambda d: make_tar(d / "a.tgz", [tar_entry("cat/null", tarfile.CHRTYPE)]),
        "not a regular file",
    ),
    "tar-block-device": (
        lambda d: make_tar(d / "a.tgz", [tar_entry("cat/sda", tarfile.BLKTYPE)]),
        "not a regular file",
    ),
    "tar-fifo": (
        lambda d: make_tar(d / "a.tgz", [tar_entry("cat/pipe", tarfile.FIFOTYPE)]),
        "not a regular file",
    ),
    "tar-duplicate": (
        lambda d: make_tar(d / "a.tgz", [("cat/1.png", png()), ("cat/./1.png", png(5))]),
        "more than once",
    ),
    "zip-bomb-ratio": (
        lambda d: make_zip(d / "a.zip", [("cat/big.png", bytes(20 * 1024 * 1024))]),
        "compression ratio",
    ),
    "tar-bomb-ratio": (
        lambda d: make_tar(d / "a.tgz", [("cat/big.png", bytes(20 * 1024 * 1024))]),
        "decompression bomb",
    ),
    "not-an-archive": (lambda d: _write(d / "a.zip", b"plain text, not an archive"), "neither"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if not p.is_dir()]


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_refused_before_anything_is_written(tmp_path: Path, attack: str) -> None:
    build, needle = ATTACKS[attack]
    source = tmp_path / "src"
    source.mkdir()
    path = build(source)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DatasetError, match=needle):
        extract_archive(path, dest)
    assert _files_under(dest) == []
    assert not (tmp_path / "evil.png").exists()


def test_too_many_entries(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "a.zip", [(f"cat/{i}.png", b"x") for i in range(30)])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DatasetError, match="more than 20 entries"):
        extract_archive(path, dest, max_entries=20)
    assert _files_under(dest) == []


def test_too_large_in_total(tmp_path: Path) -> None:
    members: list[tarfile.TarInfo | tuple[str, bytes]] = [
        (f"cat/{i}.png", bytes(range(256)) * 64) for i in range(8)
    ]
    path = make_tar(tmp_path / "a.tgz", members)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DatasetError, match="more than 100000 bytes"):
        extract_archive(path, dest, max_bytes=100_000)
    assert _files_under(dest) == []


def test_a_zip_member_lying_about_its_size_is_caught(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "a.zip", [("cat/1.png", png()), ("dog/1.png", bytes(4096))])
    raw = bytearray(path.read_bytes())
    # Patch the central directory's uncompressed size of the second member down to 10 bytes.
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[1]
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 24 : central + 28] = (10).to_bytes(4, "little")
    assert info.file_size == 4096
    path.write_bytes(bytes(raw))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DatasetError):
        extract_archive(path, dest)


def test_staging_folder_is_removed_on_success_and_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging_parent = tmp_path / "tmp"
    staging_parent.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging_parent))
    good = make_zip(tmp_path / "good.zip", [("cat/1.png", png()), ("dog/1.png", png(9))])
    with extracted_archive(str(good)) as root:
        assert sorted(p.name for p in root.iterdir()) == ["cat", "dog"]
    assert list(staging_parent.iterdir()) == []
    bad = make_zip(tmp_path / "bad.zip", [("cat/1.png", png()), ("../evil.png", png())])
    with pytest.raises(DatasetError), extracted_archive(str(bad)):
        pass
    assert list(staging_parent.iterdir()) == []


@pytest.mark.parametrize("attack", ["zip-slip", "tar-symlink", "tar-hardlink", "zip-duplicate"])
def test_upload_of_a_hostile_archive_answers_422_and_leaves_nothing(
    api: TestClient,
    accounts: Accounts,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    attack: str,
) -> None:
    staging_parent = tmp_path / "tmp"
    staging_parent.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging_parent))
    source = tmp_path / "src"
    source.mkdir()
    path = ATTACKS[attack][0](source)
    response = api.post(
        "/api/v1/datasets/upload",
        files={"file": (path.name, path.read_bytes())},
        headers=accounts.alice,
    )
    assert response.status_code == 422, response.text
    assert "archive" in response.json()["detail"]
    data_dir = api.app.state.runtime.settings.data_dir  # type: ignore[attr-defined]
    assert list((data_dir / "uploads").iterdir()) == []
    assert list(staging_parent.iterdir()) == []
    assert not (tmp_path / "evil.png").exists() and not (data_dir / "evil.png").exists()


def test_upload_names_every_undecodable_image(api: TestClient, accounts: Accounts) -> None:
    members = [("cat/1.png", png()), ("cat/broken.png", b"\x89PNG not really"),
               ("dog/1.png", png(7)), ("dog/trunc.jpg", png()[:20])]  # fmt: skip
    data = make_zip(Path(tempfile.mkdtemp()) / "a.zip", members).read_bytes()
    response = api.post(
        "/api/v1/datasets/upload", files={"file": ("a.zip", data)}, headers=accounts.alice
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "broken.png" in detail and "trunc.jpg" in detail and "2 image file(s)" in detail


def test_upload_refuses_a_decompression_bomb_image(
    api: TestClient, accounts: Accounts, tmp_path: Path
) -> None:
    bomb = io.BytesIO()
    Image.new("1", (9600, 9600)).save(bomb, format="PNG")  # 92 Mpixel, a few kB on disk
    members = [("cat/bomb.png", bomb.getvalue()), ("dog/1.png", png())]
    data = make_zip(tmp_path / "a.zip", members).read_bytes()
    assert len(data) < 100_000
    response = api.post(
        "/api/v1/datasets/upload", files={"file": ("a.zip", data)}, headers=accounts.alice
    )
    assert response.status_code == 422
    assert "bomb.png" in response.json()["detail"]


def test_a_good_upload_is_registered(api: TestClient, accounts: Accounts, tmp_path: Path) -> None:
    members = [(f"{c}/{i}.png", png(40 * i + k)) for k, c in enumerate("ab") for i in range(3)]
    data = make_zip(tmp_path / "a.zip", members).read_bytes()
    response = api.post(
        "/api/v1/datasets/upload",
        files={"file": ("pets.zip", data)},
        data={"image_size": "16"},
        headers=accounts.alice,
    )
    assert response.status_code == 201, response.text
    assert response.json()["num_images"] == 6 and response.json()["image_size"] == 16


def test_archive_limits_are_read_at_extraction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "MAX_ENTRIES", 3)
    path = make_zip(tmp_path / "a.zip", [(f"cat/{i}.png", png()) for i in range(5)])
    with pytest.raises(DatasetError, match="more than 3 entries"), extracted_archive(str(path)):
        pass
