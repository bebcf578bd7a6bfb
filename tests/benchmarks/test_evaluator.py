"""The independent evaluator: it learns, one seed gives one result, and it checks its inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmarks.evaluator import EvalRecipe, SmallVGG, evaluate_policy, train_and_test
from ops.policy import BaseAugment, MixConfig
from ops.presets import PRESETS
from search.datasets import DigitsSpec, ImageDataset, load_dataset, stratified_split

FAST = EvalRecipe(widths=(8, 16, 32))


@pytest.fixture(scope="module")
def digits16() -> tuple[ImageDataset, ImageDataset]:
    """Digits at 16x16: 600 training and 300 test images."""
    ds = load_dataset(DigitsSpec(image_size=16))
    train, test = stratified_split(ds, 0.3, seed=0, train_size=600)
    return train, test.subset(range(300))


def test_learns_digits_well_above_chance(digits16: tuple[ImageDataset, ImageDataset]) -> None:
    train, test = digits16
    run = train_and_test(PRESETS["none"], train, test, seed=0, epochs=6, recipe=FAST)
    assert run.test_accuracy > 0.85  # chance is 0.1
    assert run.train_loss < 1.0 and run.images_per_second > 0 and run.seconds > 0


def test_same_seed_same_result_other_seed_differs(
    digits16: tuple[ImageDataset, ImageDataset],
) -> None:
    train, test = digits16
    train = train.subset(range(200))
    policy = PRESETS["trivialaugment-wide"].model_copy(
        update={"base": BaseAugment(crop_padding=2), "mix": MixConfig(mixup_alpha=0.2)}
    )
    rng_before = torch.random.get_rng_state()
    runs = [train_and_test(policy, train, test, seed=s, epochs=2, recipe=FAST) for s in (3, 3, 4)]
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the caller's RNG untouched
    assert runs[0].test_accuracy == runs[1].test_accuracy
    assert runs[0].train_loss == runs[1].train_loss
    assert runs[2].train_loss != runs[0].train_loss


def test_evaluate_policy_gives_one_accuracy_per_seed(
    digits16: tuple[ImageDataset, ImageDataset],
) -> None:
    train, test = digits16
    train = train.subset(range(100))
    accs = evaluate_policy(
        PRESETS["autoaugment-cifar10"], train, test, seeds=[0, 1], epochs=1, recipe=FAST
    )
    assert len(accs) == 2 and all(0.0 <= a <= 1.0 for a in accs)


@pytest.mark.parametrize("channels", [1, 3])
def test_small_vgg_takes_grey_and_colour(channels: int) -> None:
    model = SmallVGG(channels, 7)
    assert model(torch.zeros(2, channels, 32, 32)).shape == (2, 7)


def test_refuses_mismatched_sets(digits16: tuple[ImageDataset, ImageDataset]) -> None:
    train, test = digits16
    renamed = dataclasses.replace(test, classes=[f"c{i}" for i in range(10)])
    with pytest.raises(ValueError, match="different classes"):
        train_and_test(PRESETS["none"], train, renamed, seed=0, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        train_and_test(PRESETS["none"], train, test, seed=0, epochs=0)
