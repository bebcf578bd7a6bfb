"""MixUp / CutMix / Cutout with soft targets."""

from __future__ import annotations

import pytest
import torch

from ops.mix import mix_batch, soft_targets
from ops.policy import MixConfig


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 16, 16), generator=gen, dtype=torch.uint8)
    return images, torch.arange(n) % 10


def test_label_smoothing_only() -> None:
    images, labels = _data()
    out, targets = mix_batch(images, labels, 10, MixConfig(label_smoothing=0.1), torch.Generator())
    assert torch.equal(out, images)
    assert torch.allclose(targets.sum(1), torch.ones(64))
    assert targets[0, 0].item() == pytest.approx(0.91) and targets[0, 1].item() == pytest.approx(
        0.01
    )


def test_mixup_blends_pixels_and_targets_with_the_same_lambda() -> None:
    images, labels = _data()
    images = images.float()
    out, targets = mix_batch(
        images, labels, 10, MixConfig(mixup_alpha=0.4), torch.Generator().manual_seed(1)
    )
    assert torch.allclose(targets.sum(1), torch.ones(64))
    lam = targets.max(1).values  # labels are distinct within any pair unless equal classes
    assert lam.unique().numel() > 10  # per-sample lambdas
    assert out.dtype == torch.float32 and not torch.equal(out, images)


def test_cutmix_targets_match_pasted_area() -> None:
    images, labels = _data()
    images = torch.zeros_like(images)
    images[labels % 2 == 1] = 255  # odd labels white, even labels black
    labels = labels % 2
    cfg = MixConfig(cutmix_alpha=1.0, cutmix_prob=1.0)
    out, targets = mix_batch(images, labels, 2, cfg, torch.Generator().manual_seed(2))
    white = (out == 255).float().mean(dim=(1, 2, 3))
    assert torch.allclose(targets[:, 1], white, atol=1e-6)


def test_cutmix_probability_leaves_other_samples_unmixed() -> None:
    images, labels = _data(4000)
    cfg = MixConfig(cutmix_alpha=1.0, cutmix_prob=0.3)
    _out, targets = mix_batch(images, labels, 10, cfg, torch.Generator().manual_seed(3))
    mixed = (targets.max(1).values < 1).float().mean().item()
    assert 0.25 < mixed < 0.32  # some boxes are empty, and partners can share a class


def test_cutout_in_pixels_and_fraction() -> None:
    images = torch.full((32, 3, 20, 20), 200, dtype=torch.uint8)
    labels = torch.zeros(32, dtype=torch.long)
    out, _ = mix_batch(images, labels, 2, MixConfig(cutout=6), torch.Generator().manual_seed(0))
    zeros = (out[:, 0] == 0).sum(dim=(1, 2))
    assert zeros.max() == 36 and zeros.min() > 0
    out, _ = mix_batch(images, labels, 2, MixConfig(cutout=0.5), torch.Generator().manual_seed(0))
    assert (out[:, 0] == 0).sum(dim=(1, 2)).max() == 100


def test_mix_is_deterministic_and_validates() -> None:
    images, labels = _data()
    cfg = MixConfig(mixup_alpha=0.2, cutmix_alpha=1.0, cutmix_prob=0.5, label_smoothing=0.1)
    a = mix_batch(images, labels, 10, cfg, torch.Generator().manual_seed(5))
    b = mix_batch(images, labels, 10, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="labels must lie"):
        soft_targets(torch.tensor([0, 12]), 10, 0.0)
    with pytest.raises(ValueError, match="one label per image"):
        mix_batch(images, labels[:3], 10, cfg, torch.Generator())
