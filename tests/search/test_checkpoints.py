"""Checkpoints: safetensors through optuna.artifacts, sha256 checked, cards round-trip."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from search.checkpoints import (
    CheckpointError,
    ModelCard,
    load_checkpoint,
    load_model_card,
    make_artifact_store,
    save_checkpoint,
    save_model_card,
)
from search.models import build_model


def _card() -> ModelCard:
    return ModelCard(
        arch="resnet8",
        num_classes=3,
        classes=["a", "b", "c"],
        in_channels=1,
        image_size=(16, 16),
        mean=[0.5],
        std=[0.25],
        policy={"schema_version": 1, "kind": "none"},
        recipe={"arch": "resnet8"},
        metrics={"val_accuracy": 0.5},
    )


def test_round_trip_reproduces_the_model(tmp_path: Path) -> None:
    store = make_artifact_store(tmp_path / "art")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    trial = study.ask()
    torch.manual_seed(0)
    model = build_model("resnet8", 3, 1, 16).eval()
    card = _card()
    artifact_id, sha = save_checkpoint(model, card, store, trial)
    card_id = save_model_card(card, store, trial)
    assert card.sha256 == sha and len(sha) == 64
    state, got_sha = load_checkpoint(store, artifact_id, expected_sha256=sha)
    assert got_sha == sha
    again = build_model("resnet8", 3, 1, 16).eval()
    again.load_state_dict(state)
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(model(x), again(x))
    assert load_model_card(store, card_id) == card


def test_tampered_file_fails_the_checksum(tmp_path: Path) -> None:
    store = make_artifact_store(tmp_path / "art")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    artifact_id, sha = save_checkpoint({"w": torch.ones(3)}, _card(), store, study)
    path = tmp_path / "art" / artifact_id
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(store, artifact_id, expected_sha256=sha)


def test_a_pickle_is_refused(tmp_path: Path) -> None:
    store = make_artifact_store(tmp_path / "art")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"\x80\x04\x95not safetensors at all")
    artifact_id = optuna.artifacts.upload_artifact(
        artifact_store=store, file_path=str(bogus), study_or_trial=study
    )
    with pytest.raises(CheckpointError, match="not safetensors"):
        load_checkpoint(store, artifact_id)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(store, "missing-id")


def test_artifact_store_urls(tmp_path: Path) -> None:
    assert (tmp_path / "new").exists() is False
    make_artifact_store(tmp_path / "new")
    assert (tmp_path / "new").is_dir()
    with pytest.raises(ValueError, match="s3://<bucket>"):
        make_artifact_store("s3://")
    with pytest.raises(ValueError, match="unsupported"):
        make_artifact_store("gs://bucket")
