"""Optimiser, learning-rate schedule, decoupled weight decay and gradient clipping."""

from __future__ import annotations

import math

import torch
from torch import nn

from search.training.recipe import TrainerRecipe

MOMENTUM = 0.9
AGC_EPS = 1e-3


def split_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed): weights of convolutions and linear layers are decayed;
    norm scales and biases are not."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return decay, no_decay


def build_optimizer(model: nn.Module, recipe: TrainerRecipe) -> torch.optim.Optimizer:
    """SGD-Nesterov or AdamW; weight decay is applied by :func:`apply_decoupled_decay` for SGD."""
    decay, no_decay = split_decay(model)
    if recipe.optimizer == "adamw":
        groups = [
            {"params": decay, "weight_decay": recipe.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=recipe.lr)
    groups = [
        {"params": decay, "decoupled_decay": recipe.weight_decay},
        {"params": no_decay, "decoupled_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=MOMENTUM, nesterov=True, weight_decay=0)


@torch.no_grad()
def apply_decoupled_decay(optimizer: torch.optim.Optimizer) -> None:
    """Shrink SGD's decayed weights by ``1 - lr * decay`` (AdamW does this itself)."""
    for group in optimizer.param_groups:
        factor = 1.0 - group["lr"] * group.get("decoupled_decay", 0.0)
        if factor != 1.0:
            for p in group["params"]:
                p.mul_(factor)


def lr_factor(recipe: TrainerRecipe, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based) of ``total_steps``."""
    warmup = round((recipe.warmup_epochs or 0.0) * steps_per_epoch)
    if recipe.schedule == "onecycle" and warmup == 0:
        warmup = max(1, total_steps // 4)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if recipe.schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total_steps - warmup)
    if recipe.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def _unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True)


@torch.no_grad()
def adaptive_clip(parameters: list[nn.Parameter], clip: float) -> None:
    """Adaptive gradient clipping (Brock et al. 2021), unit-wise.

    Each output unit's gradient is scaled down so that its norm stays below
    ``clip * max(norm of the unit's weights, 1e-3)``.
    """
    for p in parameters:
        if p.grad is None:
            continue
        w_norm = _unitwise_norm(p.detach()).clamp_min(AGC_EPS)
        g_norm = _unitwise_norm(p.grad)
        max_norm = clip * w_norm
        scale = torch.where(g_norm > max_norm, max_norm / g_norm.clamp_min(1e-6), 1.0)
        p.grad.mul_(scale)


def agc_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters that AGC clips: all but the final classifier (as in NFNets).

    The classifier is the proxies' ``classifier`` layer, or what a timm model's
    ``get_classifier()`` returns (``fc`` of its ResNets).
    """
    get_classifier = getattr(model, "get_classifier", None)
    head = get_classifier() if callable(get_classifier) else getattr(model, "classifier", None)
    skip = {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()
    return [p for p in model.parameters() if p.requires_grad and id(p) not in skip]
