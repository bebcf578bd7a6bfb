"""The splits of one search: the proxy's training subset, validation, final training, held-out.

Shared by the search's trials (`search.objective`) and the jobs that train on a search's data
(`search.self_training`, `search.compress`).
"""

from __future__ import annotations

from dataclasses import dataclass

from search.datasets import (
    ImageDataset,
    fixed_splits,
    group_split,
    stratified_split,
    stratified_subset,
)
from search.spec import SearchSpec


@dataclass
class SearchData:
    """The splits of one search: reduced training set, validation, full training, held-out.

    ``val`` and ``test`` are the user's own parts when the dataset fixes them (``ds.splits``);
    ``test`` is only read by the final trial, so nothing in the search sees it.
    """

    search_train: ImageDataset
    val: ImageDataset
    final_train: ImageDataset
    test: ImageDataset | None


def split_for_search(ds: ImageDataset, spec: SearchSpec) -> SearchData:
    """Split a dataset as the spec asks, keeping the parts the user fixed.

    Parts the user fixed (``train/``, ``val/``, ``test/`` folders, a manifest's ``split``
    column) are used as given: the user says what shift validation measures, and a test part
    is the held-out split. A part not given is drawn from the training part: the held-out part
    first (``holdout_fraction``), then validation. When the dataset has groups (typefaces, a
    manifest's ``group`` column) drawn parts hold whole groups: the test holds unseen groups,
    and so does validation, so the search scores policies by how well they generalise to a
    group the training never saw -- the shift the test measures. Search trials train on a
    ``train_size`` subset of the training part, the final training on all of it.
    """
    train, val, test = fixed_splits(ds)
    grouped = ds.groups is not None and len(ds.group_names) >= 3

    def groups_in(part: ImageDataset) -> int:
        return 0 if part.groups is None else len(set(part.groups.tolist()))

    if test is None and spec.holdout_fraction > 0:
        if grouped and groups_in(train) >= 3:  # two groups at least are left for validation
            train, test = group_split(train, test_fraction=spec.holdout_fraction, seed=spec.seed)
        else:
            train, test = stratified_split(train, spec.holdout_fraction, seed=spec.seed + 1)
    if val is None:
        if grouped and groups_in(train) >= 2:
            train, val = group_split(train, test_fraction=spec.val_fraction, seed=spec.seed + 2)
        else:
            train, val = stratified_split(train, spec.val_fraction, seed=spec.seed)
    search_train = train
    if spec.train_size is not None and spec.train_size < len(train):
        search_train = stratified_subset(train, spec.train_size, spec.seed)
    return SearchData(search_train, val, train, test)
