"""The text trial trainer: the n-gram proxy model trained on a policy's augmented copies.

Each epoch trains on the training texts plus ``copies`` augmented versions of each, drawn anew
every epoch from a generator seeded by the trial's seed (EDA made its copies once; fresh ones
each epoch are at least as varied for the same cost per step). Adam with a linear decay to zero,
sparse Adam on the embedding (its gradients are sparse, so a step costs the rows a batch
touches, not the whole table), on the mean-embedding model of :mod:`search.text.model`; seeded
and deterministic on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ops.lexicon import WordNet
from ops.policy import Policy
from ops.text import TextAugmenter
from search.text.dataset import TextDataset
from search.text.model import NgramClassifier, Tokenizer

#: Called after every epoch with (epoch, validation accuracy); returning True stops training.
EpochReport = Callable[[int, float], bool]


class TextRecipe(BaseModel):
    """How the text proxy model is trained.

    Every policy gets about the same number of optimizer steps: ``epochs`` counts passes
    over the training texts, and a policy with ``c`` augmented copies per text trains
    ``ceil(epochs / (1 + c))`` epochs of the expanded set (`training_epochs`). Counting epochs
    of the expanded set instead gave EDA's 9 copies ten times the steps of no augmentation,
    which rewarded copies for their extra training, not for their variety: on 500
    ``wordnet-topics`` texts, no augmentation gained until ~40 passes (test 0.543 at 10, 0.560
    at 40 and 80) while EDA's defaults lost past ~50 (0.567 at 50 passes, 0.556 at 100, 0.539
    at 200); at 40 passes each, EDA's defaults scored 0.561 +- 0.003 and no augmentation
    0.557 +- 0.004 (docs/text.md).

    Attributes:
        epochs: passes over the training texts (see above).
        batch_size: texts per step.
        lr: Adam's learning rate at the first step (linear decay to zero).
        dim: embedding width.
        dropout: dropout on the mean embedding.
        buckets: hashed slots for unknown words and bigrams.
        label_smoothing: smoothing of the cross-entropy targets.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    epochs: int = Field(default=40, ge=1, le=400)
    batch_size: int = Field(default=32, ge=1, le=4096)
    lr: float = Field(default=0.03, gt=0.0, le=1.0)
    dim: int = Field(default=64, ge=2, le=1024)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    buckets: int = Field(default=1 << 16, ge=1, le=1 << 22)
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)


@dataclass
class TextTrainingResult:
    """A trained model with its tokenizer and per-epoch validation accuracies."""

    model: NgramClassifier
    tokenizer: Tokenizer
    val_accuracies: list[float] = field(default_factory=list)

    @property
    def val_accuracy(self) -> float:
        """Validation accuracy after the last epoch (NaN without validation)."""
        return self.val_accuracies[-1] if self.val_accuracies else math.nan


def accuracy(model: NgramClassifier, tokenizer: Tokenizer, data: TextDataset) -> float:
    """Top-1 accuracy of the model on a dataset."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data), 512):
            ids, offsets = tokenizer.encode(data.texts[start : start + 512])
            predicted = model(ids, offsets).argmax(1).numpy()
            correct += int((predicted == data.labels[start : start + 512]).sum())
    return correct / max(1, len(data))


def training_epochs(recipe: TextRecipe, copies: int) -> int:
    """Epochs of the expanded set (texts and ``copies`` augmented versions of each) that make
    ``recipe.epochs`` passes over the training texts."""
    return max(1, math.ceil(recipe.epochs / (1 + copies)))


def train_text_model(
    train: TextDataset,
    policy: Policy,
    recipe: TextRecipe,
    seed: int,
    val: TextDataset | None = None,
    report: EpochReport | None = None,
    lexicon: WordNet | None = None,
) -> TextTrainingResult:
    """Train the n-gram model on ``train`` augmented by ``policy``.

    Raises:
        ValueError: for a policy that is neither ``text`` nor ``none``.
        LexiconMissingError: when the policy needs synonyms and WordNet is missing.
    """
    augmenter = TextAugmenter(policy, lexicon)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tokenizer = Tokenizer.fit(train.texts, buckets=recipe.buckets)
    model = NgramClassifier(tokenizer.size, train.num_classes, recipe.dim, recipe.dropout)
    steps_per_epoch = math.ceil(len(train) * (1 + augmenter.copies) / recipe.batch_size)
    epochs = training_epochs(recipe, augmenter.copies)
    total = epochs * steps_per_epoch
    optimizers = [
        torch.optim.SparseAdam(list(model.embedding.parameters()), lr=recipe.lr),
        torch.optim.Adam(list(model.head.parameters()), lr=recipe.lr),
    ]
    schedules = [
        torch.optim.lr_scheduler.LambdaLR(o, lambda step: 1.0 - step / total) for o in optimizers
    ]
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    result = TextTrainingResult(model, tokenizer)
    for epoch in range(epochs):
        texts, labels = augmenter.expand(train.texts, train.labels.tolist(), rng)
        _epoch(
            model, tokenizer, texts, labels, rng, recipe.batch_size, optimizers, schedules, loss_fn
        )
        if val is not None:
            result.val_accuracies.append(accuracy(model, tokenizer, val))
            if report is not None and report(epoch, result.val_accuracies[-1]):
                break
    model.eval()
    return result


def _epoch(
    model: NgramClassifier,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    labels: Sequence[int],
    rng: np.random.Generator,
    batch_size: int,
    optimizers: list[torch.optim.Optimizer],
    schedules: list[torch.optim.lr_scheduler.LambdaLR],
    loss_fn: nn.Module,
) -> None:
    model.train()
    order = rng.permutation(len(texts))
    targets = torch.tensor(labels, dtype=torch.int64)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids, offsets = tokenizer.encode([texts[i] for i in rows])
        loss = loss_fn(model(ids, offsets), targets[torch.from_numpy(rows)])
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer, schedule in zip(optimizers, schedules, strict=True):
            optimizer.step()
            schedule.step()
