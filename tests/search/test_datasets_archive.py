"""Archives of image folders: real zip and tar files, and every unsafe member refused."""

from __future__ import annotations

import io
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from search.datasets import ArchiveSpec, DatasetError, ImageFolderSpec, load_dataset
from search.datasets.archive import extract_archive

FolderWriter = Callable[..., Path]


@pytest.fixture
def folder(tmp_path: Path, write_folder: FolderWriter) -> Path:
    return write_folder(tmp_path / "src" / "wrapped", {"cat": 3, "dog": 2})


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Staging folders go under the test's own folder, so leftovers can be checked."""
    staging = tmp_path / "staging"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    return staging


def _zip_folder(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, f.relative_to(folder.parent).as_posix())
    return dest


def _archive_spec(path: Path) -> ArchiveSpec:
    return ArchiveSpec(path=str(path))


def test_zip_of_wrapped_folder_matches_the_folder(
    folder: Path, tmp_path: Path, private_tempdir: Path
) -> None:
    archive = _zip_folder(folder, tmp_path / "set.zip")
    ds = load_dataset(_archive_spec(archive))
    direct = load_dataset(ImageFolderSpec(path=str(folder)))
    assert ds.classes == ["cat", "dog"] and ds.content_hash == direct.content_hash
    assert list(private_tempdir.iterdir()) == []


def test_tar_gz_loads(folder: Path, tmp_path: Path) -> None:
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for class_dir in sorted(folder.iterdir()):
            tf.add(class_dir, arcname=class_dir.name)
    assert load_dataset(_archive_spec(archive)).counts_per_class() == {"cat": 3, "dog": 2}


def _tar_with(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tf:
        tf.addfile(member, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("../escape.png", tarfile.REGTYPE, r"'\.\.'"),
        ("/etc/evil.png", tarfile.REGTYPE, "absolute"),
        ("a/link.png", tarfile.SYMTYPE, "not a regular file"),
        ("a/hard.png", tarfile.LNKTYPE, "not a regular file"),
        ("a/device", tarfile.CHRTYPE, "not a regular file"),
        ("a/fifo", tarfile.FIFOTYPE, "not a regular file"),
    ],
)
def test_unsafe_tar_members_are_refused(
    tmp_path: Path, private_tempdir: Path, name: str, kind: bytes, message: str
) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    data = b"x" if kind == tarfile.REGTYPE else b""
    member.size = len(data)
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        member.linkname = "/etc/passwd"
    with pytest.raises(DatasetError, match=message):
        load_dataset(_archive_spec(_tar_with(tmp_path, member, data)))
    assert not (tmp_path / "escape.png").exists()
    assert list(private_tempdir.iterdir()) == []


def test_zip_slip_is_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "slip.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("cat/ok.png", b"fine")
        zf.writestr("../../outside.txt", b"gotcha")
    with pytest.raises(DatasetError, match=r"'\.\.'"):
        load_dataset(_archive_spec(path))
    assert not (tmp_path.parent / "outside.txt").exists()


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "link.zip"
    info = zipfile.ZipInfo("cat/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DatasetError, match="not a regular file"):
        load_dataset(_archive_spec(path))


def test_entry_and_size_caps(folder: Path, tmp_path: Path) -> None:
    archive = _zip_folder(folder, tmp_path / "set.zip")
    (tmp_path / "a").mkdir()
    with pytest.raises(DatasetError, match="more than 3 entries"):
        extract_archive(archive, tmp_path / "a", max_entries=3)
    (tmp_path / "b").mkdir()
    with pytest.raises(DatasetError, match="more than 100 bytes"):
        extract_archive(archive, tmp_path / "b", max_bytes=100)


def test_zip_bomb_ratio_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cat/zeros.png", b"\0" * (4 << 20))
    with pytest.raises(DatasetError, match="compression ratio"):
        load_dataset(_archive_spec(path))


def test_not_an_archive_and_missing_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"plain text, not an archive")
    with pytest.raises(DatasetError, match="neither a zip nor a tar"):
        load_dataset(_archive_spec(junk))
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(_archive_spec(tmp_path / "absent.zip"))


def test_tar_entry_cap_stops_listing(tmp_path: Path) -> None:
    path = tmp_path / "many.tar"
    with tarfile.open(path, "w") as tf:
        for i in range(6):
            member = tarfile.TarInfo(f"c{i % 2}/f{i}.png")
            tf.addfile(member)
    (tmp_path / "out").mkdir()
    with pytest.raises(DatasetError, match="more than 5 entries"):
        extract_archive(path, tmp_path / "out", max_entries=5)
    assert list((tmp_path / "out").iterdir()) == []
