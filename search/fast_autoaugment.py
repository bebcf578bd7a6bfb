"""Fast AutoAugment's density matching: per-fold augmentation-free models score candidates.

The training split is cut into k stratified folds. For each fold, one model is trained without
augmentation on the fold's training part D_M; a candidate policy is then scored by that model's
accuracy on the fold's held-out part D_A augmented by the candidate (no retraining).

The fold models are trained lazily by the first candidate trial a worker process runs and kept
in that process's memory (`Objective` caches one `FoldModels` per study). Every worker thus
trains the same k models (same data, same seed; bit-identical on CPU), which costs k short
trainings per worker but needs no coordination and survives any worker dying.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ops.policy import Policy
from search.datasets import ImageDataset, kfold
from search.spec import SearchSpec
from search.trainer import evaluate, train


@dataclass
class FoldModels:
    """One augmentation-free model per fold, with the fold's held-out part."""

    models: list[nn.Module]
    held_out: list[ImageDataset]
    means: list[list[float]]
    stds: list[list[float]]

    @classmethod
    def train(
        cls,
        spec: SearchSpec,
        train_set: ImageDataset,
        device: str,
        stop: Callable[[], None] | None = None,
    ) -> FoldModels:
        """Train the k fold models with the spec's trial recipe and no augmentation.

        Args:
            spec: the search spec (folds, recipe, seed).
            train_set: the search's training split.
            device: torch device.
            stop: called after each epoch; raises to abandon the training.
        """
        models, held_out, means, stds = [], [], [], []
        for d_m, d_a in kfold(train_set, spec.fast_autoaugment.folds, spec.seed):

            def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
                if stop is not None:
                    stop()

            result = train(
                spec.recipe,
                Policy(kind="none"),
                d_m,
                d_a,
                device=device,
                seed=spec.seed,
                on_epoch=on_epoch,
            )
            models.append(result.model)
            held_out.append(d_a)
            means.append(list(result.mean))
            stds.append(list(result.std))
        return cls(models, held_out, means, stds)

    def score(self, policy: Policy, device: str, seed: int) -> list[float]:
        """Accuracy of each fold model on its held-out part augmented by ``policy``."""
        scores = []
        for fold, (model, d_a) in enumerate(zip(self.models, self.held_out, strict=True)):
            generator = torch.Generator(device=device).manual_seed(seed * 1009 + fold)
            metrics = evaluate(
                model,
                d_a,
                device,
                policy=policy,
                generator=generator,
                mean=self.means[fold] or None,
                std=self.stds[fold] or None,
            )
            scores.append(float(metrics["accuracy"]))
        return scores
