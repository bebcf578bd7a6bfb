"""A text policy search in one process: baselines, then the ``eda`` space under TPE.

Every trial trains the n-gram proxy (:mod:`search.text.trainer`) on the training part minus a
stratified validation part and is scored by validation accuracy, averaged over ``repeats``
validation draws (a few hundred validation texts score a policy within several points; the
average is what the sampler sees). Baselines (no augmentation, EDA's defaults) are trained the
same way, and the pick is the best of all, so the search never serves less than a baseline on
its own validation. Texts the dataset tags ``test`` are never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import optuna
from pydantic import BaseModel, ConfigDict, Field

from ops.lexicon import WordNet
from ops.policy import Policy
from ops.text_presets import TEXT_PRESETS
from search.datasets.dataset import SPLIT_CODES
from search.datasets.spec import TextDatasetSpec
from search.strategies import get_strategy
from search.text.dataset import TextDataset, stratified_indices
from search.text.loader import load_text_dataset
from search.text.trainer import TextRecipe, train_text_model

TextBaseline = Literal["none", "eda"]
DEFAULT_BASELINES: tuple[TextBaseline, ...] = ("none", "eda")


class TextSearchSpec(BaseModel):
    """One text search.

    Attributes:
        dataset: the text dataset.
        n_trials: trials of the ``eda`` space (EDA's defaults are the first).
        baselines: preset policies trained beside the search.
        recipe: trainer recipe of every trial.
        val_fraction: share of each class of the training texts held out for validation.
        train_size: train on this many of the training texts (all when None).
        repeats: validation draws averaged per trial.
        seed: seed of the sampler, the splits and the trainings.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: TextDatasetSpec
    n_trials: int = Field(default=12, ge=1, le=1000)
    baselines: list[TextBaseline] = Field(default_factory=lambda: list(DEFAULT_BASELINES))
    recipe: TextRecipe = Field(default_factory=TextRecipe)
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    train_size: int | None = Field(default=None, ge=10)
    repeats: int = Field(default=2, ge=1, le=10)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


@dataclass
class TextSearchResult:
    """The picked policy, its validation score and every scored policy in order."""

    policy: Policy
    value: float
    scored: list[tuple[str, Policy, float]] = field(default_factory=list)


def training_part(ds: TextDataset) -> TextDataset:
    """Every text the dataset does not tag ``test`` (tagged ``val`` texts join training)."""
    if ds.splits is None:
        return ds
    return ds.subset(np.flatnonzero(ds.splits != SPLIT_CODES["test"]))


def _score(
    train: TextDataset, policy: Policy, spec: TextSearchSpec, lexicon: WordNet | None
) -> float:
    values = []
    for repeat in range(spec.repeats):
        seed = spec.seed * 1000 + repeat
        rest, held = stratified_indices(train.labels, spec.val_fraction, seed)
        result = train_text_model(
            train.subset(rest), policy, spec.recipe, seed, train.subset(held), lexicon=lexicon
        )
        values.append(result.val_accuracy)
    return float(np.mean(values))


def run_text_search(
    spec: TextSearchSpec, dataset: TextDataset | None = None, lexicon: WordNet | None = None
) -> TextSearchResult:
    """Run the search and pick the best policy by validation accuracy.

    Args:
        spec: the search.
        dataset: the dataset, when already loaded (else read from ``spec.dataset``).
        lexicon: the synonym source (the default WordNet folder when None).
    """
    ds = dataset if dataset is not None else load_text_dataset(spec.dataset)
    train = training_part(ds)
    if spec.train_size is not None:
        keep, _ = stratified_indices(train.labels, 0.01, spec.seed, size=spec.train_size)
        train = train.subset(keep)
    wordnet = lexicon if lexicon is not None else WordNet()
    scored = [
        (f"baseline:{name}", TEXT_PRESETS[name], _score(train, TEXT_PRESETS[name], spec, wordnet))
        for name in spec.baselines
    ]
    strategy = get_strategy("eda")
    sampler = optuna.samplers.TPESampler(seed=spec.seed, multivariate=True, n_startup_trials=5)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(strategy.starting_points()["eda"])

    def objective(trial: optuna.Trial) -> float:
        policy = strategy.suggest(trial)
        value = _score(train, policy, spec, wordnet)
        scored.append((f"trial:{trial.number}", policy, value))
        return value

    study.optimize(objective, n_trials=spec.n_trials)
    _, best, value = max(scored, key=lambda item: item[2])
    return TextSearchResult(best, value, scored)
