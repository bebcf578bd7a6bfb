"""Seeded splits: stratified, disjoint, complete; reduced subsets; k folds."""

from __future__ import annotations

import pytest
import torch

from search.datasets import DatasetError, ImageDataset, kfold, stratified_split


def _ids(part: ImageDataset, whole: ImageDataset) -> set[int]:
    """Recover the parent indices of a subset from its unique images."""
    flat = whole.images.flatten(1)
    lookup = {bytes(row.numpy()): i for i, row in enumerate(flat)}
    return {lookup[bytes(row.numpy())] for row in part.images.flatten(1)}


@pytest.fixture(scope="module")
def unique_set(tiny_synthetic: ImageDataset) -> ImageDataset:
    images = tiny_synthetic.images.clone()
    images[:, 0, 0, 0] = torch.arange(len(images), dtype=torch.uint8)  # every image distinct
    return ImageDataset(
        images,
        tiny_synthetic.labels,
        tiny_synthetic.classes,
        tiny_synthetic.mean,
        tiny_synthetic.std,
        "unique",
    )


def test_stratified_split_is_disjoint_complete_and_balanced(unique_set: ImageDataset) -> None:
    train, val = stratified_split(unique_set, val_fraction=0.25, seed=3)
    train_ids, val_ids = _ids(train, unique_set), _ids(val, unique_set)
    assert train_ids.isdisjoint(val_ids)
    assert train_ids | val_ids == set(range(len(unique_set)))
    assert val.counts_per_class() == {c: 6 for c in unique_set.classes}
    assert train.mean == unique_set.mean and train.classes == unique_set.classes


def test_split_is_seeded(unique_set: ImageDataset) -> None:
    a = stratified_split(unique_set, 0.25, seed=1)[1]
    b = stratified_split(unique_set, 0.25, seed=1)[1]
    c = stratified_split(unique_set, 0.25, seed=2)[1]
    assert a.content_hash == b.content_hash and torch.equal(a.images, b.images)
    assert _ids(a, unique_set) != _ids(c, unique_set)


def test_reduced_training_subset(digits: ImageDataset) -> None:
    train, val = stratified_split(digits, val_fraction=0.2, seed=0, train_size=400)
    assert len(train) == 400 and len(val) == pytest.approx(360, abs=5)
    assert set(train.counts_per_class().values()) <= {39, 40, 41}
    with pytest.raises(DatasetError, match="train_size 5000 exceeds"):
        stratified_split(digits, 0.2, 0, train_size=5000)


def test_bad_fraction_is_refused(digits: ImageDataset) -> None:
    with pytest.raises(DatasetError, match="val_fraction"):
        stratified_split(digits, 1.0, 0)


def test_kfold_holds_each_image_out_once(unique_set: ImageDataset) -> None:
    folds = kfold(unique_set, k=5, seed=0)
    held = [_ids(val, unique_set) for _, val in folds]
    assert sum(len(h) for h in held) == len(unique_set)
    assert set().union(*held) == set(range(len(unique_set)))
    for (train, val), ids in zip(folds, held, strict=True):
        assert _ids(train, unique_set) == set(range(len(unique_set))) - ids
        counts = val.counts_per_class().values()
        assert max(counts) - min(counts) <= 1
    with pytest.raises(DatasetError, match="k must lie"):
        kfold(unique_set, 1, 0)
