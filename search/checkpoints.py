"""Checkpoints: safetensors weights plus a JSON model card, stored through ``optuna.artifacts``.

Weights are written with ``safetensors.torch.save_file`` and read back with
``safetensors.torch.load``; nothing is ever unpickled. The sha256 of the weights file is
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
from typing import Any, BinaryIO

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts._protocol import ArtifactStore
from optuna.storages import BaseStorage
from optuna.study import Study
from optuna.trial import FrozenTrial, Trial
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file as save_safetensors
from torch import nn

StudyOrTrial = Study | Trial | FrozenTrial


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match its recorded checksum."""


class ModelCard(BaseModel):
    """What a checkpoint is: enough to rebuild the model and its input pipeline.

    Attributes:
        schema_version: version of this card format.
        arch: model architecture name (``search.models.ARCHS``).
        num_classes: number of output classes.
        classes: class names, in label order.
        in_channels: image channels.
        image_size: (height, width) of the inputs.
        mean: per-channel normalisation mean (in [0, 1] units).
        std: per-channel normalisation std.
        policy: the augmentation policy the model was trained with (Policy JSON).
        recipe: the trainer recipe (TrainerRecipe JSON).
        metrics: final metrics (``val_accuracy``, optionally ``test_accuracy``).
        sha256: sha256 of the safetensors file.
        created_at: when the checkpoint was written.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
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


def save_checkpoint(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    card: ModelCard,
    artifact_store: ArtifactStore,
    study_or_trial: StudyOrTrial,
    storage: BaseStorage | None = None,
) -> tuple[str, str]:
    """Upload the weights as safetensors; fill ``card.sha256``.

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
        save_safetensors(_state_dict(model_or_state), str(path), metadata={"arch": card.arch})
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
