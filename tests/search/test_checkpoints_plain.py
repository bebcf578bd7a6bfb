"""A final checkpoint loads without augsearch: timm, safetensors and torch, as the README shows.

The checkpoint is written by the real save path (`save_checkpoint` into an Optuna artifact
store) and read back in a subprocess where ``ops``, ``search`` and ``service`` cannot be
imported (an import hook refuses them, the working directory is elsewhere, ``python -I``); the
code it runs is the README's "Load the checkpoint" block itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from safetensors.torch import load_file, save_file

from search.checkpoints import (
    CheckpointError,
    ModelCard,
    build_model_from_card,
    load_checkpoint,
    make_artifact_store,
    read_card,
    save_checkpoint,
)
from search.models import build_model

README = Path(__file__).resolve().parents[2] / "README.md"
PRELUDE = r"""
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"ops", "search", "service"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
for name in ("ops", "search", "service"):
    try:
        __import__(name)
        raise SystemExit(f"{name} is importable")
    except ModuleNotFoundError:
        pass

import os
from safetensors.torch import load_file

for folder in sys.argv[1:]:  # one checkpoint per folder, each read by the README's code
    os.chdir(folder)
    namespace = {"images": load_file("images.safetensors")["images"]}
    exec(SNIPPET, namespace)
"""
EPILOGUE = r"""
from safetensors.torch import save_file
save_file({"logits": logits.detach().contiguous()}, "logits.safetensors")
print(json.dumps(labels))
"""


def _readme_snippet() -> str:
    text = README.read_text()
    section = text.split("## Load the checkpoint", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "README has no python block under 'Load the checkpoint'"
    return match.group(1)


def _card(arch: str, size: int, channels: int) -> ModelCard:
    return ModelCard(
        arch=arch,
        num_classes=4,
        classes=["zero", "one", "two", "three"],
        in_channels=channels,
        image_size=(size, size),
        mean=[0.3] * channels,
        std=[0.2] * channels,
        policy={"schema_version": 1, "kind": "none"},
        recipe={"arch": arch, "width": 0.25, "dropout": 0.1},
        metrics={"val_accuracy": 0.75},
    )


def _trained_like(arch: str, card: ModelCard) -> torch.nn.Module:
    """A model whose weights and batch-norm statistics are no longer the initial ones."""
    torch.manual_seed(0)
    model = build_model(arch, 4, card.in_channels, card.image_size, width=0.25, dropout=0.1)
    model.train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model(torch.randn(8, card.in_channels, *card.image_size))
    return model.eval()


def _save(tmp_path: Path, model: torch.nn.Module, card: ModelCard) -> tuple[Path, str]:
    """Save through the real path; return the downloaded file and the artifact id."""
    store = make_artifact_store(tmp_path / "art")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    artifact_id, _ = save_checkpoint(model, card, store, study.ask())
    path = tmp_path / "model.safetensors"
    optuna.artifacts.download_artifact(
        artifact_store=store, file_path=str(path), artifact_id=artifact_id
    )
    return path, artifact_id


def test_readme_loads_the_checkpoint_without_augsearch(tmp_path: Path) -> None:
    cases = [("timm:resnet18d", 32, 1), ("timm:resnet18", 20, 3)]
    expected: list[torch.Tensor] = []
    for i, (arch, size, channels) in enumerate(cases):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        card = _card(arch, size, channels)
        model = _trained_like(arch, card)
        path, _ = _save(folder, model, card)
        assert path.exists()
        images = torch.randint(0, 256, (5, channels, size, size), dtype=torch.uint8)
        save_file({"images": images}, str(folder / "images.safetensors"))
        mean = torch.tensor(card.mean).view(-1, 1, 1)
        std = torch.tensor(card.std).view(-1, 1, 1)
        with torch.no_grad():
            expected.append(model((images.float() / 255 - mean) / std))
    script = f"SNIPPET = {_readme_snippet() + EPILOGUE!r}\n" + PRELUDE
    folders = [str(tmp_path / f"case{i}") for i in range(len(cases))]
    run = subprocess.run(
        [sys.executable, "-I", "-c", script, *folders],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    printed = run.stdout.splitlines()
    assert len(printed) == len(cases)
    for name, logits, line in zip(folders, expected, printed, strict=True):
        got = load_file(str(Path(name) / "logits.safetensors"))["logits"]
        torch.testing.assert_close(got, logits, rtol=0, atol=1e-5)
        classes = _card("timm:resnet18", 8, 1).classes
        assert json.loads(line) == [classes[i] for i in logits.argmax(1)]


def test_metadata_holds_the_card_and_rebuilds_the_model(tmp_path: Path) -> None:
    card = _card("timm:resnet10t", 16, 1)
    model = _trained_like("timm:resnet10t", card)
    path, artifact_id = _save(tmp_path, model, card)
    stored = read_card(path)
    assert read_card(path.read_bytes()) == stored
    assert stored.model_dump(exclude={"sha256"}) == card.model_dump(exclude={"sha256"})
    assert stored.timm_name == "resnet10t" and stored.timm_kwargs["output_stride"] == 8
    assert stored.timm_kwargs["drop_rate"] == 0.1 and card.sha256
    again = build_model_from_card(stored)
    state, _ = load_checkpoint(make_artifact_store(tmp_path / "art"), artifact_id, card.sha256)
    again.load_state_dict(state)
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model(x), rtol=0, atol=0)


def test_own_architectures_rebuild_from_their_card(tmp_path: Path) -> None:
    card = _card("resnet8", 16, 1)
    model = _trained_like("resnet8", card)
    path, _ = _save(tmp_path, model, card)
    stored = read_card(path)
    assert stored.timm_name is None and stored.timm_kwargs == {}
    rebuilt = build_model_from_card(stored)
    rebuilt.load_state_dict(load_file(str(path)))
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model(x), rtol=0, atol=0)


def test_files_without_a_card_are_refused(tmp_path: Path) -> None:
    old = tmp_path / "old.safetensors"
    save_file({"w": torch.ones(2)}, str(old), metadata={"arch": "resnet8"})
    with pytest.raises(CheckpointError, match="no model card"):
        read_card(old)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_card(b"\x00" * 4)
    bad = tmp_path / "bad.safetensors"
    save_file({"w": torch.ones(2)}, str(bad), metadata={"model_card": '{"arch": 1}'})
    with pytest.raises(CheckpointError, match="invalid"):
        read_card(bad)


def test_cards_refuse_foreign_timm_arguments() -> None:
    card = _card("timm:resnet18", 32, 1)
    data = card.model_dump(mode="json")
    with pytest.raises(ValueError, match="not allowed"):
        ModelCard.model_validate({**data, "timm_kwargs": {**card.timm_kwargs, "pretrained": True}})
    with pytest.raises(ValueError, match="does not match"):
        ModelCard.model_validate({**data, "timm_name": "resnet50"})
    with pytest.raises(ValueError, match="must hold"):
        ModelCard.model_validate({**data, "timm_kwargs": {**card.timm_kwargs, "num_classes": 9}})
    with pytest.raises(ValueError, match="not a timm architecture"):
        ModelCard.model_validate({**data, "arch": "resnet8"})


def test_version_1_cards_still_load() -> None:
    data = _card("resnet8", 16, 1).model_dump(mode="json")
    data.update(schema_version=1)
    del data["timm_name"], data["timm_kwargs"]
    card = ModelCard.model_validate(data)
    assert card.schema_version == 1 and card.timm_name is None
