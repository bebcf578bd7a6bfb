"""The data sets of the fidelity benchmark, split so that the test part is never searched on.

Each builder returns :class:`BenchmarkSplits`: ``train`` and ``val`` are what a user uploads
(:func:`write_image_folder` writes them as ``train/`` and ``val/`` folders of class folders)
and what the search may use; ``test`` is kept back for :mod:`benchmarks.evaluator`, which
trains on ``training_part`` (train and val together: everything the user has). Everything is
built offline and seeded:

* ``fonts`` (:func:`fonts_splits`): the 26 capital letters in the machine's typefaces; test
  and validation are whole typefaces the training part never saw;
* ``house-numbers`` (:func:`house_numbers_splits`): SVHN-like colour crops of digits
  (:mod:`benchmarks.house_numbers`), test and validation again by unseen typeface;
* ``digits`` (:func:`digits_splits`): scikit-learn's handwritten digits, stratified splits.

The grouped sets draw only on the typefaces of `BENCHMARK_TYPEFACES` (Debian's DejaVu
packages), found in the machine's font folders: which typefaces train, validate and test must
not depend on what else is installed (Debian's ``chromium`` pulls in 16 more typefaces, and
with them every typeface of the split changed).
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import TypeAdapter

from benchmarks.house_numbers import render_house_numbers
from search.datasets import (
    DatasetError,
    DatasetSpec,
    ImageDataset,
    load_dataset,
    stratified_split,
)
from search.datasets.dataset import channel_stats
from search.datasets.fonts import find_font_files

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: The typefaces of the grouped sets: Debian's ``fonts-dejavu-core`` and ``fonts-dejavu-extra``
#: (the 22 files the calibration, ``benchmarks/fidelity_calibration.md``, was measured on).
BENCHMARK_TYPEFACES = tuple(
    f"DejaVu{name}"
    for name in (
        "MathTeXGyre",
        *(f"Sans{v}" for v in ("", "-Bold", "-BoldOblique", "-ExtraLight", "-Oblique")),
        *(f"SansCondensed{v}" for v in ("", "-Bold", "-BoldOblique", "-Oblique")),
        *(f"SansMono{v}" for v in ("", "-Bold", "-BoldOblique", "-Oblique")),
        *(f"Serif{v}" for v in ("", "-Bold", "-BoldItalic", "-Italic")),
        *(f"SerifCondensed{v}" for v in ("", "-Bold", "-BoldItalic", "-Italic")),
    )
)


def benchmark_font_dir(into: str | Path, search_in: str | None = None) -> Path:
    """Link the `BENCHMARK_TYPEFACES` found under ``search_in`` into the folder ``into``.

    Args:
        into: an empty or new folder; it receives one symbolic link per typeface.
        search_in: where to look (the system font folders when None).

    Raises:
        DatasetError: a typeface is missing (install ``fonts-dejavu-core fonts-dejavu-extra``).
    """
    found = {f.stem: f for f in find_font_files(search_in)}
    missing = [name for name in BENCHMARK_TYPEFACES if name not in found]
    if missing:
        raise DatasetError(
            f"the benchmark's typefaces {', '.join(missing)} are not installed "
            "(Debian: apt-get install fonts-dejavu-core fonts-dejavu-extra)"
        )
    folder = Path(into)
    folder.mkdir(parents=True, exist_ok=True)
    for name in BENCHMARK_TYPEFACES:
        (folder / found[name].name).symlink_to(found[name])
    return folder


@functools.cache
def _system_benchmark_fonts() -> tempfile.TemporaryDirectory[str]:
    """A folder of links to the machine's benchmark typefaces; the cache keeps it for the
    process's lifetime, and it is removed at exit."""
    folder = tempfile.TemporaryDirectory(prefix="augsearch-benchmark-fonts-")
    benchmark_font_dir(folder.name)
    return folder


@dataclass(frozen=True)
class BenchmarkSplits:
    """One benchmark data set, split.

    Attributes:
        name: the data set's name in reports.
        train: the training images a search may use.
        val: the validation images a search may use.
        test: held out from every search; only the evaluation scores on it.
        training_part: ``train`` and ``val`` together, which the evaluation trains on.
    """

    name: str
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    training_part: ImageDataset

    def describe(self) -> str:
        """Sizes (and typefaces, for grouped sets) in one line."""
        text = (
            f"{self.name}: train {len(self.train)} / val {len(self.val)} / test "
            f"{len(self.test)} images, {self.train.num_classes} classes"
        )
        groups = [d.groups for d in (self.train, self.val, self.test)]
        if all(g is not None for g in groups):
            counts = [len(set(g.tolist())) for g in groups if g is not None]
            text += f"; typefaces {counts[0]} train / {counts[1]} val / {counts[2]} test"
            names = [self._typeface_names(d) for d in (self.train, self.val)]
            if all(names):
                text += f" (train: {', '.join(names[0])}; val: {', '.join(names[1])})"
        return text

    @staticmethod
    def _typeface_names(part: ImageDataset) -> list[str]:
        if part.groups is None or not part.group_names:
            return []
        return [part.group_names[g] for g in sorted(set(part.groups.tolist()))]


def _rank_in_group_class(ds: ImageDataset, groups: np.ndarray) -> np.ndarray:
    """Each image's rank among the images of its (group, class) pair, in dataset order."""
    keys = groups * ds.num_classes + ds.labels.numpy()
    order = np.argsort(keys, kind="stable")
    starts = np.searchsorted(keys[order], keys[order], side="left")
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys)) - starts
    return rank


def _with_stats_of(part: ImageDataset, *splits: ImageDataset) -> list[ImageDataset]:
    """The splits normalised with the statistics of ``part`` alone (the test stays unseen)."""
    mean, std = channel_stats(part.images)
    return [dataclasses.replace(d, mean=list(mean), std=list(std)) for d in splits]


@dataclass(frozen=True)
class TypefaceSplit:
    """How a grouped set is split by typeface.

    Attributes:
        typefaces: typefaces of the training part (train and val); every other typeface of
            the machine goes to test, so the test measures generalisation to unseen ones.
        val_typefaces: how many of those make the validation split.
        per_font: images of each class per typeface in the training part.
        test_per_font: images of each class per typeface in the test split (more than
            ``per_font`` makes the test less noisy at no training cost).
    """

    typefaces: int
    val_typefaces: int
    per_font: int
    test_per_font: int

    def __post_init__(self) -> None:
        if not 1 <= self.val_typefaces < self.typefaces:
            raise ValueError("need 1 <= val_typefaces < typefaces")
        if self.per_font < 1 or self.test_per_font < 1:
            raise ValueError("per_font and test_per_font must be positive")

    @property
    def rendered_per_font(self) -> int:
        """Images to render per class and typeface."""
        return max(self.per_font, self.test_per_font)


def _by_typeface(name: str, ds: ImageDataset, split: TypefaceSplit, seed: int) -> BenchmarkSplits:
    """Draw the training part's typefaces (seeded), val among them; the others are test."""
    if ds.groups is None:
        raise DatasetError(f"{name}: a grouped dataset is needed")
    groups = ds.groups.numpy()
    ids = np.unique(groups)
    if split.typefaces >= len(ids):
        raise DatasetError(
            f"{name}: {split.typefaces} training typefaces leave none of the {len(ids)} for test"
        )
    order = np.random.default_rng(seed).permutation(ids)
    in_part = np.isin(groups, order[: split.typefaces])
    in_val = np.isin(groups, order[: split.val_typefaces])
    rank = _rank_in_group_class(ds, groups)
    kept = rank < split.per_font
    masks = (in_part & kept, in_part & ~in_val & kept, in_val & kept)
    part, train, val = (ds.subset(np.flatnonzero(m).tolist()) for m in masks)
    test = ds.subset(np.flatnonzero(~in_part & (rank < split.test_per_font)).tolist())
    part, train, val, test = _with_stats_of(part, part, train, val, test)
    return BenchmarkSplits(name, train, val, test, part)


#: Calibrated (``benchmarks/fidelity_calibration.md``): 3 of the machine's typefaces for the
#: training part, every other one (19 of 22 on a stock Debian with DejaVu) for test.
FONTS_SPLIT = TypefaceSplit(typefaces=3, val_typefaces=1, per_font=20, test_per_font=4)


def fonts_splits(
    *,
    characters: str = LETTERS,
    split: TypefaceSplit = FONTS_SPLIT,
    seed: int = 0,
    font_dir: str | None = None,
) -> BenchmarkSplits:
    """Characters in the benchmark's typefaces; test and val hold out whole typefaces.

    Args:
        characters: one class per character.
        split: typefaces and images per typeface of each part.
        seed: seeds the rendering and the choice of typefaces.
        font_dir: the typefaces to draw on (`BENCHMARK_TYPEFACES` of the machine when None).
    """
    spec = TypeAdapter(DatasetSpec).validate_python(
        {"source": "fonts", "characters": characters, "per_font": split.rendered_per_font,
         "seed": seed, "path": font_dir or _system_benchmark_fonts().name}
    )  # fmt: skip
    return _by_typeface("fonts", load_dataset(spec), split, seed)


#: Calibrated (``benchmarks/fidelity_calibration.md``), as `FONTS_SPLIT`.
HOUSE_NUMBERS_SPLIT = TypefaceSplit(typefaces=3, val_typefaces=1, per_font=40, test_per_font=10)


def house_numbers_splits(
    *, split: TypefaceSplit = HOUSE_NUMBERS_SPLIT, seed: int = 0, font_dir: str | None = None
) -> BenchmarkSplits:
    """SVHN-like colour digits (:mod:`benchmarks.house_numbers`); test and val by typeface.

    Args:
        split: typefaces and images per typeface of each part.
        seed: seeds the rendering and the choice of typefaces.
        font_dir: the typefaces to draw on (`BENCHMARK_TYPEFACES` of the machine when None).
    """
    font_dir = font_dir or _system_benchmark_fonts().name
    ds = render_house_numbers(split.rendered_per_font, seed=seed, font_dir=font_dir)
    return _by_typeface("house-numbers", ds, split, seed)


def digits_splits(
    *, test_fraction: float = 0.3, val_fraction: float = 0.2, seed: int = 0
) -> BenchmarkSplits:
    """scikit-learn's 1797 digits at 32x32: stratified test, then stratified val."""
    ds = load_dataset(TypeAdapter(DatasetSpec).validate_python({"source": "digits"}))
    rest, test = stratified_split(ds, test_fraction, seed=seed)
    train, val = stratified_split(rest, val_fraction, seed=seed + 1)
    rest, train, val, test = _with_stats_of(rest, rest, train, val, test)
    return BenchmarkSplits("digits", train, val, test, rest)


#: The benchmark's data sets at their calibrated sizes, by name.
BENCHMARK_SETS: dict[str, Callable[[], BenchmarkSplits]] = {
    "fonts": fonts_splits,
    "house-numbers": house_numbers_splits,
    "digits": digits_splits,
}


def write_image_folder(splits: BenchmarkSplits, root: str | Path) -> Path:
    """Write ``train/`` and ``val/`` folders of class folders of PNGs, as a user uploads them.

    The test split is not written: the search must never see it. Grayscale sets are written
    as 8-bit grayscale PNGs, colour sets as RGB; PNG is lossless, so decoding the folder gives
    back the same pixels.

    Returns:
        The root folder.
    """
    root = Path(root)
    for part, ds in (("train", splits.train), ("val", splits.val)):
        for name in ds.classes:
            (root / part / name).mkdir(parents=True, exist_ok=True)
        pixels = ds.images.permute(0, 2, 3, 1).numpy()
        for i, (image, label) in enumerate(zip(pixels, ds.labels.tolist(), strict=True)):
            array = image[..., 0] if ds.channels == 1 else image
            path = root / part / ds.classes[label] / f"{i:05d}.png"
            Image.fromarray(np.ascontiguousarray(array)).save(path)
    return root
