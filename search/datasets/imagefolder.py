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
  decompression-bomb warning is treated as an error.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import torch
from PIL import Image

from search.datasets.dataset import SPLIT_CODES, DatasetError, ImageDataset, make_dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
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


def _open_image(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
        image.load()
    return image


def _raise_corrupt(bad: list[tuple[str, str]]) -> None:
    listed = "; ".join(f"{name}: {reason}" for name, reason in bad[:_LISTED_ERRORS])
    more = f" (and {len(bad) - _LISTED_ERRORS} more)" if len(bad) > _LISTED_ERRORS else ""
    raise DatasetError(f"{len(bad)} image file(s) could not be decoded: {listed}{more}")


def _decode_all(fs: Any, paths: list[str], image_size: int | None) -> list[np.ndarray]:
    """Decode every file to an RGB array, collecting every failure before raising.

    With a fixed ``image_size`` each image is resized at once, so that large files never pile
    up in memory at their full size.
    """
    arrays: list[np.ndarray] = []
    bad: list[tuple[str, str]] = []
    for p in paths:
        try:
            with fs.open(p, "rb") as handle:
                image = _open_image(handle.read()).convert("RGB")
            if image_size is not None and image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
            arrays.append(np.asarray(image))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning) as exc:
            bad.append((_basename(p), f"{type(exc).__name__}: {exc}"))
    if bad:
        _raise_corrupt(bad)
    return arrays


def _target_size(arrays: list[np.ndarray], image_size: int | None) -> tuple[int, int]:
    if image_size is not None:
        return image_size, image_size
    sizes = Counter((a.shape[0], a.shape[1]) for a in arrays)
    # Ties go to the larger size so that no image is shrunk needlessly.
    return max(sizes.items(), key=lambda item: (item[1], item[0]))[0]


def _stack(arrays: list[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    height, width = size
    out = np.empty((len(arrays), height, width, 3), dtype=np.uint8)
    for i, array in enumerate(arrays):
        if array.shape[:2] != (height, width):
            resized = Image.fromarray(array).resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(resized)
        out[i] = array
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def decode_images(fs: Any, paths: list[str], image_size: int | None) -> torch.Tensor:
    """Decode image files into one uint8 (N, C, H, W) tensor, by the module's colour and size
    rules; the error names every file that cannot be decoded."""
    arrays = _decode_all(fs, paths, image_size)
    images = _stack(arrays, _target_size(arrays, image_size))
    grey = bool((images[:, 0] == images[:, 1]).all() and (images[:, 1] == images[:, 2]).all())
    if grey:
        images = images[:, :1].contiguous()
    return images


def load_image_folder(path: str, image_size: int | None = None) -> ImageDataset:
    """Decode an image folder into an :class:`ImageDataset` (see the module rules)."""
    listing = list_folder(path)
    images = decode_images(listing.fs, listing.paths, image_size)
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
