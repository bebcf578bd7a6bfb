"""The three compressions on a small timm ResNet: ONNX within 1e-4 of PyTorch, int8 smaller
than float, pruning to its sparsity; and their refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import safetensors.torch
import torch

from ops.presets import PRESETS
from search.checkpoints import ModelCard, read_card
from search.compress import variants
from search.compress.build import VariantCard, make_variant
from search.compress.measure import normalised, onnx_predictor, side_by_side, torch_predictor
from search.compress.queue import Format
from search.datasets import ImageDataset
from search.models import build_model

Splits = tuple[ImageDataset, ImageDataset]


@pytest.fixture(scope="module")
def trained(digits_small: Splits) -> tuple[torch.nn.Module, ModelCard]:
    """timm's resnet10t at width 0.25 on 16x16 digits, fine-tuned for one epoch (BN statistics
    and weights away from their initial values)."""
    train, _ = digits_small
    torch.manual_seed(0)
    model = build_model("timm:resnet10t", 10, 1, 16, width=0.25)
    card = ModelCard(
        arch="timm:resnet10t", num_classes=10, classes=[str(i) for i in range(10)],
        in_channels=1, image_size=(16, 16), mean=train.mean, std=train.std,
        policy=PRESETS["none"].model_dump(mode="json"),
        recipe={"epochs": 10, "batch_size": 64, "lr": 1.0, "width": 0.25}, sha256="ab" * 32,
    )  # fmt: skip
    variants.finetune(model, train, PRESETS["none"], card.recipe, mean=card.mean,
                      std=card.std, seed=0)  # fmt: skip
    return model.eval(), card


def _make(
    trained: tuple[torch.nn.Module, ModelCard],
    digits_small: Splits,
    fmt: Format,
    tmp_path: Path,
    sparsity: float = 0.5,
) -> tuple[Path, VariantCard]:
    model, card = trained
    train, val = digits_small
    return make_variant(model, card, fmt, tmp_path, train=train, val=val,
                        float_size_bytes=400_000, sparsity=sparsity, repeats=2)  # fmt: skip


def test_onnx_export_matches_pytorch(
    trained: tuple[torch.nn.Module, ModelCard], digits_small: Splits, tmp_path: Path
) -> None:
    path, card = _make(trained, digits_small, "onnx", tmp_path)
    images = normalised(digits_small[1], card.model["mean"], card.model["std"])[:50]
    got = onnx_predictor(path)(images)
    expected = torch_predictor(trained[0])(images)
    assert np.abs(got - expected).max() <= variants.MAX_ABS_DIFF
    assert card.max_abs_diff is not None and card.max_abs_diff <= variants.MAX_ABS_DIFF
    assert card.onnx_opset == variants.OPSET and card.top1_agreement == 1.0
    assert card.val_accuracy == card.float_val_accuracy
    meta = {p.key: p.value for p in __import__("onnx").load(str(path)).metadata_props}
    assert ModelCard.model_validate_json(meta["augsearch.model_card"]).arch == "timm:resnet10t"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": images[:1]})[0].shape == (1, 10)  # dynamic batch


def test_int8_is_static_and_smaller(
    trained: tuple[torch.nn.Module, ModelCard], digits_small: Splits, tmp_path: Path
) -> None:
    path, card = _make(trained, digits_small, "int8", tmp_path)
    state = {k: v.contiguous() for k, v in trained[0].state_dict().items()}
    float_bytes = len(safetensors.torch.save(state))
    assert path.stat().st_size == card.size_bytes < float_bytes / 2
    assert card.quantization is not None and card.quantization["mode"] == "static"
    assert card.quantization["calibration_images"] == variants.CALIBRATION_IMAGES
    assert abs(card.val_accuracy - card.float_val_accuracy) <= 0.1
    assert not (tmp_path / "model.float.onnx").exists()


def test_pruned_reaches_its_sparsity_and_keeps_the_card(
    trained: tuple[torch.nn.Module, ModelCard], digits_small: Splits, tmp_path: Path
) -> None:
    path, card = _make(trained, digits_small, "pruned", tmp_path, sparsity=0.7)
    model = build_model("timm:resnet10t", 10, 1, 16, width=0.25)
    model.load_state_dict(safetensors.torch.load(path.read_bytes()))
    assert variants.sparsity_of(model) >= 0.7 - 1e-3
    assert card.sparsity == pytest.approx(variants.sparsity_of(model))
    assert card.finetune is not None and card.finetune["epochs"] == 1
    assert read_card(path).arch == "timm:resnet10t"  # the float checkpoint's metadata
    assert variants.sparsity_of(trained[0]) < 0.01  # the float model is left alone
    assert not any(name.endswith("_orig") for name in model.state_dict())


def test_refusals_are_clear() -> None:
    variants.check_export(1e-5)
    for diff in (2e-4, float("nan")):
        with pytest.raises(variants.CompressionError, match="differ from PyTorch's"):
            variants.check_export(diff)
    for sparsity in (0.0, 0.99):
        with pytest.raises(variants.CompressionError, match="sparsity must lie in"):
            variants.check_sparsity(sparsity)
    with pytest.raises(variants.CompressionError, match="no convolution or linear"):
        variants.prune_global(torch.nn.Sequential(torch.nn.ReLU()), 0.5)
    with pytest.raises(variants.CompressionError, match="calibration images"):
        variants.quantize_int8(Path("a.onnx"), Path("b.onnx"), np.zeros((0, 1, 8, 8), np.float32))


def test_latency_is_measured_side_by_side(trained: tuple[torch.nn.Module, ModelCard]) -> None:
    images = np.random.default_rng(0).normal(size=(5, 1, 16, 16)).astype(np.float32)
    predict = torch_predictor(trained[0])
    latency = side_by_side(predict, predict, images, batch_size=8, repeats=3)
    assert latency.variant_ms > 0 and latency.float_ms > 0 and latency.batch_size == 8
    assert torch.get_num_threads() >= 1
    with pytest.raises(ValueError, match="positive batch size"):
        side_by_side(predict, predict, images, batch_size=0)
