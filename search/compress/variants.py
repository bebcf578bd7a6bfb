"""The three compressed forms of a float model: ONNX, int8 ONNX and pruned weights.

- ``onnx``: exported with PyTorch's dynamo exporter (``torch.onnx.export(dynamo=True)``; the
  TorchScript exporter is deprecated) at opset `OPSET` with a dynamic batch dimension, then
  run by onnxruntime on validation images: the largest absolute difference of the logits
  from PyTorch's must stay within `MAX_ABS_DIFF`, or the export is refused.
- ``int8``: post-training static quantization of that ONNX graph by onnxruntime
  (``quantize_static``): int8 weights per output channel, uint8 activations whose ranges are
  calibrated on images drawn from the training part, QDQ format. Working on the exported graph
  needs no FX tracing of the model (any architecture that exports quantizes), batch norm is
  already folded into the convolutions, and the file runs wherever onnxruntime does.
  Static quantization applies to every model here (convolutional classifiers fed with
  images), so dynamic quantization, which would leave the convolutions in float, is not used.
- ``pruned``: global magnitude pruning (``torch.nn.utils.prune.global_unstructured``, L1)
  of every convolution and linear weight to a target sparsity, a short fine-tune on the
  training part with the masks in place, then the pruning made permanent; saved as
  safetensors with the float model's keys, so the float model's loader reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from ops.apply import BatchAugmenter
from ops.policy import Policy
from search.compress.queue import MAX_SPARSITY, MIN_SPARSITY
from search.datasets import ImageDataset, stratified_subset
from search.training.evaluation import normaliser

OPSET = 18
MAX_ABS_DIFF = 1e-4
#: Images drawn from the training part to calibrate the int8 activation ranges.
CALIBRATION_IMAGES = 512
#: The pruned model's fine-tune: this share of the final training's epochs (at least one),
#: at this share of its peak learning rate, decaying to zero along a cosine.
FINETUNE_EPOCH_SHARE, FINETUNE_LR_SHARE = 0.1, 0.1
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class CompressionError(RuntimeError):
    """A variant cannot be made (export mismatch, unsupported model, bad parameter)."""


def export_onnx(
    model: nn.Module, example: torch.Tensor, path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Export a model in eval mode to ONNX (opset `OPSET`, dynamic batch dimension).

    Args:
        model: the float model (left unchanged).
        example: a batch of normalised images of the model's input shape.
        path: the file to write.
        metadata: string pairs stored in the file's ``metadata_props``.

    Raises:
        CompressionError: when the exporter cannot express the model.
    """
    import onnx  # lazily: only compression jobs need it

    model = model.to("cpu").eval()
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    except Exception as exc:
        raise CompressionError(f"the model cannot be exported to ONNX: {exc}") from exc
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise CompressionError("the ONNX exporter returned no program")
    proto = program.model_proto
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def max_abs_diff(expected: np.ndarray, actual: np.ndarray) -> float:
    """Largest absolute difference of two logit arrays of the same shape."""
    if expected.shape != actual.shape:
        raise CompressionError(f"output shapes differ: {expected.shape} vs {actual.shape}")
    return float(np.abs(expected.astype(np.float64) - actual.astype(np.float64)).max())


def check_export(diff: float, tolerance: float = MAX_ABS_DIFF) -> None:
    """Refuse an export whose outputs stray from PyTorch's by more than ``tolerance``."""
    if not diff <= tolerance:  # NaN fails too
        raise CompressionError(
            f"onnxruntime's logits differ from PyTorch's by up to {diff:.3g} "
            f"(more than the allowed {tolerance:g})"
        )


def quantize_int8(
    source: Path, target: Path, calibration: np.ndarray, batch: int = 64
) -> dict[str, Any]:
    """Quantize an ONNX model statically to int8 with onnxruntime.

    Args:
        source: the float ONNX file (from `export_onnx`).
        target: the int8 file to write.
        calibration: normalised float32 images whose activations set the int8 ranges.
        batch: images per calibration run.

    Returns:
        What the card records of the quantization.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise CompressionError("static quantization needs calibration images")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                {INPUT_NAME: calibration[i : i + batch]} for i in range(0, len(calibration), batch)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    prepared = target.with_name(target.stem + ".prepared.onnx")
    try:
        # Shape inference and graph clean-up first, as onnxruntime advises for quantization.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    finally:
        prepared.unlink(missing_ok=True)
    return {
        "mode": "static",
        "runtime": "onnxruntime",
        "format": "QDQ",
        "weights": "int8, per output channel",
        "activations": "uint8",
        "calibration": "MinMax",
        "calibration_images": len(calibration),
    }


def calibration_images(
    train: ImageDataset, mean: list[float], std: list[float], seed: int
) -> np.ndarray:
    """`CALIBRATION_IMAGES` images of the training part (stratified, seeded), normalised."""
    subset = stratified_subset(train, min(CALIBRATION_IMAGES, len(train)), seed)
    normalise = normaliser(mean, std, torch.device("cpu"))
    return normalise(subset.images).numpy().astype(np.float32, copy=False)


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every convolution and linear weight of a model, the parameters pruning ranks."""
    return [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def check_sparsity(sparsity: float) -> float:
    """The target sparsity if it lies in [`MIN_SPARSITY`, `MAX_SPARSITY`]."""
    if not MIN_SPARSITY <= sparsity <= MAX_SPARSITY:
        raise CompressionError(
            f"sparsity must lie in [{MIN_SPARSITY}, {MAX_SPARSITY}], got {sparsity}"
        )
    return sparsity


def sparsity_of(model: nn.Module) -> float:
    """Share of zeros among the prunable weights (the pruning masks applied, if any)."""
    weights = [getattr(m, name) for m, name in prunable(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / max(1, total)


def prune_global(model: nn.Module, sparsity: float) -> list[tuple[nn.Module, str]]:
    """Mask the smallest weights across the whole model (L1) to ``sparsity``; masks stay on.

    Returns:
        The pruned parameters (pass them to `make_permanent`).
    """
    params = prunable(model)
    if not params:
        raise CompressionError("the model has no convolution or linear weight to prune")
    prune.global_unstructured(
        params, pruning_method=prune.L1Unstructured, amount=check_sparsity(sparsity)
    )
    return params


def make_permanent(params: list[tuple[nn.Module, str]]) -> None:
    """Fold the masks into the weights (the zeros stay; the ``weight_orig``/mask pair goes)."""
    for module, name in params:
        prune.remove(module, name)


def finetune(
    model: nn.Module,
    train: ImageDataset,
    policy: Policy,
    recipe: dict[str, Any],
    *,
    mean: list[float],
    std: list[float],
    seed: int,
    check_stop: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Fine-tune a (pruned) model briefly on the training part with its policy's augmentation.

    SGD with Nesterov momentum, `FINETUNE_LR_SHARE` of the recipe's peak learning rate decaying
    to zero along a cosine, `FINETUNE_EPOCH_SHARE` of its epochs (at least one), its batch size
    and label smoothing, no weight decay (the masks hold the zeros anyway). On the CPU.

    Returns:
        What the card records of the fine-tune (epochs, steps, learning rate, batch size).
    """
    epochs = max(1, math.ceil(FINETUNE_EPOCH_SHARE * int(recipe.get("epochs") or 1)))
    batch_size = max(2, min(int(recipe.get("batch_size") or 64), len(train)))
    lr = FINETUNE_LR_SHARE * float(recipe.get("lr", 0.1))
    smoothing = policy.mix.label_smoothing or float(recipe.get("label_smoothing", 0.0))
    steps_per_epoch = max(1, len(train) // batch_size)
    total = epochs * steps_per_epoch
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    augment = BatchAugmenter(policy)
    normalise = normaliser(mean, std, torch.device("cpu"))
    shuffle = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator().manual_seed(seed + 1)
    model.train()
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=shuffle)
        for i in range(steps_per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
            x = normalise(augment(train.images[idx], aug_gen))
            loss = F.cross_entropy(model(x), train.labels[idx], label_smoothing=smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        check_stop()
    model.eval()
    return {"epochs": epochs, "steps": step, "lr": lr, "batch_size": batch_size}
