"""Datasets built offline: scikit-learn's digits and seeded synthetic pattern classes."""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import torch
import torch.nn.functional as F

from search.datasets.dataset import ImageDataset, make_dataset
from search.datasets.limits import DEFAULT_LIMITS, DecodeLimits
from search.datasets.spec import SyntheticSpec

DIGITS_SIZE = 32


def load_digits_dataset() -> ImageDataset:
    """scikit-learn's 1797 handwritten digits, 8x8 values 0-16 upsampled to 32x32 grayscale.

    Ink is bright on a dark background, as in the source data.
    """
    # Imported here: scikit-learn's import is ~1 s of every worker process's start.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)).unsqueeze(1)
    scaled = pixels * (255.0 / 16.0)
    big = F.interpolate(
        scaled, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False
    )
    images = big.round().clamp(0, 255).to(torch.uint8)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    return make_dataset(images, labels, [str(d) for d in range(10)])


def digits_fingerprint() -> str:
    """The digits data ship with scikit-learn: its version identifies them."""
    return f"sklearn-{version('scikit-learn')}"


def load_synthetic(spec: SyntheticSpec, limits: DecodeLimits = DEFAULT_LIMITS) -> ImageDataset:
    """Seeded random-pattern classes that a small network learns in a few epochs.

    Each class has a smooth random prototype (a coarse random grid upsampled to ``size``);
    every sample is its prototype, randomly shifted by up to an eighth of the side, with
    pixel noise.
    """
    gen = torch.Generator().manual_seed(spec.seed)
    n, size, channels = spec.per_class, spec.size, spec.channels
    limits.check_shape("synthetic dataset", spec.num_classes * n, channels, size, size)
    coarse = torch.rand(spec.num_classes, channels, 4, 4, generator=gen)
    protos = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    labels = torch.arange(spec.num_classes).repeat_interleave(n)
    base = protos[labels]
    shift = max(1, size // 8)
    shifts = torch.randint(-shift, shift + 1, (labels.numel(), 2), generator=gen)
    shifted = torch.stack(
        [
            torch.roll(img, (int(dy), int(dx)), dims=(1, 2))
            for img, (dy, dx) in zip(base, shifts, strict=True)
        ]
    )
    noisy = shifted + 0.15 * torch.randn(shifted.shape, generator=gen)
    images = (noisy.clamp(0, 1) * 255).round().to(torch.uint8)
    classes = [f"pattern_{i}" for i in range(spec.num_classes)]
    return make_dataset(images, labels, classes)
