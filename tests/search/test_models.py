"""Proxy models: every architecture on 1 and 3 channels and several input sizes."""

from __future__ import annotations

import pytest
import torch

from search.models import ARCHS, build_model


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize(("channels", "size"), [(1, 8), (3, 20), (1, 33)])
def test_forward_shapes(arch: str, channels: int, size: int) -> None:
    model = build_model(arch, num_classes=7, in_channels=channels, image_size=size, width=0.25)
    model.eval()
    out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    assert isinstance(model.classifier, torch.nn.Linear)


def test_non_square_input_and_dropout() -> None:
    model = build_model("wrn-16-2", 3, 3, (16, 24), dropout=0.3)
    model.train()
    out = model(torch.randn(4, 3, 16, 24))
    assert out.shape == (4, 3)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.3 for m in model.modules())


def test_depths_differ() -> None:
    def count(arch: str) -> int:
        return sum(p.numel() for p in build_model(arch, 10, 3, 32).parameters())

    assert count("resnet8") < count("resnet20") < count("wrn-16-2") < count("wrn-28-2")


def test_airbench_width_and_batchnorm_momentum() -> None:
    narrow = build_model("airbench", 10, 3, 32, width=0.25)
    wide = build_model("airbench", 10, 3, 32)
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in wide.parameters())
    norms = [m for m in wide.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == pytest.approx(0.4) for m in norms)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "vgg"}, "unknown architecture"),
        ({"image_size": 7}, "below the minimum"),
        ({"num_classes": 1}, ">= 2 classes"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"arch": "resnet8", "num_classes": 10, "in_channels": 3}
    args["image_size"] = 32
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        build_model(**args)  # type: ignore[arg-type]
