"""Offline datasets: digits, synthetic patterns and characters rendered in fonts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from search.datasets import (
    DatasetError,
    DigitsSpec,
    FontsSpec,
    ImageDataset,
    SyntheticSpec,
    group_split,
    load_dataset,
)
from search.datasets.fonts import find_font_files


def test_digits_is_32px_grey_with_ten_classes(digits: ImageDataset) -> None:
    assert digits.images.shape == (1797, 1, 32, 32) and digits.images.dtype == torch.uint8
    assert digits.classes == [str(d) for d in range(10)]
    assert min(digits.counts_per_class().values()) >= 170
    assert int(digits.images.max()) == 255 and int(digits.images.min()) == 0


def test_image_size_resizes_any_source() -> None:
    ds = load_dataset(DigitsSpec(image_size=16))
    assert ds.image_size == (16, 16) and len(ds) == 1797


def test_synthetic_is_seeded() -> None:
    spec = SyntheticSpec(num_classes=3, per_class=5, size=12, channels=1)
    a, b = load_dataset(spec), load_dataset(spec)
    other = load_dataset(spec.model_copy(update={"seed": 9}))
    assert a.content_hash == b.content_hash != other.content_hash
    assert a.images.shape == (15, 1, 12, 12) and a.counts_per_class() == {
        "pattern_0": 5,
        "pattern_1": 5,
        "pattern_2": 5,
    }


def test_fonts_keep_the_typeface_as_group(tmp_path: Path) -> None:
    fonts = find_font_files(None)[:5]
    if len(fonts) < 5:
        pytest.skip("this machine has fewer than 5 font files")
    for f in fonts:
        shutil.copy(f, tmp_path / f.name)
    spec = FontsSpec(path=str(tmp_path), characters="0123", per_font=3, seed=4)
    ds = load_dataset(spec)
    assert ds.groups is not None and len(ds.group_names) == len(fonts)
    assert len(ds) == len(fonts) * 4 * 3 and ds.channels == 1 and ds.image_size == (32, 32)
    assert load_dataset(spec).content_hash == ds.content_hash
    rest, held = group_split(ds, test_fraction=0.4, seed=0)
    assert rest.groups is not None and held.groups is not None
    assert set(rest.groups.tolist()).isdisjoint(held.groups.tolist())
    assert len(set(held.groups.tolist())) == 2 and len(rest) + len(held) == len(ds)


def test_fonts_fall_back_to_the_builtin_font(tmp_path: Path) -> None:
    ds = load_dataset(FontsSpec(path=str(tmp_path), characters="AB", per_font=2))
    assert ds.group_names[0].startswith("default-") and len(ds.group_names) == 4
    a, b = ds.images[ds.labels == 0].float(), ds.images[ds.labels == 1].float()
    assert a.sum() > 0 and not torch.equal(a, b)


def test_fonts_need_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="font folder"):
        load_dataset(FontsSpec(path=str(tmp_path / "none")))


def test_group_split_needs_groups(digits: ImageDataset) -> None:
    with pytest.raises(DatasetError, match="group id per image"):
        group_split(digits)
