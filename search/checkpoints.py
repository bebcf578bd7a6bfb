"""Checkpoints: safetensors weights plus a JSON model card, stored through ``optuna.artifacts``.

Weights are written with ``safetensors.torch.save_file`` and read back with
``safetensors.torch.load``; nothing is ever unpickled. The file's metadata carries the whole
model card as JSON (key ``model_card``; safetensors metadata maps strings to strings), so a
checkpoint of a ``timm:`` architecture loads with torch, timm and safetensors alone:
``timm.create_model(card["timm_name"], **card["timm_kwargs"])`` then ``load_state_dict``. The sha256 of the weights file is
recorded in the card and in the trial's user attrs, and verified on every load. Files on a
local or shared file system are written atomically (`AtomicFileSystemArtifactStore`): a worker
killed mid-write leaves a temporary file, never a partial artifact under its id.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypedDict

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts._protocol import ArtifactStore
from optuna.storages import BaseStorage
from optuna.study import Study
from optuna.trial import FrozenTrial, Trial
from pydantic import BaseModel, ConfigDict, Field, model_validator
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file as save_safetensors
from torch import nn

from search.models import TIMM_ARCHS, TimmConfig, build_model, create_timm_model, timm_config

StudyOrTrial = Study | Trial | FrozenTrial
#: Key of the model card (JSON) in a checkpoint's safetensors metadata.
CARD_METADATA_KEY = "model_card"
#: The ``create_model`` arguments a card may record (`search.models.timm_config` writes them);
#: anything else (``pretrained``, a weights URL...) is refused.
TIMM_KWARGS = frozenset(
    {"num_classes", "in_chans", "output_stride", "channels", "drop_rate", "drop_path_rate"}
    | {"stem_width"}
)


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match its recorded checksum."""


class ModelOptions(TypedDict):
    """Keyword arguments of `build_model` that a card's recipe gives."""

    width: float
    dropout: float
    drop_path: float


class ModelCard(BaseModel):
    """What a checkpoint is: enough to rebuild the model and its input pipeline.

    Attributes:
        schema_version: version of this card format (2 adds ``timm_name`` and
            ``timm_kwargs``; version 1 cards still load).
        arch: model architecture name (``search.models.ARCHS`` or ``TIMM_ARCHS``).
        num_classes: number of output classes.
        classes: class names, in label order.
        in_channels: image channels.
        image_size: (height, width) of the inputs.
        mean: per-channel normalisation mean (in [0, 1] units).
        std: per-channel normalisation std.
        policy: the augmentation policy the model was trained with (Policy JSON).
        recipe: the trainer recipe (TrainerRecipe JSON).
        metrics: final metrics (``val_accuracy``, optionally ``test_accuracy``).
        sha256: sha256 of the safetensors file (left out of the copy in the file's metadata,
            which cannot hold its own hash).
        created_at: when the checkpoint was written.
        timm_name: for a ``timm:`` architecture, timm's model name; None otherwise.
        timm_kwargs: with ``timm_name``, every argument of ``timm.create_model`` (classes,
            channels and the small-image variant); derived from the arch, sizes and recipe
            when not given.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(default=2, ge=1, le=2)
    arch: str
    num_classes: int = Field(ge=2)
    classes: list[str]
    in_channels: int = Field(ge=1)
    image_size: tuple[int, int]
    mean: list[float]
    std: list[float]
    policy: dict[str, Any]
    recipe: dict[str, Any]
    metrics: dict[str, float] = Field(default_factory=dict)
    sha256: str = ""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    timm_name: str | None = None
    timm_kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _timm_model(self) -> ModelCard:
        timm_arch = TIMM_ARCHS.get(self.arch)
        if timm_arch is None:
            if self.timm_name is not None or self.timm_kwargs:
                raise ValueError(f"arch {self.arch!r} is not a timm architecture")
            return self
        if self.timm_name is None:
            config = timm_config(*self.model_args(), **self.model_options())
            self.timm_name, self.timm_kwargs = config.name, config.kwargs
        if self.timm_name != timm_arch.name:
            raise ValueError(f"timm_name {self.timm_name!r} does not match arch {self.arch!r}")
        unknown = sorted(set(self.timm_kwargs) - TIMM_KWARGS)
        if unknown:
            raise ValueError(f"timm_kwargs {unknown} are not allowed; known: {sorted(TIMM_KWARGS)}")
        expected = {"num_classes": self.num_classes, "in_chans": self.in_channels}
        if any(self.timm_kwargs.get(k) != v for k, v in expected.items()):
            raise ValueError(f"timm_kwargs must hold {expected}, got {self.timm_kwargs}")
        return self

    def model_args(self) -> tuple[str, int, int, tuple[int, int]]:
        """Arch, classes, channels and image size: the positional arguments of `build_model`."""
        return self.arch, self.num_classes, self.in_channels, self.image_size

    def model_options(self) -> ModelOptions:
        """Width, dropout and stochastic depth of the recipe, as `build_model` takes them."""
        return {
            "width": float(self.recipe.get("width", 1.0)),
            "dropout": float(self.recipe.get("dropout", 0.0)),
            "drop_path": float(self.recipe.get("drop_path", 0.0)),
        }


class AtomicFileSystemArtifactStore(FileSystemArtifactStore):
    """Optuna's file-system artifact store with atomic, durable writes.

    Each artifact is written to a hidden temporary file in the same directory, flushed and
    fsync'ed, then renamed onto its id with ``os.replace`` (atomic on POSIX), and the directory
    is fsync'ed so the rename survives a power loss.
    """

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Store ``content_body`` under ``artifact_id``, all or nothing."""
        target = self._get_filepath(artifact_id)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                shutil.copyfileobj(content_body, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def make_artifact_store(url_or_path: str | Path) -> ArtifactStore:
    """Build the artifact store for a local folder or an ``s3://bucket`` URL.

    Args:
        url_or_path: a directory (created if missing) or ``s3://bucket``.

    Returns:
        An `AtomicFileSystemArtifactStore` or a ``Boto3ArtifactStore``.

    Raises:
        ValueError: for an unsupported URL scheme or an S3 URL without a bucket.
    """
    text = str(url_or_path)
    if text.startswith("s3://"):
        bucket = text.removeprefix("s3://").strip("/")
        if not bucket or "/" in bucket:
            raise ValueError(f"artifact store URL {text!r} must be s3://<bucket>")
        import boto3  # lazily: only S3 deployments need it
        from optuna.artifacts import Boto3ArtifactStore

        return Boto3ArtifactStore(bucket, client=boto3.client("s3"))
    if "://" in text:
        raise ValueError(f"unsupported artifact store URL {text!r}: use a path or s3://bucket")
    path = Path(text)
    path.mkdir(parents=True, exist_ok=True)
    return AtomicFileSystemArtifactStore(str(path))


def _state_dict(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    # clone() breaks shared storage, which safetensors refuses to write.
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_metadata(card: ModelCard) -> dict[str, str]:
    """The safetensors metadata of a checkpoint: the card as JSON, without its sha256."""
    return {
        "format": "pt",
        "arch": card.arch,
        CARD_METADATA_KEY: card.model_dump_json(exclude={"sha256"}),
    }


def read_card(checkpoint: bytes | Path) -> ModelCard:
    """The model card stored in a checkpoint file's metadata (its tensors are not read).

    Args:
        checkpoint: the file's bytes or its path.

    Raises:
        CheckpointError: not a safetensors file, or one without a valid card (files written
            before cards went into the metadata hold only ``arch``).
    """
    head = checkpoint[:8] if isinstance(checkpoint, bytes) else _read_head(checkpoint, 8)
    size = int.from_bytes(head, "little") if len(head) == 8 else -1
    if not 0 < size <= 100_000_000:
        raise CheckpointError("not a safetensors file: bad header length")
    raw = (
        checkpoint[8 : 8 + size]
        if isinstance(checkpoint, bytes)
        else _read_head(checkpoint, 8 + size)[8:]
    )
    try:
        header = json.loads(raw)
        text = header.get("__metadata__", {})[CARD_METADATA_KEY]
    except (ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint has no model card in its metadata: {exc!r}") from exc
    try:
        return ModelCard.model_validate_json(text)
    except ValueError as exc:
        raise CheckpointError(f"the checkpoint's model card is invalid: {exc}") from exc


def _read_head(path: Path, size: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(size)


def build_model_from_card(card: ModelCard) -> nn.Module:
    """The card's model, freshly initialised, ready for ``load_state_dict`` of its weights.

    A ``timm:`` architecture is built exactly as a user without augsearch builds it:
    ``timm.create_model(card.timm_name, **card.timm_kwargs)``.
    """
    if card.timm_name is not None:
        return create_timm_model(TimmConfig(card.timm_name, dict(card.timm_kwargs)))
    return build_model(*card.model_args(), **card.model_options())


def save_checkpoint(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    card: ModelCard,
    artifact_store: ArtifactStore,
    study_or_trial: StudyOrTrial,
    storage: BaseStorage | None = None,
) -> tuple[str, str]:
    """Upload the weights as safetensors, the card in their metadata; fill ``card.sha256``.

    Args:
        model_or_state: the model or its state dict.
        card: the model card (its ``sha256`` is set here).
        artifact_store: where the file goes.
        study_or_trial: the study or trial the artifact belongs to.
        storage: needed when ``study_or_trial`` is a FrozenTrial.

    Returns:
        (artifact id, sha256 of the file).
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_safetensors(_state_dict(model_or_state), str(path), metadata=card_metadata(card))
        sha = _sha256(path)
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=artifact_store,
            file_path=str(path),
            study_or_trial=study_or_trial,
            storage=storage,
            mimetype="application/octet-stream",
        )
    card.sha256 = sha
    return artifact_id, sha


def save_model_card(
    card: ModelCard,
    artifact_store: ArtifactStore,
    study_or_trial: StudyOrTrial,
    storage: BaseStorage | None = None,
) -> str:
    """Upload the model card as a JSON artifact and return its id."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model_card.json"
        path.write_text(card.model_dump_json(indent=2))
        return optuna.artifacts.upload_artifact(
            artifact_store=artifact_store,
            file_path=str(path),
            study_or_trial=study_or_trial,
            storage=storage,
            mimetype="application/json",
            encoding="utf-8",
        )


def _download(artifact_store: ArtifactStore, artifact_id: str, dest: Path) -> None:
    try:
        optuna.artifacts.download_artifact(
            artifact_store=artifact_store, file_path=str(dest), artifact_id=artifact_id
        )
    except Exception as exc:
        raise CheckpointError(f"cannot read artifact {artifact_id!r}: {exc}") from exc


def load_checkpoint(
    artifact_store: ArtifactStore, artifact_id: str, expected_sha256: str | None = None
) -> tuple[dict[str, torch.Tensor], str]:
    """Download a checkpoint and read it with safetensors (never unpickling).

    Args:
        artifact_store: where the file lives.
        artifact_id: id returned by `save_checkpoint`.
        expected_sha256: if given, the file must hash to it.

    Returns:
        (state dict on the CPU, sha256 of the file).

    Raises:
        CheckpointError: if the file is missing, not safetensors, or its hash differs.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        _download(artifact_store, artifact_id, path)
        sha = _sha256(path)
        if expected_sha256 is not None and sha != expected_sha256:
            raise CheckpointError(
                f"checkpoint {artifact_id!r} has sha256 {sha}, expected {expected_sha256}"
            )
        try:
            state = load_safetensors(path.read_bytes())
        except Exception as exc:
            raise CheckpointError(f"checkpoint {artifact_id!r} is not safetensors: {exc}") from exc
    return state, sha


def load_model_card(artifact_store: ArtifactStore, artifact_id: str) -> ModelCard:
    """Download and validate a model card."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model_card.json"
        _download(artifact_store, artifact_id, path)
        try:
            return ModelCard.model_validate(json.loads(path.read_text()))
        except ValueError as exc:
            raise CheckpointError(f"model card {artifact_id!r} is invalid: {exc}") from exc
