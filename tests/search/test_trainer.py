"""The trial trainer on real data: learning, determinism, callbacks, clipping, mixing."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

from ops.policy import BaseAugment, MixConfig
from ops.presets import PRESETS
from search.datasets import ImageDataset
from search.models import build_model
from search.trainer import TrainerRecipe, evaluate, train
from search.training import optim

Split = tuple[ImageDataset, ImageDataset]
FAST = {"arch": "airbench", "width": 0.125, "lr": 0.4, "batch_size": 32}


def _recipe(**kw: object) -> TrainerRecipe:
    return TrainerRecipe(**{**FAST, **kw})  # type: ignore[arg-type]


def _small(split: Split, n_train: int = 200, n_val: int = 100) -> Split:
    return split[0].subset(range(n_train)), split[1].subset(range(n_val))


def test_learns_digits_well_above_chance(digits_small: Split) -> None:
    train_set, val_set = digits_small
    seen: list[tuple[int, float]] = []
    result = train(
        _recipe(epochs=4),
        PRESETS["none"],
        train_set,
        val_set,
        device="cpu",
        seed=0,
        on_epoch=lambda epoch, row: seen.append((epoch, row["val_accuracy"])),
    )
    assert result.metrics["val_accuracy"] > 0.8
    assert [e for e, _ in seen] == [1, 2, 3, 4] and len(result.history) == 4
    assert result.metrics["val_accuracy"] == max(acc for _, acc in seen)
    assert result.metrics["stop_reason"] == "completed" and result.metrics["images_per_second"] > 0
    # The returned weights reproduce the reported accuracy in a fresh model.
    fresh = build_model("airbench", 10, 1, 16, width=0.125)
    fresh.load_state_dict(result.state_dict)
    again = evaluate(fresh, val_set, "cpu", mean=result.mean, std=result.std)
    assert again["accuracy"] == result.metrics["val_accuracy"]


def test_the_reported_validation_is_that_of_the_returned_weights(digits_small: Split) -> None:
    # Without restoring the best epoch the figures are the last epoch's validation, not
    # measured twice; they are those of the weights returned.
    train_set, val_set = _small(digits_small)
    result = train(_recipe(epochs=3, restore_best=False), PRESETS["none"], train_set, val_set,
                   device="cpu", seed=1)  # fmt: skip
    last = result.history[-1]
    assert result.metrics["val_accuracy"] == last["val_accuracy"]
    assert result.metrics["val_loss"] == last["val_loss"]
    fresh = build_model("airbench", 10, 1, 16, width=0.125)
    fresh.load_state_dict(result.state_dict)
    again = evaluate(fresh, val_set, "cpu", mean=result.mean, std=result.std)
    assert again["accuracy"] == result.metrics["val_accuracy"]
    assert again["loss"] == pytest.approx(result.metrics["val_loss"], rel=1e-5)


def test_val_every_validates_those_epochs_and_the_last(digits_small: Split) -> None:
    train_set, val_set = _small(digits_small)
    seen: list[int] = []
    result = train(_recipe(epochs=5, val_every=2), PRESETS["none"], train_set, val_set,
                   device="cpu", seed=0, on_epoch=lambda epoch, row: seen.append(epoch))  # fmt: skip
    assert seen == [2, 4, 5] and [int(row["epoch"]) for row in result.history] == [2, 4, 5]
    assert result.metrics["epochs_run"] == 5
    # A search's proxy validates about 8 times unless its recipe says otherwise.
    assert TrainerRecipe(epochs=39).with_proxy_validation().val_every == 5
    assert TrainerRecipe(epochs=39, val_every=1).with_proxy_validation().val_every == 1
    assert TrainerRecipe(epochs=4).with_proxy_validation().val_every == 1


def test_same_seed_same_weights_other_seed_differs(digits_small: Split) -> None:
    train_set, val_set = _small(digits_small)
    policy = PRESETS["randaugment-2-9"].model_copy(
        update={"base": BaseAugment(crop_padding=2, hflip=True), "mix": MixConfig(mixup_alpha=0.2)}
    )
    rng_before = torch.random.get_rng_state()
    runs = [
        train(_recipe(epochs=2, dropout=0.2), policy, train_set, val_set, device="cpu", seed=s)
        for s in (5, 5, 6)
    ]
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    a, b, c = (r.state_dict for r in runs)
    assert runs[0].metrics["val_accuracy"] == runs[1].metrics["val_accuracy"]
    assert runs[0].history == [
        {**row, "seconds": runs[0].history[i]["seconds"]} for i, row in enumerate(runs[1].history)
    ]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_pruning_exception_propagates(digits_small: Split) -> None:
    train_set, val_set = _small(digits_small)
    calls: list[int] = []

    def prune_at_two(epoch: int, row: dict[str, float]) -> None:
        calls.append(epoch)
        if epoch == 2:
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    with pytest.raises(optuna.TrialPruned, match="epoch 2"):
        train(_recipe(epochs=5), PRESETS["none"], train_set, val_set, device="cpu", seed=0,
              on_epoch=prune_at_two)  # fmt: skip
    assert calls == [1, 2]


def test_should_stop_ends_cleanly(digits_small: Split) -> None:
    train_set, val_set = _small(digits_small)
    epochs: list[int] = []
    result = train(
        _recipe(epochs=5), PRESETS["none"], train_set, val_set, device="cpu", seed=0,
        on_epoch=lambda e, _: epochs.append(e), should_stop=lambda: len(epochs) >= 2,
    )  # fmt: skip
    assert result.metrics["epochs_run"] == 2 and result.metrics["stop_reason"] == "cancelled"
    at_once = train(_recipe(epochs=5), PRESETS["none"], train_set, val_set, device="cpu",
                    seed=0, should_stop=lambda: True)  # fmt: skip
    assert at_once.metrics["epochs_run"] == 0 and at_once.metrics["stop_reason"] == "cancelled"
    assert 0.0 <= at_once.metrics["val_accuracy"] <= 1.0 and math.isnan(
        at_once.metrics["train_loss"]
    )


def test_early_stopping_on_a_saturated_task(tiny_synthetic: ImageDataset) -> None:
    result = train(
        _recipe(epochs=40, early_stopping_patience=2, batch_size=16),
        PRESETS["none"], tiny_synthetic, tiny_synthetic, device="cpu", seed=0,
    )  # fmt: skip
    assert result.metrics["stop_reason"] == "early_stopping"
    # Patience counts the epochs since the accuracy last improved ...
    accs = [row["val_accuracy"] for row in result.history]
    first_best = 1 + accs.index(max(accs))
    assert result.metrics["epochs_run"] == first_best + 2 < 40
    # ... while the kept weights are those of the lowest loss at the best accuracy, not of the
    # first epoch that reached it (a saturated validation would serve an early epoch).
    tied = [row for row in result.history if row["val_accuracy"] == max(accs)]
    best = min(tied, key=lambda row: row["val_loss"])
    assert result.metrics["best_epoch"] == int(best["epoch"]) > first_best
    assert result.metrics["val_loss"] == best["val_loss"] < tied[0]["val_loss"]


@pytest.mark.parametrize(
    "mix",
    [
        MixConfig(mixup_alpha=0.4),
        MixConfig(cutmix_alpha=1.0, label_smoothing=0.1),
        MixConfig(mixup_alpha=0.2, cutmix_alpha=1.0, cutmix_prob=0.5),
        MixConfig(cutout=0.25),
    ],
)
def test_mix_paths_train(digits_small: Split, mix: MixConfig) -> None:
    train_set, val_set = _small(digits_small, 128, 64)
    policy = PRESETS["trivialaugment-wide"].model_copy(update={"mix": mix})
    result = train(_recipe(epochs=1), policy, train_set, val_set, device="cpu", seed=0)
    assert math.isfinite(result.metrics["train_loss"]) and result.metrics["epochs_run"] == 1


@pytest.mark.parametrize(
    "knobs",
    [
        {"agc_clip": 0.01},
        {"grad_clip_norm": 0.05},
        {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05, "schedule": "onecycle"},
        {"arch": "resnet8", "schedule": "constant", "warmup_epochs": 0.5, "label_smoothing": 0.1},
        {"channels_last": True, "restore_best": False},
    ],
)
def test_recipe_knobs_change_training(digits_small: Split, knobs: dict[str, object]) -> None:
    train_set, val_set = _small(digits_small, 128, 64)
    base = train(_recipe(epochs=1), PRESETS["none"], train_set, val_set, device="cpu", seed=0)
    other = train(_recipe(epochs=1, **knobs), PRESETS["none"], train_set, val_set,
                  device="cpu", seed=0)  # fmt: skip
    assert math.isfinite(other.metrics["train_loss"])
    if "channels_last" not in knobs:  # memory layout alone must not change the arithmetic much
        assert other.metrics["train_loss"] != base.metrics["train_loss"]


def test_adaptive_clip_bounds_unit_gradients() -> None:
    weight = torch.nn.Parameter(torch.ones(3, 4))
    weight.grad = torch.tensor([[100.0] * 4, [0.001] * 4, [-50.0] * 4])
    optim.adaptive_clip([weight], clip=0.1)
    norms = weight.grad.norm(dim=1)
    assert torch.allclose(norms[[0, 2]], torch.tensor([0.2, 0.2]))  # 0.1 * ||w_unit|| = 0.1 * 2
    assert torch.allclose(weight.grad[1], torch.full((4,), 0.001))


def test_schedules() -> None:
    steps = 100
    cosine = [optim.lr_factor(_recipe(epochs=10), s, steps, 10) for s in range(steps)]
    assert cosine[0] == 1.0 and cosine[-1] < 0.01 and cosine == sorted(cosine, reverse=True)
    warm = _recipe(epochs=10, warmup_epochs=2)
    assert [optim.lr_factor(warm, s, steps, 10) for s in (0, 9, 19)] == pytest.approx(
        [1 / 21, 10 / 21, 20 / 21]
    )
    one = [
        optim.lr_factor(_recipe(epochs=10, schedule="onecycle"), s, steps, 10) for s in range(steps)
    ]
    assert max(one) == one[25] == 1.0 and one[24] < 1.0 and one[-1] < 0.02


def test_evaluate_with_a_policy_is_seeded_and_differs(digits_small: Split) -> None:
    train_set, val_set = digits_small
    model = train(
        _recipe(epochs=2), PRESETS["none"], train_set, val_set, device="cpu", seed=0
    ).model
    harsh = PRESETS["autoaugment-imagenet"]
    plain = evaluate(model, val_set, "cpu")
    aug1 = evaluate(model, val_set, "cpu", policy=harsh, generator=torch.Generator().manual_seed(1))
    aug2 = evaluate(model, val_set, "cpu", policy=harsh, generator=torch.Generator().manual_seed(1))
    assert aug1 == aug2 and aug1["accuracy"] < plain["accuracy"]


def test_bad_recipes_and_sets(digits_small: Split, tiny_synthetic: ImageDataset) -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        TrainerRecipe(momentum=0.5)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainerRecipe(epochs=2, warmup_epochs=2)
    with pytest.raises(ValueError):
        TrainerRecipe(epochs=0)
    with pytest.raises(ValueError, match="different classes"):
        train(_recipe(epochs=1), PRESETS["none"], digits_small[0], tiny_synthetic, device="cpu",
              seed=0)  # fmt: skip


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_on_cuda(digits_small: Split, amp: str) -> None:
    train_set, val_set = digits_small
    policy = PRESETS["randaugment-2-9"].model_copy(update={"mix": MixConfig(cutmix_alpha=1.0)})
    result = train(_recipe(epochs=4, amp=amp, channels_last=True), policy, train_set, val_set,
                   device="cuda", seed=0)  # fmt: skip
    assert result.metrics["val_accuracy"] > 0.7
    assert all(v.device.type == "cpu" for v in result.state_dict.values())
