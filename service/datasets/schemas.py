"""Request and response models of the datasets API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TORCHVISION_DATASETS = ("CIFAR10", "CIFAR100", "SVHN", "MNIST", "FashionMNIST")


class DatasetCreate(BaseModel):
    """Register a dataset already reachable by the server (uploads use the multipart route).

    ``source`` picks the kind: ``digits`` (built in), ``torchvision`` (with ``dataset``),
    ``path`` (an ImageFolder directory under an allowed root, with ``path``; ``train/`` and
    ``val/`` split folders are kept as given) or ``manifest`` (a CSV or Parquet manifest under
    an allowed root, with ``path``); text sets: ``wordnet-topics`` (built in; optional
    ``topics`` and ``per_class``) or ``text-table`` (a .csv, .jsonl or .parquet table of
    ``text`` and ``label`` under an allowed root, with ``path``).
    """

    model_config = ConfigDict(extra="forbid")
    source: Literal["digits", "torchvision", "path", "manifest", "wordnet-topics", "text-table"]
    name: str | None = Field(default=None, min_length=1, max_length=200)
    dataset: Literal["CIFAR10", "CIFAR100", "SVHN", "MNIST", "FashionMNIST"] | None = None
    path: str | None = Field(default=None, min_length=1, max_length=4096)
    image_size: int | None = Field(default=None, ge=8, le=512)
    download: bool = False
    # Checked against WordNet's topics when the set is read (no torch import here).
    topics: list[str] | None = Field(default=None, min_length=2, max_length=12)
    per_class: int | None = Field(default=None, ge=10, le=2000)

    @model_validator(mode="after")
    def _fields_match_source(self) -> DatasetCreate:
        if self.source == "torchvision" and self.dataset is None:
            raise ValueError("source 'torchvision' needs 'dataset' (e.g. 'CIFAR10')")
        if self.source in ("path", "manifest", "text-table") and self.path is None:
            raise ValueError(f"source {self.source!r} needs 'path'")
        if self.source != "torchvision" and self.dataset is not None:
            raise ValueError("'dataset' is only for source 'torchvision'")
        if self.source != "torchvision" and self.download:
            raise ValueError("'download' is only for source 'torchvision'")
        if self.source not in ("path", "manifest", "text-table") and self.path is not None:
            raise ValueError("'path' is only for sources 'path', 'manifest' and 'text-table'")
        if self.source != "wordnet-topics" and (self.topics or self.per_class) is not None:
            raise ValueError("'topics' and 'per_class' are only for source 'wordnet-topics'")
        if self.source in ("wordnet-topics", "text-table") and self.image_size is not None:
            raise ValueError(f"'image_size' is for images, not source {self.source!r}")
        return self


class DatasetRead(BaseModel):
    """A registered dataset and its decoded statistics."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    owner_id: int
    name: str
    source: str
    state: str
    spec: dict[str, Any]
    num_images: int
    classes: list[str]
    counts_per_class: dict[str, int]
    image_size: int
    channels: int
    content_hash: str
    created_at: datetime
