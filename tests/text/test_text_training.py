"""The n-gram proxy: tokenizer, seeded training with text policies, checkpoints, the search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ops.policy import Policy
from ops.text_presets import eda_policy
from search.datasets.spec import WordNetTopicsSpec
from search.text.checkpoint import TextModelCard, load_text_checkpoint, save_text_checkpoint
from search.text.dataset import DatasetError, TextDataset, stratified_folds
from search.text.loader import load_text_dataset
from search.text.model import Tokenizer
from search.text.search import training_part
from search.text.trainer import TextRecipe, accuracy, train_text_model, training_epochs

SPEC = WordNetTopicsSpec(topics=["animal", "food", "location"], per_class=60)
RECIPE = TextRecipe(epochs=4)


@pytest.fixture(scope="module")
def topics() -> TextDataset:
    return load_text_dataset(SPEC)


def test_tokenizer_ids() -> None:
    tokenizer = Tokenizer.fit(["a red apple", "A red car"], buckets=100)
    assert tokenizer.vocabulary == ("a", "red", "apple", "car") and tokenizer.size == 104
    ids = tokenizer.ids("Red bus")
    assert ids[0] == 1 and 4 <= ids[1] < 104 and len(ids) == 3  # word, unknown word, bigram
    assert tokenizer.ids("") == [4]
    flat, offsets = tokenizer.encode(["a red", "car"])
    assert offsets.tolist() == [0, 3] and flat.tolist()[:2] == [0, 1]


def test_training_learns_and_is_seeded(topics: TextDataset) -> None:
    train, test = topics.part("train"), topics.part("test")
    first = train_text_model(train, Policy(kind="none"), RECIPE, seed=1, val=test)
    again = train_text_model(train, Policy(kind="none"), RECIPE, seed=1, val=test)
    assert first.val_accuracies == again.val_accuracies and len(first.val_accuracies) == 4
    for a, b in zip(first.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert accuracy(first.model, first.tokenizer, train) > 0.9
    assert first.val_accuracy > 0.5  # three classes: chance is a third
    augmented = train_text_model(train, eda_policy(copies=2), RECIPE, seed=1, val=test)
    assert augmented.val_accuracies != first.val_accuracies
    with pytest.raises(ValueError, match="needs a 'text' policy"):
        train_text_model(train, Policy(kind="randaugment"), RECIPE, seed=1)


def test_every_policy_gets_the_same_passes_over_the_texts(topics: TextDataset) -> None:
    # 8 passes: 8 epochs without augmentation, 2 epochs of the texts and 3 copies of each.
    recipe = TextRecipe(epochs=8)
    for policy, copies, epochs in ((Policy(kind="none"), 0, 8), (eda_policy(copies=3), 3, 2)):
        result = train_text_model(topics, policy, recipe, 0, topics)
        assert len(result.val_accuracies) == epochs == training_epochs(recipe, copies)


def test_stratified_folds_deal_each_class_evenly() -> None:
    labels = np.repeat(np.arange(3), [10, 7, 5])
    folds = stratified_folds(labels, 5, seed=1)
    assert folds.shape == labels.shape and set(folds.tolist()) == set(range(5))
    for c in range(3):
        counts = np.bincount(folds[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(folds, stratified_folds(labels, 5, seed=1))


def test_checkpoint_round_trip(topics: TextDataset, tmp_path: Path) -> None:
    train, test = topics.part("train"), topics.part("test")
    result = train_text_model(train, eda_policy(copies=1), RECIPE, seed=0, val=test)
    card = TextModelCard(
        classes=topics.classes,
        vocabulary=list(result.tokenizer.vocabulary),
        buckets=result.tokenizer.buckets,
        bigrams=result.tokenizer.bigrams,
        dim=RECIPE.dim,
        policy=eda_policy(copies=1).model_dump(mode="json"),
        recipe=RECIPE,
        metrics={"test_accuracy": result.val_accuracy},
    )
    path = tmp_path / "text.safetensors"
    assert len(save_text_checkpoint(path, result, card)) == 64
    model, tokenizer, loaded = load_text_checkpoint(path)
    assert loaded == card and loaded.vocabulary == list(result.tokenizer.vocabulary)
    assert accuracy(model, tokenizer, test) == result.val_accuracy
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(DatasetError, match="not a text checkpoint"):
        load_text_checkpoint(bad)


def test_the_training_part_leaves_the_test_texts_out(topics: TextDataset) -> None:
    part = training_part(topics)
    assert len(part) == 144 and topics.splits is not None
    assert not set(part.texts) & set(topics.part("test").texts)
