"""Evaluation of a model on a dataset, optionally on augmented images."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ops.apply import BatchAugmenter
from ops.policy import Policy
from search.datasets import ImageDataset


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def normaliser(
    mean: list[float], std: list[float], device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def normalise(images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return (x - m) / s

    return normalise


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: ImageDataset,
    device: str | torch.device,
    policy: Policy | None = None,
    generator: torch.Generator | None = None,
    *,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    batch_size: int = 1024,
    amp: str = "off",
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``dataset``.

    Args:
        model: the classifier.
        dataset: images to score.
        device: where to run.
        policy: when given, images are augmented with it first (Fast AutoAugment's density
            matching scores a policy by the accuracy on augmented held-out images).
        generator: drives the augmentation (on ``device``); seeded with 0 when None.
        mean: normalisation mean; defaults to the dataset's.
        std: normalisation std; defaults to the dataset's.
        batch_size: evaluation batch size.
        amp: mixed precision mode as in :class:`TrainerRecipe` (CUDA only).
    """
    dev = torch.device(device)
    normalise = normaliser(mean or dataset.mean, std or dataset.std, dev)
    augment = BatchAugmenter(policy) if policy is not None else None
    gen = generator or torch.Generator(device=dev).manual_seed(0)
    dtype = amp_dtype(amp, dev)
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(dataset), batch_size):
        images = dataset.images[start : start + batch_size].to(dev, non_blocking=True)
        labels = dataset.labels[start : start + batch_size].to(dev, non_blocking=True)
        if augment is not None:
            images = augment(images, gen)
        with autocast(dev, dtype):
            logits = model(normalise(images)).float()
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
    model.train(was_training)
    n = max(1, len(dataset))
    return {"accuracy": correct / n, "loss": loss_sum / n}
