"""A text classification dataset held in memory, its limits and its seeded splits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from search.datasets.dataset import SPLIT_CODES, DatasetError

__all__ = ["DatasetError", "TextDataset", "TextLimits", "stratified_indices"]


@dataclass(frozen=True)
class TextLimits:
    """The bounds of reading one text dataset.

    Attributes:
        max_file_bytes: largest table file.
        max_rows: most rows (texts) of a table.
        max_text_chars: longest text, in characters.
    """

    max_file_bytes: int = 64 * 1024**2
    max_rows: int = 200_000
    max_text_chars: int = 10_000


DEFAULT_TEXT_LIMITS = TextLimits()


@dataclass
class TextDataset:
    """A whole text classification dataset.

    Attributes:
        texts: the texts.
        labels: int64 array (N,) of class indices.
        classes: class names; ``classes[i]`` is the name of label ``i``.
        groups: optional int64 array (N,) of group ids, with their names in ``group_names``.
        splits: optional int64 array (N,) of split codes (`SPLIT_CODES`: 0 train, 1 val,
            2 test) the dataset fixes; None when the search draws every split.
    """

    texts: list[str]
    labels: np.ndarray
    classes: list[str]
    groups: np.ndarray | None = None
    group_names: list[str] = field(default_factory=list)
    splits: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.texts)
        if self.labels.shape != (n,):
            raise DatasetError(f"labels shape {self.labels.shape} does not match {n} texts")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DatasetError(f"labels must lie in [0, {len(self.classes)})")
        for name, column in (("groups", self.groups), ("splits", self.splits)):
            if column is not None and column.shape != (n,):
                raise DatasetError(f"{name} must hold one value per text")
        if self.splits is not None and n and not set(np.unique(self.splits)) <= {0, 1, 2}:
            raise DatasetError(f"splits must hold codes in [0, {len(SPLIT_CODES)})")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def content_hash(self) -> str:
        """sha256 of the texts, labels and classes."""
        digest = hashlib.sha256()
        for text, label in zip(self.texts, self.labels.tolist(), strict=True):
            digest.update(f"{label}\t{text}\n".encode())
        digest.update("\n".join(self.classes).encode())
        return digest.hexdigest()

    def subset(self, indices: Sequence[int] | np.ndarray) -> TextDataset:
        """The texts at ``indices``, with their classes kept."""
        idx = np.asarray(indices, dtype=np.int64)
        return TextDataset(
            texts=[self.texts[i] for i in idx.tolist()],
            labels=self.labels[idx],
            classes=list(self.classes),
            groups=None if self.groups is None else self.groups[idx],
            group_names=list(self.group_names),
            splits=None if self.splits is None else self.splits[idx],
        )

    def part(self, split: str) -> TextDataset:
        """The texts the dataset fixes to ``split`` (``train``, ``val`` or ``test``).

        Raises:
            DatasetError: when the dataset fixes no splits.
        """
        if self.splits is None:
            raise DatasetError("this dataset fixes no splits")
        return self.subset(np.flatnonzero(self.splits == SPLIT_CODES[split]))


def stratified_indices(
    labels: np.ndarray, fraction: float, seed: int, size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (rest, held out): ``fraction`` of every class held out.

    Args:
        labels: class index per text.
        fraction: share of each class held out (at least one text of a class with two).
        seed: generator seed.
        size: keep only this many of the rest, in proportion to the classes.

    Raises:
        DatasetError: for a fraction outside (0, 1) or a size larger than the rest.
    """
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"held-out fraction {fraction} must lie in (0, 1)")
    rng = np.random.default_rng(seed)
    rest, held = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        count = max(1, round(fraction * len(members))) if len(members) > 1 else 0
        held.append(members[:count])
        rest.append(members[count:])
    rest_all = np.concatenate(rest)
    if size is not None:
        if size > len(rest_all):
            raise DatasetError(f"a training size of {size} exceeds the {len(rest_all)} texts")
        rest_all = _proportional(rest, size)
    return np.sort(rest_all), np.sort(np.concatenate(held))


def _proportional(parts: list[np.ndarray], size: int) -> np.ndarray:
    counts = np.array([len(p) for p in parts], dtype=np.float64)
    exact = counts * size / counts.sum()
    alloc = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - alloc), kind="stable")
    alloc[order[: size - int(alloc.sum())]] += 1
    return np.concatenate([p[:k] for p, k in zip(parts, alloc, strict=True)])


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0 .. ``folds`` - 1) of every text: each class dealt evenly over the folds."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        out[members] = (np.arange(len(members)) + int(rng.integers(folds))) % folds
    return out


def concatenate(first: TextDataset, second: TextDataset) -> TextDataset:
    """The texts of two parts of one dataset (same classes), the first's before the second's."""
    if first.classes != second.classes:
        raise DatasetError("the parts to join have different classes")
    return TextDataset(
        texts=[*first.texts, *second.texts],
        labels=np.concatenate([first.labels, second.labels]),
        classes=list(first.classes),
    )
