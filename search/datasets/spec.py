"""The description of a dataset, as a search spec or the REST API carries it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Source = Literal["digits", "imagefolder", "archive", "torchvision", "synthetic", "fonts"]
TorchvisionName = Literal["CIFAR10", "CIFAR100", "SVHN", "MNIST", "FashionMNIST"]


class DatasetSpec(BaseModel):
    """Where a dataset comes from and how to decode it.

    Attributes:
        source: ``digits`` (scikit-learn's bundled digits at 32x32), ``imagefolder`` (a
            directory of class folders), ``archive`` (a zip or tar of such a directory),
            ``torchvision`` (CIFAR10, CIFAR100, SVHN, MNIST, FashionMNIST in their on-disk
            formats), ``synthetic`` (seeded random-pattern classes) or ``fonts`` (characters
            rendered in the machine's typefaces, grouped by font).
        path: local path or fsspec URL of the folder (imagefolder), the archive file
            (archive), the root folder of the files (torchvision) or a folder of font files
            (fonts, optional: the system font folders otherwise).
        name: torchvision dataset name.
        split: torchvision split (``extra`` exists for SVHN only).
        download: let torchvision sources download missing files.
        image_size: resize every image to this square size; for image folders with mixed
            sizes and no ``image_size``, the most common size is used.
        num_classes: synthetic: number of classes.
        per_class: synthetic: images per class.
        size: synthetic and fonts: side of the generated images.
        channels: synthetic: 1 or 3.
        characters: fonts: one class per character.
        per_font: fonts: renderings of each character in each font.
        seed: synthetic and fonts: generator seed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Source
    path: str | None = Field(default=None, min_length=1, max_length=4096)
    name: TorchvisionName | None = None
    split: Literal["train", "test", "extra"] = "train"
    download: bool = False
    image_size: int | None = Field(default=None, ge=8, le=512)
    num_classes: int = Field(default=4, ge=2, le=100)
    per_class: int = Field(default=64, ge=1, le=10_000)
    size: int = Field(default=32, ge=8, le=256)
    channels: Literal[1, 3] = 3
    characters: str = Field(default="0123456789", min_length=2, max_length=62)
    per_font: int = Field(default=8, ge=1, le=1000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _check_source_fields(self) -> DatasetSpec:
        if self.source in ("imagefolder", "archive", "torchvision") and not self.path:
            raise ValueError(f"source {self.source!r} needs a path")
        if self.source == "torchvision":
            if self.name is None:
                raise ValueError("source 'torchvision' needs a name (CIFAR10, CIFAR100, ...)")
            if self.split == "extra" and self.name != "SVHN":
                raise ValueError(f"split 'extra' exists for SVHN only, not {self.name}")
        elif self.name is not None:
            raise ValueError(f"name is only used by the torchvision source, not {self.source!r}")
        if self.source == "fonts" and len(set(self.characters)) != len(self.characters):
            raise ValueError("characters must not repeat")
        return self
