"""Datasets: sources, their memory limits, the decoded uint8 tensor cache and seeded splits."""

from search.datasets.dataset import SPLIT_CODES, DatasetError, ImageDataset
from search.datasets.limits import DecodeLimits
from search.datasets.loader import SOURCES, DatasetSource, cache_key, load_dataset
from search.datasets.spec import (
    ArchiveSpec,
    DatasetSpec,
    DigitsSpec,
    FontsSpec,
    ImageFolderSpec,
    ManifestSpec,
    SyntheticSpec,
    TorchvisionSpec,
    parse_dataset_spec,
)
from search.datasets.splits import (
    fixed_splits,
    group_split,
    kfold,
    stratified_split,
    stratified_subset,
)

__all__ = [
    "SOURCES",
    "SPLIT_CODES",
    "ArchiveSpec",
    "DatasetError",
    "DatasetSource",
    "DatasetSpec",
    "DecodeLimits",
    "DigitsSpec",
    "FontsSpec",
    "ImageDataset",
    "ImageFolderSpec",
    "ManifestSpec",
    "SyntheticSpec",
    "TorchvisionSpec",
    "cache_key",
    "fixed_splits",
    "group_split",
    "kfold",
    "load_dataset",
    "parse_dataset_spec",
    "stratified_split",
    "stratified_subset",
]
