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
    an allowed root, with ``path``).
    """

    model_config = ConfigDict(extra="forbid")
    source: Literal["digits", "torchvision", "path", "manifest"]
    name: str | None = Field(default=None, min_length=1, max_length=200)
    dataset: Literal["CIFAR10", "CIFAR100", "SVHN", "MNIST", "FashionMNIST"] | None = None
    path: str | None = Field(default=None, min_length=1, max_length=4096)
    image_size: int | None = Field(default=None, ge=8, le=512)
    download: bool = False

    @model_validator(mode="after")
    def _fields_match_source(self) -> DatasetCreate:
        if self.source == "torchvision" and self.dataset is None:
            raise ValueError("source 'torchvision' needs 'dataset' (e.g. 'CIFAR10')")
        if self.source in ("path", "manifest") and self.path is None:
            raise ValueError(f"source {self.source!r} needs 'path'")
        if self.source != "torchvision" and self.dataset is not None:
            raise ValueError("'dataset' is only for source 'torchvision'")
        if self.source != "torchvision" and self.download:
            raise ValueError("'download' is only for source 'torchvision'")
        if self.source not in ("path", "manifest") and self.path is not None:
            raise ValueError("'path' is only for sources 'path' and 'manifest'")
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
