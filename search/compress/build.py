"""Make one compressed variant of a final model and measure it beside the float model."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import save_file as save_safetensors
from torch import nn

from ops.policy import load_policy
from search.checkpoints import ModelCard, card_metadata
from search.compress import measure, variants
from search.compress.queue import DEFAULT_SPARSITY, FORMATS, Format
from search.datasets import ImageDataset

FILE_NAMES: dict[str, str] = {
    "onnx": "model.onnx",
    "int8": "model.int8.onnx",
    "pruned": "model.pruned.safetensors",
}
#: Validation images compared between PyTorch and onnxruntime for the export check.
CHECK_IMAGES = 256


class VariantCard(BaseModel):
    """What a compressed variant is and how it compares with its float model.

    Attributes:
        format: ``onnx``, ``int8`` or ``pruned``.
        file_name: suggested file name (``model.onnx``, ``model.int8.onnx``,
            ``model.pruned.safetensors``).
        sha256: sha256 of the variant's file.
        size_bytes: its size on disk; ``float_size_bytes`` that of the float checkpoint.
        val_accuracy: its accuracy on the validation part; ``float_val_accuracy`` the float
            model's, measured in the same run.
        val_images: images of the validation part.
        latency_ms: CPU milliseconds per image; ``float_latency_ms`` the float PyTorch
            model's, measured side by side (same batch, same threads, interleaved runs).
        speedup: ``float_latency_ms / latency_ms``.
        latency_batch_size: images per timed call.
        latency_threads: CPU threads of both runtimes.
        runtime: what runs the variant (``onnxruntime 1.x`` or ``torch 2.x``).
        onnx_opset: opset of an ONNX file.
        max_abs_diff: ``onnx``: largest difference of its logits from PyTorch's on
            validation images (at most `variants.MAX_ABS_DIFF`).
        top1_agreement: share of validation images whose top-1 class matches the float
            model's.
        quantization: ``int8``: mode (static), calibration, weight and activation types.
        target_sparsity: ``pruned``: the sparsity asked for; ``sparsity`` the share of zero
            convolution and linear weights in the file.
        finetune: ``pruned``: epochs, steps, learning rate and batch size of the fine-tune.
        source_sha256: sha256 of the float checkpoint it was made from.
        model: the float model's card (classes, image size, mean/std for the inputs...).
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    format: Format
    file_name: str
    sha256: str = ""
    size_bytes: int
    float_size_bytes: int
    val_accuracy: float
    float_val_accuracy: float
    val_images: int
    latency_ms: float
    float_latency_ms: float
    speedup: float
    latency_batch_size: int
    latency_threads: int
    runtime: str
    onnx_opset: int | None = None
    max_abs_diff: float | None = None
    top1_agreement: float
    quantization: dict[str, Any] | None = None
    target_sparsity: float | None = None
    sparsity: float | None = None
    finetune: dict[str, Any] | None = None
    source_sha256: str
    model: dict[str, Any]
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_variant(
    model: nn.Module,
    card: ModelCard,
    fmt: Format,
    out_dir: Path,
    *,
    train: ImageDataset,
    val: ImageDataset,
    float_size_bytes: int,
    sparsity: float = DEFAULT_SPARSITY,
    seed: int = 0,
    repeats: int = 20,
    check_stop: Callable[[], None] = lambda: None,
) -> tuple[Path, VariantCard]:
    """Make the ``fmt`` variant of a float model in ``out_dir`` and measure it on the CPU.

    Args:
        model: the float model with its weights (left unchanged).
        card: its model card (input statistics, recipe, policy).
        fmt: the variant.
        out_dir: where the file is written (`FILE_NAMES`).
        train: the training part (calibration images, the pruned model's fine-tune).
        val: the validation part (accuracies, export check, latency batch).
        float_size_bytes: size of the float checkpoint file.
        sparsity: target sparsity of ``pruned``.
        seed: seeds calibration draws and the fine-tune.
        repeats: timed calls of each model for the latency.
        check_stop: raises to stop the fine-tune between epochs.

    Raises:
        CompressionError: the variant cannot be made (export mismatch, bad sparsity...).
    """
    if fmt not in FORMATS:
        raise variants.CompressionError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    model = model.to("cpu").eval()
    val_x = measure.normalised(val, card.mean, card.std)
    val_y = val.labels.numpy()
    float_predict = measure.torch_predictor(model)
    float_logits = np.concatenate(
        [float_predict(val_x[i : i + 256]) for i in range(0, len(val_x), 256)]
    )
    path = out_dir / FILE_NAMES[fmt]
    extra: dict[str, Any] = {}
    if fmt == "pruned":
        pruned = copy.deepcopy(model)
        extra = _prune(pruned, card, train, sparsity, seed, check_stop)
        save_safetensors(
            {k: v.detach().contiguous() for k, v in pruned.state_dict().items()},
            str(path),
            # The float checkpoint's metadata (the whole card): the same loaders read it.
            metadata={**card_metadata(card), "source_sha256": card.sha256, "variant": "pruned"},
        )
        predict = measure.torch_predictor(pruned)
        runtime = f"torch {torch.__version__}"
    else:
        extra = _onnx(model, card, fmt, path, train, val_x[:CHECK_IMAGES], float_logits, seed)
        predict = measure.onnx_predictor(path)
        runtime = f"onnxruntime {version('onnxruntime')}"
    latency = measure.side_by_side(predict, float_predict, val_x, repeats=repeats)
    logits = np.concatenate([predict(val_x[i : i + 256]) for i in range(0, len(val_x), 256)])
    variant_card = VariantCard(
        format=fmt,
        file_name=path.name,
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        float_size_bytes=float_size_bytes,
        val_accuracy=float((logits.argmax(1) == val_y).mean()),
        float_val_accuracy=float((float_logits.argmax(1) == val_y).mean()),
        val_images=len(val_y),
        latency_ms=latency.variant_ms,
        float_latency_ms=latency.float_ms,
        speedup=latency.speedup,
        latency_batch_size=latency.batch_size,
        latency_threads=latency.threads,
        runtime=runtime,
        top1_agreement=float((logits.argmax(1) == float_logits.argmax(1)).mean()),
        source_sha256=card.sha256,
        model=card.model_dump(mode="json"),
        **extra,
    )
    return path, variant_card


def _onnx(
    model: nn.Module,
    card: ModelCard,
    fmt: Format,
    path: Path,
    train: ImageDataset,
    check_x: np.ndarray,
    float_logits: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    """Export (and for ``int8`` quantize) the model; check the float export against PyTorch."""
    exported = path if fmt == "onnx" else path.with_name("model.float.onnx")
    metadata = {"augsearch.model_card": card.model_dump_json(), "augsearch.format": fmt}
    variants.export_onnx(model, torch.from_numpy(check_x[:2]), exported, metadata)
    diff = variants.max_abs_diff(
        float_logits[: len(check_x)], measure.onnx_predictor(exported)(check_x)
    )
    variants.check_export(diff)
    if fmt == "onnx":
        return {"onnx_opset": variants.OPSET, "max_abs_diff": diff}
    try:
        calibration = variants.calibration_images(train, card.mean, card.std, seed)
        quantization = variants.quantize_int8(exported, path, calibration)
    finally:
        exported.unlink(missing_ok=True)
    return {"onnx_opset": variants.OPSET, "quantization": quantization}


def _prune(
    model: nn.Module,
    card: ModelCard,
    train: ImageDataset,
    sparsity: float,
    seed: int,
    check_stop: Callable[[], None],
) -> dict[str, Any]:
    """Prune globally, fine-tune with the masks on, make the pruning permanent."""
    params = variants.prune_global(model, sparsity)
    finetune = variants.finetune(
        model,
        train,
        load_policy(card.policy),
        card.recipe,
        mean=card.mean,
        std=card.std,
        seed=seed,
        check_stop=check_stop,
    )
    variants.make_permanent(params)
    return {"target_sparsity": sparsity, "sparsity": variants.sparsity_of(model),
            "finetune": finetune}  # fmt: skip
