"""The fidelity benchmark's data: unseen typefaces in test, the sizes asked for, upload folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.fidelity_calibration import policy_named
from benchmarks.fidelity_data import (
    BENCHMARK_TYPEFACES,
    BenchmarkSplits,
    TypefaceSplit,
    benchmark_font_dir,
    digits_splits,
    fonts_splits,
    house_numbers_splits,
    write_image_folder,
)
from benchmarks.house_numbers import render_house_numbers
from ops.policy import BaseAugment
from ops.presets import PRESETS
from search.datasets import SPLIT_CODES, DatasetError
from search.datasets.dataset import channel_stats
from search.datasets.fonts import find_font_files
from search.datasets.imagefolder import load_image_folder

SMALL = TypefaceSplit(typefaces=3, val_typefaces=1, per_font=2, test_per_font=1)


def _typefaces(splits: BenchmarkSplits) -> list[set[int]]:
    parts = (splits.train, splits.val, splits.test)
    return [set(d.groups.tolist()) for d in parts if d.groups is not None]


@pytest.mark.parametrize("build", [fonts_splits, house_numbers_splits])
def test_typefaces_split_as_asked(build) -> None:  # type: ignore[no-untyped-def]
    splits = build(split=SMALL)
    train, val, test = _typefaces(splits)
    assert (len(train), len(val)) == (2, 1) and len(test) >= 1
    assert not (train & val) and not (train & test) and not (val & test)
    classes = splits.train.num_classes
    assert len(splits.train) == 2 * classes * 2 and len(splits.val) == 1 * classes * 2
    assert len(splits.test) == len(test) * classes * 1
    assert len(splits.training_part) == len(splits.train) + len(splits.val)
    # Normalised with the training part's statistics alone: the test split stays unseen.
    mean, _ = channel_stats(splits.training_part.images)
    for part in (splits.train, splits.val, splits.test):
        assert part.mean == pytest.approx(mean)


def test_splits_are_seeded() -> None:
    a, b = fonts_splits(split=SMALL, seed=3), fonts_splits(split=SMALL, seed=3)
    assert torch.equal(a.test.images, b.test.images) and a.describe() == b.describe()
    assert "typefaces 2 train / 1 val" in a.describe()
    assert "(train: DejaVu" in a.describe() and "; val: DejaVu" in a.describe()


def _fonts_with_extras(folder: Path) -> Path:
    """The machine's fonts linked into ``folder``, plus two typefaces that are not DejaVu."""
    folder.mkdir()
    system = find_font_files(None)
    for f in system:
        (folder / f.name).symlink_to(f)
    sans = next(f for f in system if f.stem == "DejaVuSans")
    for extra in ("Aaa-Regular.ttf", "Zzz-Regular.ttf"):  # sorted before and after DejaVu
        (folder / extra).write_bytes(sans.read_bytes())
    return folder


@pytest.mark.parametrize("build", [fonts_splits, house_numbers_splits])
def test_other_installed_typefaces_do_not_change_the_split(build, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    machine = _fonts_with_extras(tmp_path / "machine")
    pinned = benchmark_font_dir(tmp_path / "pinned", search_in=str(machine))
    assert sorted(f.stem for f in pinned.iterdir()) == sorted(BENCHMARK_TYPEFACES)
    default, with_extras = build(split=SMALL), build(split=SMALL, font_dir=str(pinned))
    assert default.describe() == with_extras.describe()
    assert torch.equal(default.test.images, with_extras.test.images)
    # What the pinning prevents: drawing on every font found changes the typefaces of the split.
    unpinned = build(split=SMALL, font_dir=str(machine))
    assert unpinned.describe() != default.describe()


def test_missing_benchmark_typefaces_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"DejaVuSans-Bold.*fonts-dejavu-core"):
        benchmark_font_dir(tmp_path / "pinned", search_in=str(tmp_path))


def test_house_numbers_are_colour_digits_grouped_by_typeface() -> None:
    ds = render_house_numbers(1, seed=0)
    assert ds.channels == 3 and ds.image_size == (32, 32) and ds.classes == list("0123456789")
    assert ds.groups is not None and len(ds.group_names) == len(set(ds.groups.tolist()))
    assert torch.equal(ds.images, render_house_numbers(1, seed=0).images)


def test_house_numbers_need_fonts(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="fonts"):
        render_house_numbers(1, font_dir=str(tmp_path))


def test_too_many_training_typefaces_is_an_error() -> None:
    with pytest.raises(DatasetError, match="for test"):
        fonts_splits(split=TypefaceSplit(typefaces=999, val_typefaces=1, per_font=1,
                                         test_per_font=1))  # fmt: skip
    with pytest.raises(ValueError, match="val_typefaces"):
        TypefaceSplit(typefaces=2, val_typefaces=2, per_font=1, test_per_font=1)


def test_digits_splits_are_stratified_and_disjoint() -> None:
    splits = digits_splits()
    sizes = [len(splits.train), len(splits.val), len(splits.test)]
    assert sum(sizes) == 1797 and len(splits.training_part) == sizes[0] + sizes[1]
    counts = torch.bincount(splits.test.labels, minlength=10)
    assert counts.min() >= 50  # every class in proportion (~54 each)


def test_image_folder_holds_train_and_val_only_and_decodes_back(tmp_path: Path) -> None:
    splits = fonts_splits(split=SMALL)
    root = write_image_folder(splits, tmp_path / "upload")
    assert sorted(p.name for p in root.iterdir()) == ["train", "val"]
    assert sorted(p.name for p in (root / "train").iterdir()) == splits.train.classes
    loaded = load_image_folder(str(root))
    assert loaded.channels == 1 and loaded.classes == splits.train.classes
    assert loaded.splits is not None
    for part, code in ((splits.train, SPLIT_CODES["train"]), (splits.val, SPLIT_CODES["val"])):
        mine = loaded.splits == code
        # Files are listed class by class; within a class they keep the split's order.
        order = np.argsort(part.labels.numpy(), kind="stable")
        assert torch.equal(loaded.images[mine], part.images[torch.from_numpy(order)])
        assert torch.equal(loaded.labels[mine], part.labels[torch.from_numpy(order)])


def test_policy_names_of_the_calibration() -> None:
    assert policy_named("none") == PRESETS["none"]
    cropped = policy_named("trivialaugment-wide+crop2")
    assert cropped.base == BaseAugment(crop_padding=2) and cropped.kind == "trivialaugment"
    with pytest.raises(ValueError, match="cropN"):
        policy_named("none+flip")
    with pytest.raises(ValueError, match="unknown preset"):
        policy_named("nothing")
