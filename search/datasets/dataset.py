"""The decoded dataset: uint8 image tensor, labels, classes and normalisation statistics."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


class DatasetError(ValueError):
    """A dataset cannot be read or used as given; the message names the problem."""


# Codes of the per-image split tag: the user's own training, validation and test parts.
SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}
# Working memory of the statistics and of a resize: they run over chunks of about this size.
CHUNK_BYTES = 32 * 1024**2


@dataclass
class ImageDataset:
    """A whole image-classification dataset decoded into memory.

    Attributes:
        images: uint8 tensor (N, C, H, W).
        labels: int64 tensor (N,) with values in ``range(len(classes))``.
        classes: class names; ``classes[i]`` is the name of label ``i``.
        mean: per-channel mean on the [0, 1] scale.
        std: per-channel standard deviation on the [0, 1] scale.
        content_hash: sha256 of the decoded images and labels (subsets derive theirs from the
            parent hash and the chosen indices).
        groups: optional int64 tensor (N,) of group ids (e.g. the typeface of a rendered glyph),
            used by :func:`search.datasets.group_split`.
        group_names: names of the group ids.
        splits: optional int64 tensor (N,) of the split each image belongs to, as the user
            gave it (`SPLIT_CODES`: 0 train, 1 validation, 2 test); None when the user gave
            none and the search draws its own.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    mean: list[float]
    std: list[float]
    content_hash: str
    groups: torch.Tensor | None = None
    group_names: list[str] = field(default_factory=list)
    splits: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DatasetError(
                f"images must be a uint8 (N, C, H, W) tensor, got {self.images.dtype} "
                f"with shape {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise DatasetError(
                f"labels shape {tuple(self.labels.shape)} does not match {len(self)} images"
            )
        if len(self) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DatasetError(f"labels must lie in [0, {len(self.classes)})")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DatasetError("mean and std need one value per channel")
        if self.splits is not None and (
            self.splits.shape != (len(self),)
            or (len(self) and (self.splits.min() < 0 or self.splits.max() >= len(SPLIT_CODES)))
        ):
            raise DatasetError(f"splits must hold one code in [0, {len(SPLIT_CODES)}) per image")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        """Number of image channels (1 for grayscale, 3 for RGB)."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """Image height and width."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def counts_per_class(self) -> dict[str, int]:
        """Number of images of each class, in class order."""
        counts = torch.bincount(self.labels, minlength=self.num_classes).tolist()
        return dict(zip(self.classes, counts, strict=True))

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageDataset:
        """A new dataset holding the given images, keeping the parent's classes and statistics.

        The statistics stay those of the parent so that every split of one dataset is
        normalised the same way.
        """
        idx = torch.as_tensor(indices, dtype=torch.int64)
        digest = hashlib.sha256(self.content_hash.encode())
        digest.update(idx.numpy().tobytes())
        return ImageDataset(
            images=self.images[idx],
            labels=self.labels[idx],
            classes=list(self.classes),
            mean=list(self.mean),
            std=list(self.std),
            content_hash=digest.hexdigest(),
            groups=None if self.groups is None else self.groups[idx],
            group_names=list(self.group_names),
            splits=None if self.splits is None else self.splits[idx],
        )


def content_hash(
    images: torch.Tensor, labels: torch.Tensor, splits: torch.Tensor | None = None
) -> str:
    """sha256 of the decoded tensors (shape, pixel bytes, labels and the splits if given)."""
    digest = hashlib.sha256(repr(tuple(images.shape)).encode())
    # The arrays are hashed as buffers: a bytes copy would double the dataset in memory.
    digest.update(images.contiguous().numpy().data)
    digest.update(labels.to(torch.int64).contiguous().numpy().data)
    if splits is not None:  # the same images split otherwise make another search
        digest.update(splits.to(torch.int64).contiguous().numpy().data)
    return digest.hexdigest()


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation on the [0, 1] scale.

    Exact integer sums over chunks of about `CHUNK_BYTES`, so the result does not depend on
    the chunking and no wide copy of the whole set is made.
    """
    count, channels, height, width = images.shape
    total = torch.zeros(channels, dtype=torch.int64)
    total_sq = torch.zeros(channels, dtype=torch.int64)
    step = max(1, CHUNK_BYTES // (8 * max(1, channels * height * width)))
    for start in range(0, count, step):
        block = images[start : start + step].to(torch.int64)
        total += block.sum(dim=(0, 2, 3))
        total_sq += (block * block).sum(dim=(0, 2, 3))
    pixels = max(1, count * height * width)
    mean = total.to(torch.float64) / (255.0 * pixels)
    var = (total_sq.to(torch.float64) / (255.0**2 * pixels) - mean * mean).clamp_min(0.0)
    # A constant channel would divide by zero when normalising.
    std = var.sqrt().clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 batch to ``size`` x ``size`` (bilinear, antialiased when shrinking).

    Resized a chunk at a time into the uint8 result, so the float copies stay small.
    """
    count, channels, height, width = images.shape
    if height == size and width == size:
        return images
    out = torch.empty((count, channels, size, size), dtype=torch.uint8)
    step = max(1, CHUNK_BYTES // (4 * channels * max(height * width, size * size)))
    for start in range(0, count, step):
        block = F.interpolate(
            images[start : start + step].float(),
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        out[start : start + step] = block.round().clamp(0, 255).to(torch.uint8)
    return out


def make_dataset(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    *,
    groups: torch.Tensor | None = None,
    group_names: list[str] | None = None,
    splits: torch.Tensor | None = None,
) -> ImageDataset:
    """Build an :class:`ImageDataset`, computing statistics and the content hash."""
    images = images.contiguous()
    mean, std = channel_stats(images)
    return ImageDataset(
        images=images,
        labels=labels.to(torch.int64),
        classes=classes,
        mean=mean,
        std=std,
        content_hash=content_hash(images, labels, splits),
        groups=groups,
        group_names=group_names or [],
        splits=None if splits is None else splits.to(torch.int64),
    )
