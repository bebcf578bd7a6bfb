"""``load_dataset``: one entry point over every source, with the decoded-tensor cache."""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

import fsspec

from search.datasets import (
    archive,
    fonts,
    generated,
    imagefolder,
    manifest,
    torchvision_sources,
)
from search.datasets.cache import CACHE_FORMAT, cache_path, read_cached, write_cached
from search.datasets.dataset import DatasetError, ImageDataset, make_dataset, resize_images
from search.datasets.limits import DEFAULT_LIMITS, DecodeLimits
from search.datasets.spec import (
    AnyDatasetSpec,
    ArchiveSpec,
    DatasetSpec,
    DigitsSpec,
    FontsSpec,
    ImageFolderSpec,
    ManifestSpec,
    SyntheticSpec,
    TextTableSpec,
    TorchvisionSpec,
    WordNetTopicsSpec,
)

SpecT = TypeVar("SpecT", contravariant=True)


class DatasetSource(ABC, Generic[SpecT]):
    """A kind of dataset: how to fingerprint its content and how to decode it."""

    @abstractmethod
    def fingerprint(self, spec: SpecT) -> str:
        """A string that changes whenever the decoded content could change."""

    @abstractmethod
    def decode(self, spec: SpecT, limits: DecodeLimits) -> ImageDataset:
        """Decode the whole dataset, refusing it (`DatasetError`) before it allocates more than
        ``limits`` allow."""


class DigitsSource(DatasetSource[DigitsSpec]):
    """scikit-learn's bundled digits."""

    def fingerprint(self, spec: DigitsSpec) -> str:
        return generated.digits_fingerprint()

    def decode(self, spec: DigitsSpec, limits: DecodeLimits) -> ImageDataset:
        return generated.load_digits_dataset()  # 1797 images of 32x32: always within limits


class SyntheticSource(DatasetSource[SyntheticSpec]):
    """Seeded random-pattern classes; the spec alone determines them."""

    def fingerprint(self, spec: SyntheticSpec) -> str:
        return "synthetic"

    def decode(self, spec: SyntheticSpec, limits: DecodeLimits) -> ImageDataset:
        return generated.load_synthetic(spec, limits)


class ImageFolderSource(DatasetSource[ImageFolderSpec]):
    """A folder of class folders (or of split folders), local or behind an fsspec URL."""

    def fingerprint(self, spec: ImageFolderSpec) -> str:
        return imagefolder.folder_fingerprint(spec.path)

    def decode(self, spec: ImageFolderSpec, limits: DecodeLimits) -> ImageDataset:
        return imagefolder.load_image_folder(spec.path, spec.image_size, limits)


class ArchiveSource(DatasetSource[ArchiveSpec]):
    """A zip or tar archive of an image folder or a manifest, keyed by the archive's bytes."""

    def fingerprint(self, spec: ArchiveSpec) -> str:
        digest = hashlib.sha256()
        try:
            with fsspec.open(spec.path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except FileNotFoundError as exc:
            raise DatasetError(f"archive {spec.path!r} does not exist") from exc
        return digest.hexdigest()

    def decode(self, spec: ArchiveSpec, limits: DecodeLimits) -> ImageDataset:
        with archive.extracted_archive(spec.path) as root:
            table = manifest.find_manifest(root)
            if table is not None:
                return manifest.load_manifest(str(table), spec.image_size, limits)
            return imagefolder.load_image_folder(str(root), spec.image_size, limits)


class ManifestSource(DatasetSource[ManifestSpec]):
    """A CSV or Parquet manifest of image files, labels, groups and splits."""

    def fingerprint(self, spec: ManifestSpec) -> str:
        return manifest.manifest_fingerprint(spec.path)

    def decode(self, spec: ManifestSpec, limits: DecodeLimits) -> ImageDataset:
        return manifest.load_manifest(spec.path, spec.image_size, limits)


class TorchvisionSource(DatasetSource[TorchvisionSpec]):
    """CIFAR10/100, SVHN, MNIST, FashionMNIST from their on-disk formats."""

    def fingerprint(self, spec: TorchvisionSpec) -> str:
        return torchvision_sources.torchvision_fingerprint(spec)

    def decode(self, spec: TorchvisionSpec, limits: DecodeLimits) -> ImageDataset:
        return torchvision_sources.load_torchvision(spec, limits)


class FontsSource(DatasetSource[FontsSpec]):
    """Characters rendered in the machine's fonts."""

    def fingerprint(self, spec: FontsSpec) -> str:
        return fonts.fonts_fingerprint(spec)

    def decode(self, spec: FontsSpec, limits: DecodeLimits) -> ImageDataset:
        return fonts.load_fonts(spec, limits)


# Keyed by the spec's ``source``; each source receives only its own kind of spec.
SOURCES: dict[str, DatasetSource[Any]] = {
    "digits": DigitsSource(),
    "synthetic": SyntheticSource(),
    "imagefolder": ImageFolderSource(),
    "archive": ArchiveSource(),
    "manifest": ManifestSource(),
    "torchvision": TorchvisionSource(),
    "fonts": FontsSource(),
}


def _decode(spec: DatasetSpec, limits: DecodeLimits) -> ImageDataset:
    ds = SOURCES[spec.source].decode(spec, limits)
    size = spec.image_size
    if size is not None and ds.image_size != (size, size):
        # The decoded images stay alive while their resized copy is written.
        held = ds.images.numel()
        limits.check_shape(f"{spec.source} dataset", len(ds), ds.channels, size, size, held)
        ds = make_dataset(
            resize_images(ds.images, size),
            ds.labels,
            ds.classes,
            groups=ds.groups,
            group_names=ds.group_names,
            splits=ds.splits,
        )
    return ds


def cache_key(spec: DatasetSpec) -> str:
    """The cache key of a spec: decoding rules, spec and a fingerprint of the source content."""
    fields = spec.model_dump(mode="json", exclude={"download"})
    payload = {
        "format": CACHE_FORMAT,
        "spec": fields,
        "source": SOURCES[spec.source].fingerprint(spec),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def load_dataset(
    spec: AnyDatasetSpec,
    cache_dir: str | os.PathLike[str] | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> ImageDataset:
    """Decode a dataset, or read it from the cache when its source content is unchanged.

    Args:
        spec: what to load.
        cache_dir: folder of decoded-tensor caches (safetensors); None disables caching.
        limits: the memory bounds of decoding; a cached dataset whose images are larger than
            ``limits.max_image_size`` is decoded anew, and so refused.

    Raises:
        DatasetError: the source cannot be read, or exceeds ``limits``; the message names the
            problem; for a text dataset, that it holds no images (``search.text.loader``
            reads those).
    """
    if isinstance(spec, WordNetTopicsSpec | TextTableSpec):
        raise DatasetError(f"dataset source {spec.source!r} holds texts, not images")
    if cache_dir is None:
        return _decode(spec, limits)
    path = cache_path(cache_dir, cache_key(spec))
    cached = read_cached(path, limits)
    if cached is not None:
        return cached
    ds = _decode(spec, limits)
    write_cached(path, ds)
    return ds
