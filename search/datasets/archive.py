"""Safe extraction of an uploaded zip or tar archive of an image folder.

Every member is checked before anything is written: regular files and directories only (no
symbolic or hard links, devices or FIFOs), relative names without ``..``, no name twice (after
normalisation), a cap on the number of entries, on the total size and on the compression ratio
(per zip member and for the whole archive). Extraction streams each member into a fresh, empty
temporary folder and counts the bytes really written, so a member that lies about its size is
caught. The limits are read when an archive is extracted, so an operator may lower them.
"""

from __future__ import annotations

import functools
import gzip
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

import fsspec

from search.datasets.dataset import DatasetError

MAX_ENTRIES = 200_000
MAX_TOTAL_BYTES = 8 * 1024**3
# A zip member that claims to expand more than this many times its compressed size is a bomb.
MAX_COMPRESSION_RATIO = 250
# The whole archive may expand at most this many times its size once it is past RATIO_FLOOR
# bytes (images are already compressed; a ratio like this only comes from padding).
MAX_ARCHIVE_RATIO = 100
RATIO_FLOOR = 16 * 1024**2
_CHUNK = 1 << 20
#: Name prefix of the temporary folder an archive is extracted into.
STAGING_PREFIX = "augsearch-archive-"


def check_relative_name(
    name: str, what: str = "archive member", root: str = "the archive root"
) -> PurePosixPath:
    """A member name (or a manifest's image path) as a relative path that stays inside its root.

    Args:
        name: the name as written.
        what: what the name is, for the error message.
        root: what the name is relative to, for the error message.

    Raises:
        DatasetError: an empty name, a NUL byte, an absolute path or a ``..`` part.
    """
    if not name or "\x00" in name:
        raise DatasetError(f"{what} with an invalid name: {name!r}")
    normalised = name.replace("\\", "/")
    pure = PurePosixPath(normalised)
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise DatasetError(f"{what} with an absolute path: {name!r}")
    if not pure.parts or pure.parts == (".",):
        raise DatasetError(f"{what} without a name: {name!r}")
    if ".." in pure.parts:
        raise DatasetError(f"{what} escaping {root} with '..': {name!r}")
    return pure


def _check_budget(count: int, total: int, max_entries: int, max_bytes: int) -> None:
    if count > max_entries:
        raise DatasetError(f"archive has more than {max_entries} entries")
    if total > max_bytes:
        raise DatasetError(f"archive expands to more than {max_bytes} bytes")


def _check_ratio(total: int, archive_size: int) -> None:
    if total > RATIO_FLOOR and total > MAX_ARCHIVE_RATIO * max(1, archive_size):
        raise DatasetError(
            f"archive of {archive_size} bytes expands to more than {total} bytes "
            f"(over {MAX_ARCHIVE_RATIO} times its size): refused as a decompression bomb"
        )


def _check_unique(seen: set[PurePosixPath], pure: PurePosixPath, name: str) -> None:
    # PurePosixPath folds "a//b" and "a/./b" into "a/b": both would land on the same file.
    if pure in seen:
        raise DatasetError(f"archive member {name!r} appears more than once")
    seen.add(pure)


def _copy_counted(src: IO[bytes], dest: Path, limit: int, name: str) -> int:
    written = 0
    with open(dest, "xb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                raise DatasetError(f"archive member {name!r} is larger than it declares")
            out.write(chunk)
    return written


def _write_member(
    root: Path, name: str, is_dir: bool, size: int, open_src: Callable[[], IO[bytes] | None]
) -> int:
    """Create one checked member under ``root``; returns the bytes written."""
    target = _target(root, check_relative_name(name))
    if is_dir:
        target.mkdir(parents=True, exist_ok=True)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    src = open_src()
    if src is None:
        raise DatasetError(f"archive member {name!r} cannot be read")
    with src:
        return _copy_counted(src, target, size, name)


def _target(root: Path, pure: PurePosixPath) -> Path:
    target = (root / Path(*pure.parts)).resolve()
    if not target.is_relative_to(root):
        raise DatasetError(f"archive member resolves outside the extraction folder: {pure}")
    return target


def _extract_zip(
    archive: zipfile.ZipFile, root: Path, max_entries: int, max_bytes: int, size: int
) -> None:
    members = archive.infolist()
    _check_budget(len(members), 0, max_entries, max_bytes)
    total = 0
    seen: set[PurePosixPath] = set()
    for info in members:
        pure = check_relative_name(info.filename)
        _check_unique(seen, pure, info.filename)
        # Unix type bits live in the high half; zero means "no type recorded" (a plain file).
        file_type = stat.S_IFMT(info.external_attr >> 16)
        if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise DatasetError(f"archive member is not a regular file or folder: {pure}")
        ratio = info.file_size / max(1, info.compress_size)
        if info.file_size > 1 << 16 and ratio > MAX_COMPRESSION_RATIO:
            raise DatasetError(f"archive member {pure} has a suspicious compression ratio")
        total += info.file_size
    _check_budget(len(members), total, max_entries, max_bytes)
    _check_ratio(total, size)
    written = 0
    for info in members:
        opener = functools.partial(archive.open, info)
        written += _write_member(root, info.filename, info.is_dir(), info.file_size, opener)
        _check_budget(0, written, max_entries, max_bytes)


def _extract_tar(
    archive: tarfile.TarFile, root: Path, max_entries: int, max_bytes: int, size: int
) -> None:
    members: list[tarfile.TarInfo] = []
    total = 0
    seen: set[PurePosixPath] = set()
    # Iterated rather than getmembers(), and every limit checked inside the loop: a hostile
    # archive is stopped at the header that breaks a limit, before its data is decompressed.
    for member in archive:
        members.append(member)
        _check_budget(len(members), 0, max_entries, max_bytes)
        pure = check_relative_name(member.name)
        if not (member.isreg() or member.isdir()):
            raise DatasetError(f"archive member is not a regular file or folder: {pure}")
        _check_unique(seen, pure, member.name)
        total += member.size
        _check_budget(len(members), total, max_entries, max_bytes)
        _check_ratio(total, size)
    for member in members:
        opener = functools.partial(archive.extractfile, member)
        _write_member(root, member.name, member.isdir(), member.size, opener)


def extract_archive(
    archive_path: Path,
    dest: Path,
    *,
    max_entries: int | None = None,
    max_bytes: int | None = None,
) -> None:
    """Validate and extract a zip or tar archive into the empty folder ``dest``.

    Args:
        archive_path: The archive.
        dest: An existing, empty folder.
        max_entries: Most members (default ``MAX_ENTRIES``).
        max_bytes: Most bytes once extracted (default ``MAX_TOTAL_BYTES``).

    Raises:
        DatasetError: an unsafe or oversized member, or a file that is neither zip nor tar.
    """
    entries = MAX_ENTRIES if max_entries is None else max_entries
    limit = MAX_TOTAL_BYTES if max_bytes is None else max_bytes
    root = dest.resolve()
    if any(root.iterdir()):
        raise DatasetError(f"extraction folder {dest} is not empty")
    size = archive_path.stat().st_size
    try:
        if zipfile.is_zipfile(archive_path):
            with zipfile.ZipFile(archive_path) as zf:
                _extract_zip(zf, root, entries, limit, size)
        elif tarfile.is_tarfile(archive_path):
            with tarfile.open(archive_path, mode="r:*") as tf:
                _extract_tar(tf, root, entries, limit, size)
        else:
            raise DatasetError(f"{archive_path.name} is neither a zip nor a tar archive")
    except (NotImplementedError, RuntimeError) as exc:  # encrypted or exotic zip members
        raise DatasetError(f"archive {archive_path.name} cannot be read: {exc}") from exc
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetError(f"archive {archive_path.name} is damaged: {exc}") from exc


def dataset_root(extracted: Path) -> Path:
    """Descend through single wrapping folders (``data/cat/1.png`` -> ``data``).

    A folder is unwrapped while it holds exactly one visible entry, a folder, and that folder
    has no files of its own (otherwise it would be a lone class).
    """
    root = extracted
    while True:
        entries = [e for e in root.iterdir() if not e.name.startswith((".", "__MACOSX"))]
        if len(entries) != 1 or not entries[0].is_dir():
            return root
        if any(child.is_file() for child in entries[0].iterdir()):
            return root
        root = entries[0]


@contextmanager
def extracted_archive(path: str) -> Iterator[Path]:
    """Copy (if remote), validate and extract an archive; yield the image-folder root.

    The temporary folder is removed on exit.
    """
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX))
    try:
        fs, remote = fsspec.core.url_to_fs(path)
        if not fs.isfile(remote):
            raise DatasetError(f"archive {path!r} does not exist")
        if "file" in fs.protocol:
            local = Path(remote)
        else:
            local = staging / "upload"
            fs.get_file(remote, str(local))
        dest = staging / "tree"
        dest.mkdir()
        extract_archive(local, dest)
        yield dataset_root(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
