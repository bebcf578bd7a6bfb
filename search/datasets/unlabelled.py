"""Unlabelled images: a folder (or an uploaded archive) of image files without classes.

Self-training pseudo-labels them with a model trained on a labelled dataset, so they are
decoded to that dataset's shape: its channels (colour images are turned grey with the ITU-R
601 luma weights for a grayscale dataset, grey images repeated for a colour one) and its
(height, width). Any folder layout is accepted: every image file below the root counts, hidden
entries excepted, so a folder of class folders works too (its classes are ignored). Archives
go through the same member-by-member checks as labelled uploads (`search.datasets.archive`),
and decoding through the same memory limits (`search.datasets.limits.DecodeLimits`).
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import fsspec
import torch
from pydantic import BaseModel, ConfigDict, Field

from search.datasets.archive import extracted_archive
from search.datasets.dataset import DatasetError
from search.datasets.imagefolder import IMAGE_EXTENSIONS, decode_images
from search.datasets.limits import DEFAULT_LIMITS, DecodeLimits

#: Fewest unlabelled images worth a self-training job.
MIN_IMAGES = 2
_LUMA = (0.299, 0.587, 0.114)


class UnlabelledSpec(BaseModel):
    """Where unlabelled images live and the shape they are decoded to.

    Attributes:
        source: ``folder`` (a server folder or fsspec URL) or ``archive`` (zip/tar).
        path: the folder or archive.
        channels: channels of the labelled dataset they go with (1 or 3).
        image_size: (height, width) of the labelled dataset they go with.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["folder", "archive"]
    path: str = Field(min_length=1, max_length=4096)
    channels: Literal[1, 3]
    image_size: tuple[int, int]


def image_files(path: str) -> tuple[Any, list[str]]:
    """The filesystem and sorted paths of every visible image file below ``path``.

    Raises:
        DatasetError: a missing folder, or fewer than `MIN_IMAGES` images.
    """
    fs, root = fsspec.core.url_to_fs(path)
    if not fs.isdir(root):
        raise DatasetError(f"image folder {path!r} does not exist or is not a directory")
    root = root.rstrip("/")
    found = sorted(
        f
        for f in fs.find(root)
        if f.lower().endswith(IMAGE_EXTENSIONS)
        and not any(part.startswith((".", "__MACOSX")) for part in f[len(root) :].split("/"))
    )
    if len(found) < MIN_IMAGES:
        raise DatasetError(
            f"{path!r} holds {len(found)} image file(s); unlabelled images need at least "
            f"{MIN_IMAGES}"
        )
    return fs, found


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """A uint8 (N, 1 or 3, H, W) batch with ``channels`` channels (luma for grey)."""
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor(_LUMA).view(1, 3, 1, 1)
    grey = (images.float() * weights).sum(dim=1, keepdim=True)
    return grey.round().clamp(0, 255).to(torch.uint8)


def _decode_folder(path: str, spec: UnlabelledSpec, limits: DecodeLimits) -> torch.Tensor:
    fs, paths = image_files(path)
    # decode_images counts three channels; the grey copy below is smaller.
    images = decode_images(fs, paths, spec.image_size, limits)
    return to_channels(images, spec.channels)


def load_unlabelled(spec: UnlabelledSpec, limits: DecodeLimits = DEFAULT_LIMITS) -> torch.Tensor:
    """Decode unlabelled images into a uint8 (N, C, H, W) tensor of the spec's shape.

    Raises:
        DatasetError: an unsafe or damaged archive, undecodable files, too few images, or a
            decoded size over ``limits``; the message names the problem.
    """
    if spec.source == "archive":
        with extracted_archive(spec.path) as root:
            return _decode_folder(str(root), spec, limits)
    return _decode_folder(spec.path, spec, limits)


def images_hash(images: torch.Tensor) -> str:
    """sha256 of a decoded uint8 batch (its shape included)."""
    digest = hashlib.sha256(repr(tuple(images.shape)).encode())
    digest.update(images.contiguous().numpy().tobytes())
    return digest.hexdigest()
