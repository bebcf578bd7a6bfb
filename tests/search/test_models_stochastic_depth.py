"""Stochastic depth (drop path) in the proxy models with residual blocks."""

from __future__ import annotations

import pytest
import torch

from search.models import DropPath, build_model, set_stochastic_depth


def test_drop_path_drops_whole_samples_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    path = DropPath(0.5).train()
    out = path(torch.ones(4000, 3, 2, 2))
    per_sample = out.flatten(1)
    # Each sample is either dropped entirely or scaled by 1 / keep.
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)


def test_drop_path_is_identity_in_eval_mode() -> None:
    x = torch.randn(8, 4, 3, 3)
    assert torch.equal(DropPath(0.9).eval()(x), x)


@pytest.mark.parametrize("arch", ["resnet8", "resnet20", "wrn-16-2"])
def test_rates_rise_linearly_to_the_given_rate(arch: str) -> None:
    model = build_model(arch, 10, 3, 16, drop_path=0.2)
    rates = [m.rate for m in model.modules() if isinstance(m, DropPath)]
    assert len(rates) >= 3
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.2) and rates[0] > 0
    # Evaluation is deterministic whatever the rate.
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(model(x), model(x))


def test_training_forward_is_stochastic_with_drop_path() -> None:
    torch.manual_seed(0)
    model = build_model("resnet20", 3, 1, 12, drop_path=0.5).train()
    x = torch.randn(4, 1, 12, 12)
    assert not torch.allclose(model(x), model(x))


def test_default_model_has_no_drop_path() -> None:
    model = build_model("resnet8", 10, 3, 16)
    assert all(m.rate == 0.0 for m in model.modules() if isinstance(m, DropPath))


def test_models_without_residual_blocks_refuse_a_rate() -> None:
    with pytest.raises(ValueError, match="no residual blocks"):
        build_model("airbench", 10, 3, 16, drop_path=0.1)
    build_model("airbench", 10, 3, 16, drop_path=0.0)


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_bad_rates(rate: float) -> None:
    with pytest.raises(ValueError, match="stochastic depth"):
        set_stochastic_depth(build_model("resnet8", 10, 3, 16), rate)
