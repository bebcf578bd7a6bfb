"""A manifest: a CSV or Parquet table that lists the image files of a dataset.

Columns (any others are ignored):

* ``path``: the image file, relative to the manifest's folder. Checked as archive members are
  (no absolute path, no ``..`` part, no NUL byte); on a local disk its real path, links
  resolved, must also stay inside that folder. No file may be listed twice.
* ``label``: the class name. Classes are sorted, numerically when every label is an integer.
* ``group`` (optional): a group id on every row (a patient, a camera, a site). The search then
  holds out whole groups for validation (and test), as it does with the typefaces of ``fonts``.
* ``split`` (optional): ``train``, ``val`` or ``test`` on every row, fixing each image's split.
  Every class needs training images; ``test`` images are never seen by the search.

Row numbers in messages count data rows from 1 (the header is not a row). A manifest holds at
most ``archive.MAX_ENTRIES`` rows; images are decoded by the image-folder rules and limits. A
CSV is read as UTF-8 (a leading byte-order mark is skipped).
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import torch

from search.datasets import archive
from search.datasets.dataset import SPLIT_CODES, DatasetError, ImageDataset, make_dataset
from search.datasets.imagefolder import decode_images, files_fingerprint
from search.datasets.limits import DEFAULT_LIMITS, DecodeLimits

MANIFEST_FILES = ("manifest.csv", "manifest.parquet")
REQUIRED_COLUMNS = ("path", "label")
COLUMNS = (*REQUIRED_COLUMNS, "group", "split")
_LISTED = 10


@dataclass(frozen=True)
class ManifestFiles:
    """The files a manifest lists (resolved), with the filesystem that holds them."""

    fs: Any
    manifest: str
    paths: list[str]
    labels: list[str]
    groups: list[str] | None
    splits: list[str] | None


def _rows(numbers: list[int]) -> str:
    """``row 3`` or ``rows 3, 7 and 12 more``."""
    more = f" and {len(numbers) - _LISTED} more" if len(numbers) > _LISTED else ""
    word = "row" if len(numbers) == 1 else "rows"
    return f"{word} " + ", ".join(str(n) for n in numbers[:_LISTED]) + more


def _check_columns(path: str, names: list[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise DatasetError(
            f"manifest {path!r} lacks the column(s) {', '.join(missing)}; it has: "
            f"{', '.join(names) or 'no columns'} (needed: path, label; optional: group, split)"
        )


def _too_many(path: str) -> DatasetError:
    return DatasetError(f"manifest {path!r} has more than {archive.MAX_ENTRIES} rows")


def _read_csv(fs: Any, path: str) -> dict[str, list[str]]:
    with fs.open(path, "r", encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        _check_columns(path, header)
        where = {c: header.index(c) for c in COLUMNS if c in header}
        columns: dict[str, list[str]] = {c: [] for c in where}
        for row in reader:
            if not row:  # a blank line
                continue
            if len(columns["path"]) >= archive.MAX_ENTRIES:
                raise _too_many(path)
            if len(row) != len(header):
                raise DatasetError(
                    f"manifest {path!r} row {len(columns['path']) + 1} has {len(row)} fields, "
                    f"the header {len(header)}"
                )
            for column, i in where.items():
                columns[column].append(row[i].strip())
    return columns


def _read_parquet(fs: Any, path: str) -> dict[str, list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as handle:
        try:
            parquet = pq.ParquetFile(handle)
            names = list(parquet.schema_arrow.names)
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"manifest {path!r} cannot be read as Parquet: {exc}") from exc
        _check_columns(path, names)
        if parquet.metadata.num_rows > archive.MAX_ENTRIES:
            raise _too_many(path)
        table = parquet.read(columns=[c for c in COLUMNS if c in names])
    return {
        name: ["" if v is None else str(v).strip() for v in table.column(name).to_pylist()]
        for name in table.column_names
    }


def _read_table(fs: Any, path: str) -> dict[str, list[str]]:
    lower = path.lower()
    try:
        if lower.endswith(".csv"):
            return _read_csv(fs, path)
        if lower.endswith(".parquet"):
            return _read_parquet(fs, path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"manifest {path!r} cannot be read as CSV: {exc}") from exc
    raise DatasetError(f"manifest {path!r} must be a .csv or .parquet file")


def _check_cells(path: str, columns: dict[str, list[str]]) -> None:
    if not columns["path"]:
        raise DatasetError(f"manifest {path!r} lists no images")
    for name, values in columns.items():
        empty = [n for n, v in enumerate(values, 1) if not v]
        if empty:
            raise DatasetError(f"manifest {path!r} has empty {name!r} cells in {_rows(empty)}")
    splits = columns.get("split")
    if splits is not None:
        bad = [n for n, v in enumerate(splits, 1) if v not in SPLIT_CODES]
        if bad:
            values = sorted({splits[n - 1] for n in bad})
            raise DatasetError(
                f"manifest {path!r} has unknown split value(s) "
                f"{', '.join(repr(v) for v in values)} in {_rows(bad)}; use train, val or test"
            )


def _resolve(fs: Any, path: str, names: list[str]) -> list[str]:
    """The full path of every listed file, checked to stay inside the manifest's folder."""
    local = "file" in fs.protocol
    folder = os.path.realpath(os.path.dirname(path)) if local else path.rsplit("/", 1)[0]
    seen: dict[PurePosixPath, int] = {}
    resolved: list[str] = []
    for n, name in enumerate(names, 1):
        pure = archive.check_relative_name(
            name, what=f"manifest path (row {n})", root="the manifest's folder"
        )
        if pure in seen:
            raise DatasetError(f"manifest {path!r} lists {name!r} twice (rows {seen[pure]}, {n})")
        seen[pure] = n
        full = f"{folder}/{pure.as_posix()}"
        if local:
            full = os.path.realpath(full)
            if not Path(full).is_relative_to(folder):
                raise DatasetError(
                    f"manifest path (row {n}) resolves outside the manifest's folder: {name!r}"
                )
        resolved.append(full)
    missing = [n for n, p in enumerate(resolved, 1) if not fs.isfile(p)]
    if missing:
        listed = ", ".join(repr(names[n - 1]) for n in missing[:_LISTED])
        raise DatasetError(
            f"manifest {path!r} lists {len(missing)} missing file(s) ({_rows(missing)}): {listed}"
        )
    return resolved


def list_manifest(path: str) -> ManifestFiles:
    """Read and check a manifest and the files it lists (see the module rules).

    Raises:
        DatasetError: the message names the missing column, the bad rows or files.
    """
    fs, manifest = fsspec.core.url_to_fs(path)
    if not fs.isfile(manifest):
        raise DatasetError(f"manifest {path!r} does not exist or is not a file")
    columns = _read_table(fs, manifest)
    _check_cells(path, columns)
    return ManifestFiles(
        fs=fs,
        manifest=manifest,
        paths=_resolve(fs, manifest, columns["path"]),
        labels=columns["label"],
        groups=columns.get("group"),
        splits=columns.get("split"),
    )


def _names(values: list[str]) -> list[str]:
    unique = set(values)
    if all(v.lstrip("-").isdigit() for v in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def _ids(values: list[str], names: list[str]) -> torch.Tensor:
    index = {name: i for i, name in enumerate(names)}
    return torch.tensor([index[v] for v in values], dtype=torch.int64)


def _check_training_classes(path: str, labels: list[str], splits: list[str]) -> None:
    trained = {label for label, split in zip(labels, splits, strict=True) if split == "train"}
    untrained = sorted(set(labels) - trained)
    if untrained:
        raise DatasetError(
            f"manifest {path!r}: classes without 'train' rows: {', '.join(untrained)}"
        )


def load_manifest(
    path: str, image_size: int | None = None, limits: DecodeLimits = DEFAULT_LIMITS
) -> ImageDataset:
    """Decode the images a manifest lists into an :class:`ImageDataset`."""
    files = list_manifest(path)
    classes = _names(files.labels)
    if len(classes) < 2:
        raise DatasetError(
            f"manifest {path!r} has {len(classes)} class(es) {classes}; "
            "a classification dataset needs at least 2"
        )
    splits = None
    if files.splits is not None:
        _check_training_classes(path, files.labels, files.splits)
        splits = torch.tensor([SPLIT_CODES[s] for s in files.splits], dtype=torch.int64)
    groups, group_names = None, None
    if files.groups is not None:
        group_names = _names(files.groups)
        groups = _ids(files.groups, group_names)
    return make_dataset(
        decode_images(files.fs, files.paths, image_size, limits),
        _ids(files.labels, classes),
        classes,
        groups=groups,
        group_names=group_names,
        splits=splits,
    )


def manifest_fingerprint(path: str) -> str:
    """The manifest's bytes and every listed file's path, size and modification time."""
    files = list_manifest(path)
    with files.fs.open(files.manifest, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    return "\n".join([digest, *files_fingerprint(files.fs, files.paths)])


def find_manifest(root: Path) -> Path | None:
    """The manifest at the root of an extracted archive, looking through wrapping folders."""
    folder = root
    while True:
        found = [folder / name for name in MANIFEST_FILES if (folder / name).is_file()]
        if len(found) > 1:
            raise DatasetError("the archive holds both manifest.csv and manifest.parquet")
        if found:
            return found[0]
        entries = [e for e in folder.iterdir() if not e.name.startswith((".", "__MACOSX"))]
        if len(entries) != 1 or not entries[0].is_dir():
            return None
        folder = entries[0]
