"""Decode a folder of class sub-folders (local path or fsspec URL) into a uint8 tensor.

Rules:

* Every sub-folder of the root is a class, in sorted order; files are found recursively inside
  it. Hidden entries (leading ``.``) and files without an image extension are ignored. Fewer
  than two classes, or a class folder without images, is an error naming the folders.
* Splits given by the user: when the root holds ``train/`` and ``val/`` folders (and optionally
  ``test/``, nothing else) and ``train/`` holds folders rather than images, each is a folder of
  class folders and every image is tagged with its split. The class folders of every split must
  be the same; otherwise the error names the classes found in one split and not the other.
* Colour: images are decoded as RGB; the dataset is kept grayscale (one channel) only when
  every pixel of every image has R = G = B, so a single colour image makes the whole dataset
  RGB and grayscale images are then repeated on the three channels. Alpha is dropped.
* Size: with ``image_size`` every image is resized to that square; without it, images whose
  size differs from the most common size are resized to it (bilinear).
* Corrupt or undecodable files make one error listing every such file. Pillow's
  decompression-bomb warning is treated as an error, and only the decoders of the listed
  extensions are tried (PNG, JPEG, BMP, GIF, WebP, TIFF, PPM), whatever a file is named.
* Memory (`search.datasets.limits.DecodeLimits`): a file whose header declares more than
  ``max_image_pixels`` is refused (and listed) without being decoded; the size of the whole
  result, counted at three channels, and its side are checked before the first pixel is
  decoded. Each image is resized as soon as it is decoded, into the one result array.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import torch
from PIL import Image

from search.datasets.dataset import SPLIT_CODES, DatasetError, ImageDataset, make_dataset
from search.datasets.limits import DEFAULT_LIMITS, DecodeLimits

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
# Pillow picks the decoder from the content; only these are tried, whatever the file's name.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF", "PPM")
_LISTED_ERRORS = 20


def _fs_and_root(path: str) -> tuple[Any, str]:
    fs, root = fsspec.core.url_to_fs(path)
    if not fs.isdir(root):
        raise DatasetError(f"image folder {path!r} does not exist or is not a directory")
    return fs, root.rstrip("/")


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _visible_dirs(fs: Any, root: str) -> list[str]:
    return sorted(
        entry["name"].rstrip("/")
        for entry in fs.ls(root, detail=True)
        if entry["type"] == "directory" and not _basename(entry["name"]).startswith(".")
    )


def _class_files(fs: Any, root: str, path: str) -> tuple[list[str], list[list[str]]]:
    """The class folders of ``root`` and, per class, the sorted paths of its image files.

    Raises:
        DatasetError: fewer than two classes, or empty class folders.
    """
    class_dirs = _visible_dirs(fs, root)
    classes = [_basename(d) for d in class_dirs]
    files: list[list[str]] = []
    empty: list[str] = []
    for name, class_dir in zip(classes, class_dirs, strict=True):
        found = sorted(
            f
            for f in fs.find(class_dir)
            if f.lower().endswith(IMAGE_EXTENSIONS)
            and not any(part.startswith(".") for part in f[len(class_dir) :].split("/"))
        )
        files.append(found)
        if not found:
            empty.append(name)
    if len(classes) < 2:
        raise DatasetError(
            f"image folder {path!r} has {len(classes)} class folder(s) {classes}; "
            "a classification dataset needs at least 2"
        )
    if empty:
        raise DatasetError(f"class folders without images in {path!r}: {', '.join(empty)}")
    return classes, files


@dataclass(frozen=True)
class FolderFiles:
    """The image files of a folder, in label order, with their split codes if it has splits."""

    fs: Any
    classes: list[str]
    paths: list[str]
    labels: list[int]
    splits: list[int] | None


def _split_folders(fs: Any, root: str, path: str) -> list[str] | None:
    """The split folder names in ``SPLIT_CODES`` order, or None for a folder of classes."""
    dirs = {_basename(d): d for d in _visible_dirs(fs, root)}
    if "train" not in dirs or "val" not in dirs:
        return None
    images_in_train = any(
        e["type"] == "file" and e["name"].lower().endswith(IMAGE_EXTENSIONS)
        for e in fs.ls(dirs["train"], detail=True)
    )
    if images_in_train or not _visible_dirs(fs, dirs["train"]):
        return None  # "train" and "val" are classes of images
    others = sorted(set(dirs) - set(SPLIT_CODES))
    if others:
        raise DatasetError(
            f"image folder {path!r} has train/ and val/ split folders, so beside them it may "
            f"hold only test/, not: {', '.join(others)}"
        )
    return [name for name in SPLIT_CODES if name in dirs]


def _check_same_classes(path: str, split: str, train: list[str], other: list[str]) -> None:
    if other == train:
        return
    only_train = sorted(set(train) - set(other)) or ["none"]
    only_other = sorted(set(other) - set(train)) or ["none"]
    raise DatasetError(
        f"the class folders of {split}/ and train/ differ in {path!r}: only in train/: "
        f"{', '.join(only_train)}; only in {split}/: {', '.join(only_other)}"
    )


def list_folder(path: str) -> FolderFiles:
    """Find the image files of a folder of classes or of ``train/``, ``val/`` split folders.

    Raises:
        DatasetError: a missing folder, too few or empty classes, stray folders beside the
            split folders, or splits whose classes differ.
    """
    fs, root = _fs_and_root(path)
    names = _split_folders(fs, root, path)
    if names is None:
        classes, files = _class_files(fs, root, path)
        labels = [label for label, class_files in enumerate(files) for _ in class_files]
        return FolderFiles(fs, classes, [p for f in files for p in f], labels, None)
    listed = {name: _class_files(fs, f"{root}/{name}", f"{path}/{name}") for name in names}
    classes = listed["train"][0]
    paths: list[str] = []
    labels, splits = [], []
    for name in names:
        split_classes, files = listed[name]
        _check_same_classes(path, name, classes, split_classes)
        for label, class_files in enumerate(files):
            paths.extend(class_files)
            labels.extend([label] * len(class_files))
            splits.extend([SPLIT_CODES[name]] * len(class_files))
    return FolderFiles(fs, classes, paths, labels, splits)


class _ImageRefused(ValueError):
    """An image file over ``max_image_pixels``, refused from its header."""


_FILE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning)


@contextmanager
def _opened(fs: Any, path: str, limits: DecodeLimits) -> Iterator[Image.Image]:
    """The image opened lazily (its header read, no pixel decoded) and refused by its declared
    size; inside, Pillow's decompression-bomb warning is an error."""
    with fs.open(path, "rb") as handle, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(handle, formats=IMAGE_FORMATS)
        problem = limits.image_problem(*image.size)
        if problem is not None:
            raise _ImageRefused(problem)
        yield image


def _raise_corrupt(bad: list[tuple[str, str]]) -> None:
    listed = "; ".join(f"{name}: {reason}" for name, reason in bad[:_LISTED_ERRORS])
    more = f" (and {len(bad) - _LISTED_ERRORS} more)" if len(bad) > _LISTED_ERRORS else ""
    raise DatasetError(f"{len(bad)} image file(s) could not be decoded: {listed}{more}")


def _failure(path: str, exc: Exception) -> tuple[str, str]:
    reason = str(exc) if isinstance(exc, _ImageRefused) else f"{type(exc).__name__}: {exc}"
    return _basename(path), reason


def _header_sizes(
    fs: Any, paths: list[str], limits: DecodeLimits, bad: list[tuple[str, str]]
) -> list[tuple[int, int] | None]:
    """The (height, width) each file declares, None for a file that fails (added to ``bad``)."""
    sizes: list[tuple[int, int] | None] = []
    for p in paths:
        try:
            with _opened(fs, p, limits) as image:
                width, height = image.size
            sizes.append((height, width))
        except _FILE_ERRORS as exc:
            bad.append(_failure(p, exc))
            sizes.append(None)
    return sizes


def _most_common(sizes: list[tuple[int, int] | None]) -> tuple[int, int]:
    counts = Counter(s for s in sizes if s is not None)
    if not counts:
        return 1, 1
    # Ties go to the larger size so that no image is shrunk needlessly.
    return max(counts.items(), key=lambda item: (item[1], item[0]))[0]


def _decode_one(fs: Any, path: str, size: tuple[int, int], limits: DecodeLimits) -> np.ndarray:
    """One file as an RGB (height, width, 3) array of ``size``; the full-size copies last only
    for this image."""
    with _opened(fs, path, limits) as image:
        declared = image.size
        image.load()
    if image.size != declared:
        raise ValueError(f"decoded to {image.size}, its header said {declared}")
    if image.mode != "RGB":
        image = image.convert("RGB")
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image)


def decode_images(
    fs: Any,
    paths: list[str],
    image_size: int | tuple[int, int] | None,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> torch.Tensor:
    """Decode image files into one uint8 (N, C, H, W) tensor, by the module's colour and size
    rules; the error names every file that cannot be decoded. ``image_size`` is a square side
    or a (height, width).

    The size comes from ``image_size`` or, without it, from every file's header; the result
    is checked against ``limits`` before any pixel is decoded, and each image is resized as
    soon as it is decoded, so that large files never pile up at their full size.
    """
    bad: list[tuple[str, str]] = []
    failed: set[int] = set()
    if image_size is None:
        sizes = _header_sizes(fs, paths, limits, bad)
        failed = {i for i, size in enumerate(sizes) if size is None}
        height, width = _most_common(sizes)
    elif isinstance(image_size, int):
        height, width = image_size, image_size
    else:
        height, width = image_size
    limits.check_shape(f"{len(paths)} image files", len(paths), 3, height, width)
    out = np.empty((len(paths), 3, height, width), dtype=np.uint8)
    grey = True
    for i, p in enumerate(paths):
        if i in failed:
            continue
        try:
            array = _decode_one(fs, p, (height, width), limits)
        except _FILE_ERRORS as exc:
            bad.append(_failure(p, exc))
            continue
        grey = grey and bool((array[..., 0] == array[..., 1]).all())
        grey = grey and bool((array[..., 1] == array[..., 2]).all())
        out[i] = array.transpose(2, 0, 1)
    if bad:
        _raise_corrupt(bad)
    images = torch.from_numpy(out)
    return images[:, :1].contiguous() if grey else images


def load_image_folder(
    path: str, image_size: int | None = None, limits: DecodeLimits = DEFAULT_LIMITS
) -> ImageDataset:
    """Decode an image folder into an :class:`ImageDataset` (see the module rules)."""
    listing = list_folder(path)
    images = decode_images(listing.fs, listing.paths, image_size, limits)
    labels = torch.tensor(listing.labels, dtype=torch.int64)
    splits = None if listing.splits is None else torch.tensor(listing.splits, dtype=torch.int64)
    return make_dataset(images, labels, listing.classes, splits=splits)


def files_fingerprint(fs: Any, paths: list[str]) -> list[str]:
    """One line per file: its path, size and modification time (or the store's tag)."""
    rows = []
    for p in paths:
        info = fs.info(p)
        stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
        rows.append(f"{p}\t{info.get('size')}\t{stamp}")
    return rows


def folder_fingerprint(path: str) -> str:
    """A cheap fingerprint of an image folder: every file's path, size and modification time."""
    listing = list_folder(path)
    return "\n".join([repr(listing.classes), *files_fingerprint(listing.fs, listing.paths)])
