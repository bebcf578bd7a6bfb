"""Batch mixing: MixUp, CutMix and Cutout with soft targets.

Each sample draws its own partner (one random permutation of the batch), its own lambda and
its own CutMix/MixUp choice; label smoothing is folded into the soft targets.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ops.policy import MixConfig


def soft_targets(labels: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """One-hot targets with label smoothing, as float32 of shape (N, num_classes)."""
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D tensor of class indices, got {labels.shape}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    targets = torch.full(
        (labels.shape[0], num_classes), smoothing / num_classes, device=labels.device
    )
    return targets.scatter_(
        1, labels.long().unsqueeze(1), 1.0 - smoothing + smoothing / num_classes
    )


def _beta(alpha: float, n: int, generator: torch.Generator) -> Tensor:
    """Beta(alpha, alpha) draws seeded from the torch generator (torch has no seeded Beta)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    draws = np.random.default_rng(seed).beta(alpha, alpha, size=n).astype(np.float32)
    return torch.from_numpy(draws).to(generator.device)


def _box_masks(lam: Tensor, height: int, width: int, gen: torch.Generator) -> Tensor:
    """(N, 1, H, W) CutMix boxes covering about ``1 - lam`` of each image."""
    n, dev = lam.shape[0], gen.device
    ratio = torch.sqrt(1.0 - lam)
    cut_h, cut_w = (ratio * height).long(), (ratio * width).long()
    cy = torch.randint(0, height, (n,), generator=gen, device=dev)
    cx = torch.randint(0, width, (n,), generator=gen, device=dev)
    top, bottom = (cy - cut_h // 2).clamp(0, height), (cy + cut_h // 2).clamp(0, height)
    left, right = (cx - cut_w // 2).clamp(0, width), (cx + cut_w // 2).clamp(0, width)
    rows = torch.arange(height, device=dev)
    cols = torch.arange(width, device=dev)
    in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])
    in_cols = (cols >= left[:, None]) & (cols < right[:, None])
    return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)


def _cutout(images: Tensor, side: float, gen: torch.Generator) -> Tensor:
    n, _, height, width = images.shape
    pixels = side * min(height, width) if side < 1 else side
    size = round(pixels)
    if size <= 0:
        return images
    cy = torch.randint(0, height, (n,), generator=gen, device=gen.device).to(images.device)
    cx = torch.randint(0, width, (n,), generator=gen, device=gen.device).to(images.device)
    rows = torch.arange(height, device=images.device)
    cols = torch.arange(width, device=images.device)
    top, left = cy - size // 2, cx - size // 2
    in_rows = (rows >= top[:, None]) & (rows < (top + size)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + size)[:, None])
    return images.masked_fill((in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1), 0)


def mix_batch(
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    mix: MixConfig,
    generator: torch.Generator,
    *,
    targets: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Mix a batch and return ``(images, soft_targets)``.

    With both alphas set, each sample uses CutMix with probability ``cutmix_prob`` and MixUp
    otherwise; with only CutMix set, the others are left unmixed. Cutout runs last. uint8
    images stay uint8 (MixUp rounds).

    Args:
        images: (N, C, H, W) uint8 or float batch.
        labels: (N,) class indices.
        num_classes: Number of classes.
        mix: The mixing configuration.
        generator: Source of randomness (its device is used for the draws).
        targets: (N, num_classes) soft targets to mix instead of the one-hot ``labels``
            (pseudo-labels of self-training); label smoothing is then left to the caller.

    Returns:
        The mixed images (same dtype and device) and float32 (N, num_classes) soft targets.
    """
    if images.ndim != 4 or images.shape[0] != labels.shape[0]:
        raise ValueError("images must be (N, C, H, W) with one label per image")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if targets is None:
        targets = soft_targets(labels, num_classes, mix.label_smoothing)
    elif targets.shape != (images.shape[0], num_classes):
        raise ValueError(f"targets must be (N, {num_classes}), got {tuple(targets.shape)}")
    n, _, _height, _width = images.shape
    if n and (mix.mixup_alpha > 0 or mix.cutmix_alpha > 0):
        images, targets = _mix(images, targets, mix, generator)
    if mix.cutout > 0 and n:
        images = _cutout(images, mix.cutout, generator)
    return images, targets


def _mix(
    images: Tensor, targets: Tensor, mix: MixConfig, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    n, _, height, width = images.shape
    dev = images.device
    perm = torch.randperm(n, generator=gen, device=gen.device).to(dev)
    use_cut = torch.rand(n, generator=gen, device=gen.device) < mix.cutmix_prob
    if mix.cutmix_alpha <= 0:
        use_cut[:] = False
    # Without MixUp, lam_mix is 1: samples not drawn for CutMix stay unmixed.
    lam_mix = _beta(mix.mixup_alpha, n, gen) if mix.mixup_alpha > 0 else torch.ones(n)
    lam_cut = _beta(mix.cutmix_alpha, n, gen) if mix.cutmix_alpha > 0 else torch.ones(n)
    boxes = _box_masks(lam_cut.to(gen.device), height, width, gen).to(dev)
    use_cut, lam_mix = use_cut.to(dev), lam_mix.to(dev)
    boxes &= use_cut.view(-1, 1, 1, 1)
    lam = torch.where(use_cut, 1.0 - boxes.flatten(1).float().mean(1), lam_mix)
    weight = torch.where(use_cut, torch.ones_like(lam), lam).view(-1, 1, 1, 1)
    work = images.float()
    blended = work * weight + work[perm] * (1.0 - weight)
    blended = torch.where(boxes, work[perm], blended)
    if not images.is_floating_point():
        blended = blended.round_().clamp_(0, 255)
    mixed_targets = targets * lam[:, None] + targets[perm] * (1.0 - lam[:, None])
    return blended.to(images.dtype), mixed_targets
