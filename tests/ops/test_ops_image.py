"""The per-image applier against the batched one: same pixels, same draws' statistics."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as tvf

from ops.apply import AugmentParams, BatchAugmenter, PolicyTransform
from ops.catalogue import OPS
from ops.groups import SlotParams
from ops.image import ImageAugmenter, ImageParams
from ops.policy import BaseAugment, OpStep, Policy
from ops.presets import PRESETS

BASE = BaseAugment(crop_padding=4, hflip=True, vflip=True)
EVERY_OP = Policy(kind="randaugment", n=3, m=0.7, m_std=0.3, p=0.8, ops=list(OPS), base=BASE)
SUBPOLICIES = Policy(
    kind="subpolicies",
    sub_policies=[
        [OpStep(op="Rotate", p=0.3, magnitude=0.5), OpStep(op="Cutout", p=0.9, magnitude=0.4)],
        [OpStep(op="Equalize", p=0.6)],
        [OpStep(op="TranslateX", p=0.8, magnitude=0.7), OpStep(op="Solarize", p=0.5)],
    ],
)
POLICIES = {
    **{name: PRESETS[name].model_copy(update={"base": BASE}) for name in PRESETS},
    "every-op": EVERY_OP,
    "subpolicies": SUBPOLICIES,
}


def _images(n: int, shape: tuple[int, int, int]) -> Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8)


def _as_batch(params: ImageParams, ops: tuple[str, ...]) -> AugmentParams:
    """The same parameters as the batched applier's parameters of a batch of one."""
    slots = tuple(
        SlotParams(
            torch.tensor([s.op]),
            torch.tensor([s.apply]),
            torch.tensor([s.arg]),
            torch.tensor([s.centre]),
        )
        for s in params.steps
    )
    return AugmentParams(ops, torch.tensor([params.shift]), torch.tensor([params.flip]), slots)


@pytest.mark.parametrize("name", list(POLICIES))
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 20, 28)])
def test_same_params_give_the_batched_pixels(name: str, shape: tuple[int, int, int]) -> None:
    image_augmenter = ImageAugmenter(POLICIES[name])
    batch_augmenter = BatchAugmenter(POLICIES[name])
    gen = torch.Generator().manual_seed(2)
    changed = 0
    for image in _images(24, shape):
        for dtype_image in (image, image.float() / 255):
            params = image_augmenter.sample_params(gen, shape[1:])
            single = image_augmenter.apply_params(dtype_image, params)
            batched = batch_augmenter.apply_params(
                dtype_image[None], _as_batch(params, batch_augmenter.ops)
            )
            assert single.dtype == dtype_image.dtype and single.shape == dtype_image.shape
            assert torch.equal(single, batched[0]), params
            changed += not torch.equal(single, dtype_image)
    assert changed > 24


def _batched_draws(policy: Policy, n: int) -> list[tuple[Tensor, Tensor, Tensor]]:
    params = BatchAugmenter(policy).sample_params(n, torch.Generator().manual_seed(0), (24, 40))
    return [(s.op_index, s.apply, s.arg) for s in params.slots]


def _image_draws(policy: Policy, n: int) -> list[tuple[Tensor, Tensor, Tensor]]:
    augmenter, gen = ImageAugmenter(policy), torch.Generator().manual_seed(0)
    steps = [augmenter.sample_params(gen, (24, 40)).steps for _ in range(n)]
    return [
        (
            torch.tensor([s[j].op for s in steps]),
            torch.tensor([s[j].apply for s in steps]),
            torch.tensor([s[j].arg for s in steps]),
        )
        for j in range(augmenter.num_slots)
    ]


def _rate_gap(a: Tensor, b: Tensor) -> tuple[float, float]:
    """|mean(a) - mean(b)| of two 0/1 samples and five standard errors of that difference."""
    pa, pb = a.float().mean().item(), b.float().mean().item()
    pooled = (a.float().sum() + b.float().sum()).item() / (len(a) + len(b))
    error = (pooled * (1 - pooled) * (1 / len(a) + 1 / len(b))) ** 0.5
    return abs(pa - pb), 5 * error + 1e-9


def _ks_distance(a: Tensor, b: Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    values = torch.cat([a, b]).unique()
    cdf_a = torch.searchsorted(a.sort().values, values, right=True) / len(a)
    cdf_b = torch.searchsorted(b.sort().values, values, right=True) / len(b)
    return (cdf_a - cdf_b).abs().max().item()


@pytest.mark.parametrize(
    "policy",
    [EVERY_OP, SUBPOLICIES, PRESETS["trivialaugment-wide"], PRESETS["randaugment-2-9"]],
    ids=["every-op", "subpolicies", "trivialaugment-wide", "randaugment-2-9"],
)
def test_ops_rates_and_magnitudes_agree_with_the_batched_draws(policy: Policy) -> None:
    n = 10_000
    image_draws, batched_draws = _image_draws(policy, n), _batched_draws(policy, n)
    assert len(image_draws) == len(batched_draws) > 0
    checked = 0
    pooled: tuple[list[Tensor], list[Tensor]] = ([], [])  # |arg| / the op's largest, all ops
    for (ops_a, apply_a, arg_a), (ops_b, apply_b, arg_b) in zip(
        image_draws, batched_draws, strict=True
    ):
        for k, name in enumerate(policy.op_set):
            rows_a, rows_b = ops_a == k, ops_b == k
            gap, tolerance = _rate_gap(rows_a, rows_b)
            assert gap < tolerance, f"{name} drawn at another rate"
            if rows_b.sum() < 100:
                continue
            gap, tolerance = _rate_gap(apply_a[rows_a], apply_b[rows_b])
            assert gap < tolerance, f"{name} applied at another rate"
            # Signed arguments: the magnitudes and the random sign together (alpha 0.001).
            a, b = arg_a[rows_a], arg_b[rows_b]
            critical = 1.95 * ((len(a) + len(b)) / (len(a) * len(b))) ** 0.5
            assert _ks_distance(a, b) < critical, f"{name} arguments differ"
            if not policy.m_std:  # fixed magnitudes (presets, bins): the very same values
                assert set(a.unique().tolist()) == set(b.unique().tolist()), name
            if b.abs().max() > 0:
                pooled[0].append(a.abs() / b.abs().max())
                pooled[1].append(b.abs() / b.abs().max())
            checked += 1
    assert checked >= len(image_draws)
    # Pooled over ops and slots, the magnitudes are checked with many more samples.
    a, b = torch.cat(pooled[0]), torch.cat(pooled[1])
    assert _ks_distance(a, b) < 1.95 * ((len(a) + len(b)) / (len(a) * len(b))) ** 0.5


def test_policy_transform_runs_the_per_image_applier_seeded_per_worker() -> None:
    policy = PRESETS["randaugment-2-9"]
    transform = PolicyTransform(policy, seed=5)
    images = _images(6, (3, 32, 32))
    reference = ImageAugmenter(policy)
    gen = torch.Generator().manual_seed(5 * 1_000_003)  # the main process: worker id -1
    for image in images:
        assert torch.equal(transform(image), reference(image, gen))


def test_a_small_warp_cache_gives_the_same_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    images = _images(16, (3, 32, 32))
    policy = PRESETS["trivialaugment-wide"].model_copy(update={"base": BASE})
    whole = [
        ImageAugmenter(policy)(x, torch.Generator().manual_seed(i)) for i, x in enumerate(images)
    ]
    monkeypatch.setattr("ops.image.WARP_CACHE_BYTES", 3 * 32 * 32 * 8)  # three 32x32 entries
    small = ImageAugmenter(policy)
    for i, image in enumerate(images):
        assert torch.equal(small(image, torch.Generator().manual_seed(i)), whole[i])
    assert 0 < small.warp_cache_bytes <= 3 * 32 * 32 * 8


def test_output_is_never_the_input_and_bad_inputs_raise() -> None:
    augmenter = ImageAugmenter(Policy(kind="randaugment", n=1, m=0.5, p=0.0))
    image = _images(1, (3, 8, 8))[0]
    out = augmenter(image, torch.Generator().manual_seed(0))
    assert torch.equal(out, image) and out.data_ptr() != image.data_ptr()
    pil = tvf.to_pil_image(image)
    assert augmenter(pil, torch.Generator()) is not pil
    with pytest.raises(ValueError, match="mode L or RGB"):
        augmenter(pil.convert("RGBA"), torch.Generator())
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        augmenter(image[None], torch.Generator())
    with pytest.raises(TypeError, match="uint8 or floating"):
        augmenter(image.int(), torch.Generator())
    params = ImageAugmenter(PRESETS["randaugment-2-9"]).sample_params(torch.Generator(), (8, 8))
    with pytest.raises(ValueError, match="2 slots, the policy 1"):
        augmenter.apply_params(image, params)


#: PIL's ImageEnhance/ImageOps kernels, which the tensor kernels reproduce to one level.
PIL_KERNELS = {"Color", "Contrast", "Sharpness", "AutoContrast"}


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 20, 28), (3, 24, 40)])
def test_pil_images_get_the_tensor_pixels(shape: tuple[int, int, int]) -> None:
    augmenter = ImageAugmenter(EVERY_OP.model_copy(update={"n": 1}))
    gen = torch.Generator().manual_seed(4)
    seen = set()
    for i, image in enumerate(_images(150, shape)):
        image = image // 3 + 60 if i % 3 == 0 else image  # low contrast for AutoContrast
        params = augmenter.sample_params(gen, shape[1:])
        pil = augmenter.apply_params(tvf.to_pil_image(image), params)
        assert pil.mode == ("L" if shape[0] == 1 else "RGB") and pil.size == shape[:0:-1]
        out, expected = tvf.pil_to_tensor(pil), augmenter.apply_params(image, params)
        step = params.steps[0]
        name = augmenter.ops[step.op] if step.apply else "Identity"
        seen.add(name)
        differ = (out.int() - expected.int()).abs()
        if name in PIL_KERNELS:
            assert differ.max() <= 1, name
        elif OPS[name].matrix is not None:  # rounding ties of the nearest source pixel
            assert (differ > 0).float().mean() <= 0.02, name
        else:
            assert torch.equal(out, expected), name
    assert seen == set(OPS)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_images_get_the_cpu_pixels() -> None:
    augmenter = ImageAugmenter(EVERY_OP)
    gen = torch.Generator().manual_seed(6)
    for image in _images(32, (3, 32, 32)):
        params = augmenter.sample_params(gen, (32, 32))
        out = augmenter.apply_params(image.cuda(), params)
        assert out.device.type == "cuda"
        differ = (out.cpu().int() - augmenter.apply_params(image, params).int()).abs()
        assert (differ > 1).float().mean() < 0.02  # float rounding of CUDA kernels
