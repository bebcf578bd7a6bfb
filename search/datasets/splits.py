"""Seeded splits: stratified train/validation, reduced training subsets, k folds, group splits,
and the parts the user fixed."""

from __future__ import annotations

import numpy as np
import torch

from search.datasets.dataset import SPLIT_CODES, DatasetError, ImageDataset


def _class_indices(ds: ImageDataset, rng: np.random.Generator) -> list[np.ndarray]:
    labels = ds.labels.numpy()
    return [rng.permutation(np.flatnonzero(labels == c)) for c in range(ds.num_classes)]


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder)."""
    exact = counts * total / counts.sum()
    alloc = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - alloc), kind="stable")
    alloc[order[: total - int(alloc.sum())]] += 1
    return np.minimum(alloc, counts)


def _take(ds: ImageDataset, parts: list[np.ndarray]) -> ImageDataset:
    idx = np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
    return ds.subset(torch.from_numpy(idx.astype(np.int64)))


def stratified_subset(ds: ImageDataset, size: int, seed: int) -> ImageDataset:
    """A seeded subset of ``size`` images keeping the class proportions."""
    if not 1 <= size <= len(ds):
        raise DatasetError(f"subset size {size} must lie in [1, {len(ds)}]")
    per_class = _class_indices(ds, np.random.default_rng(seed))
    alloc = _allocate(np.array([len(p) for p in per_class]), size)
    return _take(ds, [p[:a] for p, a in zip(per_class, alloc, strict=True)])


def stratified_split(
    ds: ImageDataset, val_fraction: float, seed: int, train_size: int | None = None
) -> tuple[ImageDataset, ImageDataset]:
    """Split into (train, validation) with the class proportions kept in both.

    Every class with at least two images gives at least one to each side. ``train_size``
    then reduces the training side to a stratified subset of that many images (the
    "reduced CIFAR-10" convention: 4000 training images).

    Raises:
        DatasetError: a fraction outside (0, 1) or a ``train_size`` larger than what remains.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    per_class = _class_indices(ds, np.random.default_rng(seed))
    train_parts, val_parts = [], []
    for idx in per_class:
        n_val = round(len(idx) * val_fraction)
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val_parts.append(idx[:n_val])
        train_parts.append(idx[n_val:])
    train, val = _take(ds, train_parts), _take(ds, val_parts)
    if train_size is not None:
        if train_size > len(train):
            raise DatasetError(
                f"train_size {train_size} exceeds the {len(train)} images left for training"
            )
        train = stratified_subset(train, train_size, seed)
    return train, val


def kfold(ds: ImageDataset, k: int, seed: int) -> list[tuple[ImageDataset, ImageDataset]]:
    """Stratified k folds: a list of (train, held-out) pairs; each image is held out once.

    Images are dealt to folds class by class in a seeded order, so fold sizes differ by at
    most one and each fold holds every class in proportion.
    """
    if not 2 <= k <= len(ds):
        raise DatasetError(f"k must lie in [2, {len(ds)}], got {k}")
    order = np.concatenate(_class_indices(ds, np.random.default_rng(seed)))
    fold_of = np.empty(len(ds), dtype=np.int64)
    fold_of[order] = np.arange(len(ds)) % k
    return [
        (_take(ds, [np.flatnonzero(fold_of != f)]), _take(ds, [np.flatnonzero(fold_of == f)]))
        for f in range(k)
    ]


def group_split(
    ds: ImageDataset,
    groups: torch.Tensor | None = None,
    *,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> tuple[ImageDataset, ImageDataset]:
    """Split by whole groups (e.g. typefaces): (rest, held-out) share no group.

    Args:
        ds: the dataset.
        groups: group id per image; defaults to ``ds.groups``.
        test_fraction: share of the groups held out (at least one group, never all).
        seed: seed of the group draw.
    """
    gids = ds.groups if groups is None else torch.as_tensor(groups, dtype=torch.int64)
    if gids is None or gids.shape != (len(ds),):
        raise DatasetError("group_split needs one group id per image")
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    unique = np.unique(gids.numpy())
    if len(unique) < 2:
        raise DatasetError("group_split needs at least two groups")
    n_test = min(max(1, round(len(unique) * test_fraction)), len(unique) - 1)
    held = np.random.default_rng(seed).permutation(unique)[:n_test]
    mask = np.isin(gids.numpy(), held)
    return _take(ds, [np.flatnonzero(~mask)]), _take(ds, [np.flatnonzero(mask)])


def fixed_splits(
    ds: ImageDataset,
) -> tuple[ImageDataset, ImageDataset | None, ImageDataset | None]:
    """The (train, validation, test) parts the user fixed with ``ds.splits``.

    A part the user gave no image is None; without split tags (or with training images only)
    the training part is ``ds`` itself.
    """
    if ds.splits is None:
        return ds, None, None
    codes = ds.splits.numpy()
    train, val, test = (np.flatnonzero(codes == SPLIT_CODES[name]) for name in SPLIT_CODES)
    if len(train) == len(ds):
        return ds, None, None
    return (
        _take(ds, [train]),
        _take(ds, [val]) if len(val) else None,
        _take(ds, [test]) if len(test) else None,
    )
