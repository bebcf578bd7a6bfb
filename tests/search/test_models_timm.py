"""timm architectures: built by timm from JSON-able arguments, small-image variants by size."""

from __future__ import annotations

import json
from typing import get_args

import pytest
import torch
from pydantic import ValidationError

from search.models import (
    ARCHS,
    TIMM_ARCHS,
    TimmConfig,
    build_model,
    create_timm_model,
    output_stride_for,
    timm_config,
)
from search.spec import DEFAULT_FINAL_ARCH, SearchSpec
from search.training.recipe import Arch, TrainerRecipe


def test_recipe_offers_exactly_the_built_architectures() -> None:
    assert set(get_args(Arch)) == set(ARCHS) | set(TIMM_ARCHS)
    assert DEFAULT_FINAL_ARCH in TIMM_ARCHS


@pytest.mark.parametrize("arch", sorted(TIMM_ARCHS))
@pytest.mark.parametrize(("channels", "size"), [(1, 8), (3, 33)])
def test_forward_shapes(arch: str, channels: int, size: int) -> None:
    model = build_model(arch, num_classes=7, in_channels=channels, image_size=size, width=0.25)
    assert type(model).__module__.startswith("timm.")
    out = model.eval()(torch.randn(2, channels, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize(("side", "stride"), [(8, 8), (32, 8), (63, 8), (64, 16), (127, 16)])
def test_small_images_get_a_smaller_output_stride(side: int, stride: int) -> None:
    assert output_stride_for(side) == stride
    assert output_stride_for(128) == output_stride_for(224) == 32


def test_last_feature_map_keeps_its_side_on_small_images() -> None:
    model = build_model("timm:resnet18", 10, 1, 32, width=0.25).eval()
    features = model.forward_features(torch.randn(1, 1, 32, 32))  # type: ignore[operator]
    assert features.shape[-2:] == (4, 4)
    large = build_model("timm:resnet18", 10, 1, 224, width=0.25).eval()
    assert large.forward_features(torch.randn(1, 1, 224, 224)).shape[-2:] == (7, 7)  # type: ignore[operator]


def test_config_is_json_and_rebuilds_the_same_model() -> None:
    config = timm_config("timm:resnet18d", 5, 3, (24, 40), width=0.5, dropout=0.2, drop_path=0.1)
    kwargs = json.loads(json.dumps(config.kwargs))
    assert config.name == "resnet18d" and kwargs["stem_width"] == 16
    assert kwargs["channels"] == [32, 64, 128, 256] and kwargs["output_stride"] == 8
    built = build_model("timm:resnet18d", 5, 3, (24, 40), width=0.5, dropout=0.2, drop_path=0.1)
    again = create_timm_model(TimmConfig(config.name, kwargs))
    assert {k: v.shape for k, v in built.state_dict().items()} == {
        k: v.shape for k, v in again.state_dict().items()
    }
    from timm.layers import DropPath

    rates = [m.drop_prob for m in again.modules() if isinstance(m, DropPath)]
    assert rates and max(rates) == pytest.approx(0.1)


def test_width_scales_the_model() -> None:
    def count(width: float) -> int:
        return sum(
            p.numel() for p in build_model("timm:resnet10t", 10, 3, 32, width=width).parameters()
        )

    assert count(0.25) < count(0.5) < count(1.0)


def test_unknown_architectures_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="timm:resnet18"):
        build_model("timm:vit_base_patch16_224", 10, 3, 32)
    with pytest.raises(ValueError, match="unknown timm architecture"):
        timm_config("resnet8", 10, 3, 32)
    with pytest.raises(ValidationError, match="timm:resnet18"):
        TrainerRecipe(arch="timm:efficientnet_b0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stochastic depth"):
        build_model("timm:resnet18", 10, 3, 32, drop_path=1.0)


def test_final_recipe_defaults_to_timm_and_keeps_a_timm_proxy() -> None:
    spec = SearchSpec.model_validate({"dataset": {"source": "digits"}})
    assert spec.recipe.arch == "airbench" and spec.final.arch == DEFAULT_FINAL_ARCH
    own = SearchSpec.model_validate(
        {"dataset": {"source": "digits"}, "recipe": {"arch": "timm:resnet10t"}}
    )
    assert own.final.arch == "timm:resnet10t"
    given = SearchSpec.model_validate(
        {"dataset": {"source": "digits"}, "final_recipe": {"arch": "resnet20"}}
    )
    assert given.final.arch == "resnet20"


def test_a_final_recipe_without_arch_gets_the_timm_default() -> None:
    spec = SearchSpec.model_validate(
        {"dataset": {"source": "digits"}, "final_recipe": {"epochs": 2}}
    )
    assert spec.final.arch == DEFAULT_FINAL_ARCH and spec.final.epochs == 2
    assert SearchSpec.model_validate_json(spec.model_dump_json()) == spec


def test_adaptive_clipping_leaves_the_timm_classifier_alone() -> None:
    from search.training.optim import agc_parameters

    model = build_model("timm:resnet10t", num_classes=5, in_channels=1, image_size=16, width=0.25)
    clipped = {id(p) for p in agc_parameters(model)}
    head = {id(p) for p in model.fc.parameters()}
    assert head and not head & clipped
    assert len(clipped) == len(list(model.parameters())) - len(head)
