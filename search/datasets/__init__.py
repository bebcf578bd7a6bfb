"""Datasets: sources, the decoded uint8 tensor cache and seeded splits."""

from search.datasets.dataset import DatasetError, ImageDataset
from search.datasets.loader import SOURCES, DatasetSource, cache_key, load_dataset
from search.datasets.spec import DatasetSpec
from search.datasets.splits import group_split, kfold, stratified_split, stratified_subset

__all__ = [
    "SOURCES",
    "DatasetError",
    "DatasetSource",
    "DatasetSpec",
    "ImageDataset",
    "cache_key",
    "group_split",
    "kfold",
    "load_dataset",
    "stratified_split",
    "stratified_subset",
]
