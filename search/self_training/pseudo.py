"""Pseudo-labels: the teacher's predictions on unlabelled images, filtered and balanced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from search.datasets import ImageDataset
from search.training.evaluation import amp_dtype, autocast, normaliser


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    images: torch.Tensor,
    device: str | torch.device,
    *,
    mean: list[float],
    std: list[float],
    batch_size: int = 1024,
    amp: str = "auto",
) -> torch.Tensor:
    """Class probabilities of un-augmented uint8 images, as float32 (N, classes) on the CPU.

    The model runs in eval mode: no dropout, no stochastic depth (Noisy Student's teacher is
    not noised while it labels).
    """
    dev = torch.device(device)
    was_training = model.training
    model.eval()
    normalise = normaliser(mean, std, dev)
    dtype = amp_dtype(amp, dev)
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = normalise(images[start : start + batch_size].to(dev))
        with autocast(dev, dtype):
            logits = model(batch).float()
        out.append(F.softmax(logits, dim=1).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0)


@dataclass
class PseudoLabels:
    """Which unlabelled images a student trains on, and with which targets.

    Attributes:
        indices: rows of the unlabelled images (repeated rows duplicate an image).
        labels: the teacher's class of each row.
        targets: float32 (rows, classes) training targets: one-hot for hard labels, the
            teacher's distribution for soft ones.
        stats: counts for the job's record (``unlabelled``, ``confident``, ``used``,
            ``per_class``, ``mean_confidence``).
    """

    indices: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor
    stats: dict[str, Any]


def _balanced(
    confident: torch.Tensor, conf: torch.Tensor, hard: torch.Tensor, classes: int, target: int
) -> torch.Tensor:
    """Rows giving each class ``target`` images: the most confident, or all repeated."""
    chosen = []
    for c in range(classes):
        rows = confident[hard[confident] == c]
        if rows.numel() == 0:
            continue
        rows = rows[torch.argsort(conf[rows], descending=True, stable=True)]
        if rows.numel() >= target:
            chosen.append(rows[:target])
        else:
            repeats = -(-target // rows.numel())
            chosen.append(rows.repeat(repeats)[:target])
    return torch.cat(chosen) if chosen else torch.empty(0, dtype=torch.int64)


def select_pseudo_labels(
    probs: torch.Tensor,
    *,
    mode: str = "hard",
    threshold: float = 0.0,
    balance: bool = True,
    per_class: int | None = None,
) -> PseudoLabels:
    """Turn a teacher's probabilities on unlabelled images into a student's targets.

    Args:
        probs: float (N, classes) probabilities.
        mode: ``hard`` (one-hot of the top class) or ``soft`` (the distribution).
        threshold: images whose top probability is below it are left out.
        balance: give every class with a confident image the same number of rows.
        per_class: rows per class when balancing (None: the median count of the classes
            that have confident images).

    Raises:
        ValueError: an unknown mode or probabilities of the wrong shape.
    """
    if mode not in ("hard", "soft"):
        raise ValueError(f"mode must be 'hard' or 'soft', got {mode!r}")
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probabilities must be (N, classes >= 2), got {tuple(probs.shape)}")
    classes = probs.shape[1]
    conf, hard = probs.max(dim=1)
    confident = torch.nonzero(conf >= threshold).flatten()
    counts = torch.bincount(hard[confident], minlength=classes)
    rows = confident
    if balance and confident.numel():
        present = counts[counts > 0].float()
        target = per_class or max(1, int(present.median().item()))
        rows = _balanced(confident, conf, hard, classes, target)
    labels = hard[rows]
    targets = probs[rows].float() if mode == "soft" else F.one_hot(labels, classes).float()
    stats = {
        "unlabelled": int(probs.shape[0]),
        "confident": int(confident.numel()),
        "used": int(rows.numel()),
        "per_class": torch.bincount(labels, minlength=classes).tolist(),
        "mean_confidence": float(conf[confident].mean()) if confident.numel() else None,
    }
    return PseudoLabels(rows, labels, targets, stats)


def student_set(
    labelled: ImageDataset, unlabelled: torch.Tensor, pseudo: PseudoLabels, soft: bool
) -> tuple[ImageDataset, torch.Tensor | None]:
    """The student's training set: labelled images, then the pseudo-labelled ones.

    The labelled part's normalisation statistics are kept, so teacher and student see the
    same input scale. Returns the set and, for soft pseudo-labels, the (N, classes) targets
    of every row (one-hot for the labelled images).
    """
    import hashlib

    images = torch.cat([labelled.images, unlabelled[pseudo.indices]])
    labels = torch.cat([labelled.labels, pseudo.labels])
    digest = hashlib.sha256(labelled.content_hash.encode())
    digest.update(pseudo.indices.numpy().tobytes())
    digest.update(pseudo.targets.numpy().tobytes())
    data = ImageDataset(
        images=images,
        labels=labels,
        classes=list(labelled.classes),
        mean=list(labelled.mean),
        std=list(labelled.std),
        content_hash=digest.hexdigest(),
    )
    if not soft:
        return data, None
    one_hot = F.one_hot(labelled.labels, labelled.num_classes).float()
    return data, torch.cat([one_hot, pseudo.targets])
