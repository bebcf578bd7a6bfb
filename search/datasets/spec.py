"""The description of a dataset, as a search spec or the REST API carries it.

`DatasetSpec` is a union discriminated on ``source``: one model per kind of dataset, each with
only the fields that kind reads. The wire format is the one of the single record used before
(``{"source": "fonts", "characters": "ABC"}``); specs stored by that record carried every
source's fields, so a field of another source is accepted while it holds that record's default
(and dropped), and refused otherwise.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

TorchvisionName = Literal["CIFAR10", "CIFAR100", "SVHN", "MNIST", "FashionMNIST"]
PathField = Annotated[str, Field(min_length=1, max_length=4096)]
ImageSize = Annotated[int | None, Field(ge=8, le=512)]

# The defaults of the single record every spec was before the union (see the module docstring).
_LEGACY_DEFAULTS: dict[str, Any] = {
    "path": None,
    "name": None,
    "split": "train",
    "download": False,
    "num_classes": 4,
    "per_class": 64,
    "size": 32,
    "channels": 3,
    "characters": "0123456789",
    "per_font": 8,
    "seed": 0,
}


class _SourceSpec(BaseModel):
    """What every source's spec shares.

    Every source also has ``image_size``: resize every image to this square size (for image
    folders with mixed sizes and no ``image_size``, the most common size is used). It is
    declared after ``source`` in each model so that dumps start with the source.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_legacy_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        own = cls.model_fields
        return {
            key: value
            for key, value in data.items()
            if key in own or key not in _LEGACY_DEFAULTS or value != _LEGACY_DEFAULTS[key]
        }


class DigitsSpec(_SourceSpec):
    """scikit-learn's bundled handwritten digits, rendered 32x32."""

    source: Literal["digits"] = "digits"
    image_size: ImageSize = None


class ImageFolderSpec(_SourceSpec):
    """A folder of class folders, or of ``train/``, ``val/`` (and ``test/``) split folders.

    Attributes:
        path: local path or fsspec URL of the folder.
    """

    source: Literal["imagefolder"] = "imagefolder"
    image_size: ImageSize = None
    path: PathField


class ArchiveSpec(_SourceSpec):
    """A zip or tar archive of an image folder, or of a manifest and its images.

    Attributes:
        path: local path or fsspec URL of the archive file.
    """

    source: Literal["archive"] = "archive"
    image_size: ImageSize = None
    path: PathField


class ManifestSpec(_SourceSpec):
    """A CSV or Parquet table of image files (``path``, ``label``, optional ``group``, ``split``).

    Attributes:
        path: local path or fsspec URL of the manifest; the image paths it lists are relative
            to its folder.
    """

    source: Literal["manifest"] = "manifest"
    image_size: ImageSize = None
    path: PathField


class TorchvisionSpec(_SourceSpec):
    """CIFAR10, CIFAR100, SVHN, MNIST or FashionMNIST in their on-disk formats.

    Attributes:
        path: root folder of the files.
        name: the dataset.
        split: which split to read (``extra`` exists for SVHN only).
        download: let torchvision download missing files.
    """

    source: Literal["torchvision"] = "torchvision"
    image_size: ImageSize = None
    path: PathField
    name: TorchvisionName
    split: Literal["train", "test", "extra"] = "train"
    download: bool = False

    @model_validator(mode="after")
    def _check_split(self) -> TorchvisionSpec:
        if self.split == "extra" and self.name != "SVHN":
            raise ValueError(f"split 'extra' exists for SVHN only, not {self.name}")
        return self


class SyntheticSpec(_SourceSpec):
    """Seeded random-pattern classes.

    Attributes:
        num_classes: number of classes.
        per_class: images per class.
        size: side of the generated images.
        channels: 1 or 3.
        seed: generator seed.
    """

    source: Literal["synthetic"] = "synthetic"
    image_size: ImageSize = None
    num_classes: int = Field(default=4, ge=2, le=100)
    per_class: int = Field(default=64, ge=1, le=10_000)
    size: int = Field(default=32, ge=8, le=256)
    channels: Literal[1, 3] = 3
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class FontsSpec(_SourceSpec):
    """Characters rendered in the machine's typefaces, grouped by typeface.

    Attributes:
        path: a folder of font files (optional: the system font folders otherwise).
        size: side of the rendered images.
        characters: one class per character.
        per_font: renderings of each character in each font.
        seed: generator seed.
    """

    source: Literal["fonts"] = "fonts"
    image_size: ImageSize = None
    path: PathField | None = None
    size: int = Field(default=32, ge=8, le=256)
    characters: str = Field(default="0123456789", min_length=2, max_length=62)
    per_font: int = Field(default=8, ge=1, le=1000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _check_characters(self) -> FontsSpec:
        if len(set(self.characters)) != len(self.characters):
            raise ValueError("characters must not repeat")
        return self


DatasetSpec = Annotated[
    DigitsSpec
    | ImageFolderSpec
    | ArchiveSpec
    | ManifestSpec
    | TorchvisionSpec
    | SyntheticSpec
    | FontsSpec,
    Field(discriminator="source"),
]
"""Where a dataset comes from and how to decode it: one model per ``source``."""

_ADAPTER: TypeAdapter[DatasetSpec] = TypeAdapter(
    DatasetSpec, config=ConfigDict(title="DatasetSpec")
)


#: The topics of ``wordnet-topics``: WordNet noun lexicographer files (``noun.animal``...).
WordNetTopic = Literal[
    "act",
    "animal",
    "artifact",
    "body",
    "cognition",
    "communication",
    "food",
    "location",
    "person",
    "plant",
    "state",
    "substance",
]


class _TextSourceSpec(BaseModel):
    """What every text source's spec shares (text sources had no legacy record)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class WordNetTopicsSpec(_TextSourceSpec):
    """Built-in text set: WordNet noun definitions labelled by topic (no network).

    Each text is the definition of one noun synset of the WordNet 3.0 database (Debian's
    ``wordnet-base``); its label is the synset's lexicographer file (``animal``, ``food``...).
    A fixed fifth of each class is the test split, never seen by a search.

    Attributes:
        topics: the classes (two or more of :data:`WordNetTopic`); None means all twelve.
        per_class: definitions per class, drawn by a fixed hash of the synset.
    """

    source: Literal["wordnet-topics"] = "wordnet-topics"
    topics: list[WordNetTopic] | None = Field(default=None, min_length=2)
    per_class: int = Field(default=300, ge=10, le=2000)

    @model_validator(mode="after")
    def _check_topics(self) -> WordNetTopicsSpec:
        if self.topics is not None and len(set(self.topics)) != len(self.topics):
            raise ValueError("topics must not repeat")
        return self


class TextTableSpec(_TextSourceSpec):
    """A CSV, JSONL or Parquet table of texts (``text``, ``label``, optional ``group``,
    ``split``).

    Attributes:
        path: local path of the table (``.csv``, ``.jsonl`` or ``.parquet``).
    """

    source: Literal["text-table"] = "text-table"
    path: PathField


TextDatasetSpec = Annotated[WordNetTopicsSpec | TextTableSpec, Field(discriminator="source")]
"""Where a text dataset comes from: one model per ``source``."""

AnyDatasetSpec = Annotated[
    DigitsSpec
    | ImageFolderSpec
    | ArchiveSpec
    | ManifestSpec
    | TorchvisionSpec
    | SyntheticSpec
    | FontsSpec
    | WordNetTopicsSpec
    | TextTableSpec,
    Field(discriminator="source"),
]
"""An image or a text dataset spec, discriminated on ``source`` like each of the two."""

_TEXT_ADAPTER: TypeAdapter[TextDatasetSpec] = TypeAdapter(
    TextDatasetSpec, config=ConfigDict(title="TextDatasetSpec")
)
_ANY_ADAPTER: TypeAdapter[AnyDatasetSpec] = TypeAdapter(
    AnyDatasetSpec, config=ConfigDict(title="AnyDatasetSpec")
)


def parse_text_dataset_spec(data: Any) -> TextDatasetSpec:
    """Validate a text dataset spec (e.g. ``{"source": "wordnet-topics"}``).

    Raises:
        pydantic.ValidationError: an unknown source, a missing or foreign field.
    """
    return _TEXT_ADAPTER.validate_python(data)


def parse_any_dataset_spec(data: Any) -> AnyDatasetSpec:
    """Validate an image or a text dataset spec.

    Raises:
        pydantic.ValidationError: an unknown source, a missing or foreign field.
    """
    return _ANY_ADAPTER.validate_python(data)


def is_text_spec(spec: AnyDatasetSpec) -> bool:
    """Whether a spec describes a text dataset."""
    return isinstance(spec, WordNetTopicsSpec | TextTableSpec)


def parse_dataset_spec(data: Any) -> DatasetSpec:
    """Validate a dataset spec given as a mapping (e.g. ``{"source": "digits"}``).

    Raises:
        pydantic.ValidationError: an unknown source, a missing or foreign field.
    """
    return _ADAPTER.validate_python(data)
