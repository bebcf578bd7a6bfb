"""One trial of a text search on a worker: the objective's branch for text datasets.

A text search runs through the same lifecycle as an image search (baselines ``none`` and
``eda-defaults``, the ``eda`` space under the budget, the final pick, a final training and its
checkpoint); only the training differs. Splits: texts the dataset tags ``test`` are never
trained on; of the rest, ``val_fraction`` of each class (seeded) is validation; search and
baseline trials train on ``train_size`` of the other texts (all when unset), final trainings on
all of them, each with ``spec.text_recipe``. The final's checkpoint is the text checkpoint of
:mod:`search.text.checkpoint` (vocabulary in its card), uploaded through ``optuna.artifacts``;
its card, less the vocabulary, is the trial's ``model_card`` attr.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts._protocol import ArtifactStore

from ops.policy import Policy
from ops.text import augmented_copies
from search.datasets.dataset import SPLIT_CODES
from search.datasets.spec import TextTableSpec, WordNetTopicsSpec
from search.spec import SearchSpec
from search.strategies.samplers import CHANCE_ATTR, PLANNED_EPOCHS_ATTR
from search.text.checkpoint import TextModelCard, save_text_checkpoint
from search.text.dataset import (
    TextDataset,
    concatenate,
    stratified_folds,
    stratified_indices,
)
from search.text.loader import load_text_dataset
from search.text.search import training_part
from search.text.trainer import (
    TextTrainingResult,
    accuracy,
    train_text_model,
    training_epochs,
)

#: A final training whose validation part holds fewer texts than this is scored by
#: `CV_FOLDS`-fold cross-validation over all the training texts: on 500 texts the validation
#: part holds 100, whose accuracy moves by about 5 points between draws, more than what
#: separates most policies (docs/text.md).
CV_BELOW = 1000
CV_FOLDS = 5


@dataclass(frozen=True)
class TextSearchData:
    """The parts of a text search: search training, final training, validation, test."""

    search_train: TextDataset
    final_train: TextDataset
    val: TextDataset
    test: TextDataset | None


def split_text_search(ds: TextDataset, spec: SearchSpec) -> TextSearchData:
    """Split a text dataset for a search (see the module docstring); texts the dataset tags
    ``val`` are the validation part when there are any."""
    if ds.splits is not None and (ds.splits == SPLIT_CODES["val"]).any():
        final_train, val = ds.part("train"), ds.part("val")
    else:
        train = training_part(ds)
        rest, held = stratified_indices(train.labels, spec.val_fraction, spec.seed)
        final_train, val = train.subset(rest), train.subset(held)
    search_train = final_train
    if spec.train_size is not None and spec.train_size < len(final_train):
        keep, _ = stratified_indices(final_train.labels, 0.01, spec.seed, size=spec.train_size)
        search_train = final_train.subset(keep)
    test = None
    if ds.splits is not None and (ds.splits == SPLIT_CODES["test"]).any():
        test = ds.part("test")
    return TextSearchData(search_train, final_train, val, test)


class TextTrials:
    """Runs the trials of text searches for an `search.objective.Objective`.

    Args:
        artifact_store: where final checkpoints go.
        raise_if_stopped: raises when the worker stops or the search is cancelled.
    """

    def __init__(
        self, artifact_store: ArtifactStore, raise_if_stopped: Callable[[optuna.Study], None]
    ) -> None:
        self.artifact_store = artifact_store
        self.raise_if_stopped = raise_if_stopped
        self._data: dict[str, TextSearchData] = {}

    def data(self, spec: SearchSpec) -> TextSearchData:
        """The search's splits, read once per process."""
        key = f"{spec.dataset.model_dump_json()}|{spec.seed}|{spec.val_fraction}|{spec.train_size}"
        if key not in self._data:
            if not isinstance(spec.dataset, WordNetTopicsSpec | TextTableSpec):
                raise TypeError(f"not a text dataset: {spec.dataset.source!r}")
            self._data[key] = split_text_search(load_text_dataset(spec.dataset), spec)
        return self._data[key]

    def run(
        self, trial: optuna.Trial, spec: SearchSpec, policy: Policy, role: str
    ) -> tuple[dict[str, Any], Callable[[], float]]:
        """The attrs to write before training, and the training to run after them."""
        data = self.data(spec)
        recipe = spec.text_recipe
        attrs = {
            "recipe": recipe.model_dump(mode="json", exclude_defaults=True),
            PLANNED_EPOCHS_ATTR: training_epochs(recipe, augmented_copies(policy)),
            CHANCE_ATTR: 1.0 / max(1, data.final_train.num_classes),
        }
        return attrs, lambda: self._train(trial, spec, policy, role, data)

    def _train(
        self, trial: optuna.Trial, spec: SearchSpec, policy: Policy, role: str, data: TextSearchData
    ) -> float:
        history: list[float] = []
        epochs = training_epochs(spec.text_recipe, augmented_copies(policy))

        def report(epoch: int, value: float) -> bool:
            history.append(value)
            trial.set_user_attr("epochs", history)
            if role != "final":
                trial.report(value, epoch + 1)
            if role == "search" and epoch + 1 < epochs and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch + 1}: {value:.4f}")
            self.raise_if_stopped(trial.study)
            return False

        train = data.final_train if role == "final" else data.search_train
        result = train_text_model(train, policy, spec.text_recipe, spec.seed, data.val, report)
        value = float(result.val_accuracies[-1])
        if role == "final":
            self._save_final(trial, spec, policy, result, data, value)
            if len(data.val) < CV_BELOW:
                value = self._cross_validated(trial, spec, policy, data)
        return value

    def _cross_validated(
        self, trial: optuna.Trial, spec: SearchSpec, policy: Policy, data: TextSearchData
    ) -> float:
        """Accuracy of ``policy`` by `CV_FOLDS`-fold cross-validation over the training texts.

        Every contender of the final pick is scored on the same folds (seeded by the search),
        so their comparison is paired. Recorded as the ``cv_accuracy`` attr; the held-out
        validation accuracy of the served model stays in ``val_accuracy``.
        """
        pool = concatenate(data.final_train, data.val)
        folds = stratified_folds(pool.labels, CV_FOLDS, spec.seed + 11)
        correct = 0.0
        for k in range(CV_FOLDS):
            self.raise_if_stopped(trial.study)
            held = pool.subset(np.flatnonzero(folds == k))
            fitted = train_text_model(
                pool.subset(np.flatnonzero(folds != k)), policy, spec.text_recipe, spec.seed
            )
            correct += accuracy(fitted.model, fitted.tokenizer, held) * len(held)
        value = correct / len(pool)
        trial.set_user_attr("cv_accuracy", value)
        trial.set_user_attr("cv_folds", CV_FOLDS)
        return value

    def _save_final(
        self,
        trial: optuna.Trial,
        spec: SearchSpec,
        policy: Policy,
        result: TextTrainingResult,
        data: TextSearchData,
        value: float,
    ) -> None:
        metrics = {"val_accuracy": value}
        trial.set_user_attr("val_accuracy", value)
        if data.test is not None:
            metrics["test_accuracy"] = float(accuracy(result.model, result.tokenizer, data.test))
            trial.set_user_attr("test_accuracy", metrics["test_accuracy"])
        tokenizer = result.tokenizer
        card = TextModelCard(
            classes=list(data.final_train.classes),
            vocabulary=list(tokenizer.vocabulary),
            buckets=tokenizer.buckets,
            bigrams=tokenizer.bigrams,
            dim=spec.text_recipe.dim,
            policy=policy.model_dump(mode="json"),
            recipe=spec.text_recipe,
            metrics=metrics,
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.safetensors"
            sha = save_text_checkpoint(path, result, card)
            artifact_id = optuna.artifacts.upload_artifact(
                artifact_store=self.artifact_store,
                file_path=str(path),
                study_or_trial=trial,
                mimetype="application/octet-stream",
            )
        summary = card.model_dump(mode="json", exclude={"vocabulary"})
        summary["vocabulary_size"] = len(card.vocabulary)
        trial.set_user_attr("checkpoint", artifact_id)
        trial.set_user_attr("model_card", summary)
        trial.set_user_attr("sha256", sha)
