"""``load_dataset``: one entry point over every source, with the decoded-tensor cache."""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod

import fsspec

from search.datasets import archive, fonts, generated, imagefolder, torchvision_sources
from search.datasets.cache import CACHE_FORMAT, cache_path, read_cached, write_cached
from search.datasets.dataset import DatasetError, ImageDataset, make_dataset, resize_images
from search.datasets.spec import DatasetSpec


class DatasetSource(ABC):
    """A kind of dataset: how to fingerprint its content and how to decode it."""

    @abstractmethod
    def fingerprint(self, spec: DatasetSpec) -> str:
        """A string that changes whenever the decoded content could change."""

    @abstractmethod
    def decode(self, spec: DatasetSpec) -> ImageDataset:
        """Decode the whole dataset."""


def _path(spec: DatasetSpec) -> str:
    if spec.path is None:
        raise DatasetError(f"source {spec.source!r} needs a path")
    return spec.path


class DigitsSource(DatasetSource):
    """scikit-learn's bundled digits."""

    def fingerprint(self, spec: DatasetSpec) -> str:
        return generated.digits_fingerprint()

    def decode(self, spec: DatasetSpec) -> ImageDataset:
        return generated.load_digits_dataset()


class SyntheticSource(DatasetSource):
    """Seeded random-pattern classes; the spec alone determines them."""

    def fingerprint(self, spec: DatasetSpec) -> str:
        return "synthetic"

    def decode(self, spec: DatasetSpec) -> ImageDataset:
        return generated.load_synthetic(spec)


class ImageFolderSource(DatasetSource):
    """A folder of class folders, local or behind an fsspec URL."""

    def fingerprint(self, spec: DatasetSpec) -> str:
        return imagefolder.folder_fingerprint(_path(spec))

    def decode(self, spec: DatasetSpec) -> ImageDataset:
        return imagefolder.load_image_folder(_path(spec), spec.image_size)


class ArchiveSource(DatasetSource):
    """A zip or tar archive of an image folder, keyed by the archive's bytes."""

    def fingerprint(self, spec: DatasetSpec) -> str:
        digest = hashlib.sha256()
        try:
            with fsspec.open(_path(spec), "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except FileNotFoundError as exc:
            raise DatasetError(f"archive {spec.path!r} does not exist") from exc
        return digest.hexdigest()

    def decode(self, spec: DatasetSpec) -> ImageDataset:
        with archive.extracted_archive(_path(spec)) as root:
            return imagefolder.load_image_folder(str(root), spec.image_size)


class TorchvisionSource(DatasetSource):
    """CIFAR10/100, SVHN, MNIST, FashionMNIST from their on-disk formats."""

    def fingerprint(self, spec: DatasetSpec) -> str:
        return torchvision_sources.torchvision_fingerprint(spec)

    def decode(self, spec: DatasetSpec) -> ImageDataset:
        return torchvision_sources.load_torchvision(spec)


class FontsSource(DatasetSource):
    """Characters rendered in the machine's fonts."""

    def fingerprint(self, spec: DatasetSpec) -> str:
        return fonts.fonts_fingerprint(spec)

    def decode(self, spec: DatasetSpec) -> ImageDataset:
        return fonts.load_fonts(spec)


SOURCES: dict[str, DatasetSource] = {
    "digits": DigitsSource(),
    "synthetic": SyntheticSource(),
    "imagefolder": ImageFolderSource(),
    "archive": ArchiveSource(),
    "torchvision": TorchvisionSource(),
    "fonts": FontsSource(),
}


def _decode(spec: DatasetSpec) -> ImageDataset:
    ds = SOURCES[spec.source].decode(spec)
    if spec.image_size is not None and ds.image_size != (spec.image_size, spec.image_size):
        ds = make_dataset(
            resize_images(ds.images, spec.image_size),
            ds.labels,
            ds.classes,
            groups=ds.groups,
            group_names=ds.group_names,
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
    spec: DatasetSpec, cache_dir: str | os.PathLike[str] | None = None
) -> ImageDataset:
    """Decode a dataset, or read it from the cache when its source content is unchanged.

    Args:
        spec: what to load.
        cache_dir: folder of decoded-tensor caches (safetensors); None disables caching.

    Raises:
        DatasetError: the source cannot be read; the message names the problem.
    """
    if cache_dir is None:
        return _decode(spec)
    path = cache_path(cache_dir, cache_key(spec))
    cached = read_cached(path)
    if cached is not None:
        return cached
    ds = _decode(spec)
    write_cached(path, ds)
    return ds
