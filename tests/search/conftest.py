"""Shared fixtures of the search tests: small real datasets and an image-folder writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.datasets import (
    DigitsSpec,
    ImageDataset,
    SyntheticSpec,
    load_dataset,
    stratified_split,
)

FolderWriter = Callable[..., Path]


@pytest.fixture(scope="session")
def digits() -> ImageDataset:
    """scikit-learn's digits at 32x32 (1797 images, 10 classes, 1 channel)."""
    return load_dataset(DigitsSpec())


@pytest.fixture(scope="session")
def digits_small(digits: ImageDataset) -> tuple[ImageDataset, ImageDataset]:
    """A fast (train, validation) pair of digits at 16x16: 600 training, 300 validation."""
    small = load_dataset(DigitsSpec(image_size=16))
    train, val = stratified_split(small, val_fraction=0.2, seed=0, train_size=600)
    return train, val.subset(range(300))


@pytest.fixture(scope="session")
def tiny_synthetic() -> ImageDataset:
    """Three RGB pattern classes of 24 images each, 16x16."""
    return load_dataset(SyntheticSpec(num_classes=3, per_class=24, size=16, channels=3, seed=1))


@pytest.fixture
def write_folder() -> FolderWriter:
    """Write an image folder: ``write_folder(root, {"cat": 3, "dog": 2}, size=(w, h), mode="L")``.

    Pixel values are seeded per file, so the same call writes the same bytes.
    """

    def write(
        root: Path,
        counts: dict[str, int],
        *,
        size: tuple[int, int] = (12, 10),
        mode: str = "L",
        ext: str = "png",
    ) -> Path:
        rng = np.random.default_rng(0)
        for name, count in counts.items():
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                channels = 3 if mode == "RGB" else 1
                pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
                image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
                image.save(folder / f"{name}_{i}.{ext}")
        return root

    return write
