"""The batched applier against the per-image path, the policy's statistics and the transform."""

from __future__ import annotations

import PIL.Image
import pytest
import torch

from ops.apply import BatchAugmenter, PolicyTransform
from ops.catalogue import OPS, STANDARD_OPS
from ops.policy import BaseAugment, OpStep, Policy
from ops.presets import PRESETS

BASE = BaseAugment(crop_padding=4, hflip=True, vflip=True)


def _batch(n: int = 64, shape: tuple[int, int, int] = (3, 32, 32)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8)


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 20, 28)])
def test_batched_equals_per_image_with_same_params(
    preset: str, shape: tuple[int, int, int]
) -> None:
    policy = PRESETS[preset].model_copy(update={"base": BASE})
    augmenter = BatchAugmenter(policy)
    images = _batch(48, shape)
    params = augmenter.sample_params(48, torch.Generator().manual_seed(3), shape[1:])
    batched = augmenter.apply_params(images, params)
    single = torch.cat(
        [augmenter.apply_params(images[i : i + 1], params.select(i)) for i in range(48)]
    )
    assert torch.equal(batched, single)
    assert not torch.equal(batched, images)


def test_every_op_batched_equals_per_image_in_float() -> None:
    policy = Policy(kind="randaugment", n=3, m=0.7, m_std=0.2, p=0.8, ops=list(OPS))
    augmenter = BatchAugmenter(policy)
    images = _batch(64).float() / 255
    params = augmenter.sample_params(64, torch.Generator().manual_seed(5), (32, 32))
    batched = augmenter.apply_params(images, params)
    single = torch.cat(
        [augmenter.apply_params(images[i : i + 1], params.select(i)) for i in range(64)]
    )
    assert batched.dtype == torch.float32
    assert torch.allclose(batched, single, atol=1e-6)


def test_seeded_generator_is_deterministic_and_input_untouched() -> None:
    augmenter = BatchAugmenter(PRESETS["trivialaugment-wide"])
    images = _batch()
    copy = images.clone()
    first = augmenter(images, torch.Generator().manual_seed(9))
    assert torch.equal(first, augmenter(images, torch.Generator().manual_seed(9)))
    assert not torch.equal(first, augmenter(images, torch.Generator().manual_seed(10)))
    assert torch.equal(images, copy)


def test_randaugment_frequencies_match_the_policy() -> None:
    policy = Policy(kind="randaugment", n=2, m=0.5, m_std=0.1, p=0.7)
    augmenter = BatchAugmenter(policy)
    n = 20_000
    params = augmenter.sample_params(n, torch.Generator().manual_seed(0), (32, 32))
    for slot in params.slots:
        counts = torch.bincount(slot.op_index, minlength=len(STANDARD_OPS)).float() / n
        assert torch.allclose(counts, torch.full_like(counts, 1 / 14), atol=0.006)
        assert abs(slot.apply.float().mean().item() - 0.7) < 0.015
        rotate = slot.arg[slot.op_index == STANDARD_OPS.index("Rotate")]
        assert abs((rotate < 0).float().mean().item() - 0.5) < 0.04  # random sign
        assert abs(rotate.abs().mean().item() - 15.0) < 0.3  # 30 * m
        assert abs(rotate.abs().std().item() - 3.0) < 0.3  # 30 * m_std
    # Two slots draw independently of each other.
    same = (params.slots[0].op_index == params.slots[1].op_index).float().mean().item()
    assert abs(same - 1 / 14) < 0.006


def test_subpolicy_frequencies_and_probabilities_match() -> None:
    subs = [
        [OpStep(op="Rotate", p=0.2, magnitude=0.5), OpStep(op="Invert", p=0.9)],
        [OpStep(op="Equalize", p=0.6)],
    ]
    augmenter = BatchAugmenter(Policy(kind="subpolicies", sub_policies=subs))
    n = 20_000
    params = augmenter.sample_params(n, torch.Generator().manual_seed(0), (32, 32))
    first, second = params.slots
    rotate = first.op_index == augmenter.ops.index("Rotate")
    assert abs(rotate.float().mean().item() - 0.5) < 0.015
    assert abs(first.apply[rotate].float().mean().item() - 0.2) < 0.015
    assert abs(first.apply[~rotate].float().mean().item() - 0.6) < 0.015
    assert abs(second.apply[rotate].float().mean().item() - 0.9) < 0.015
    assert not second.apply[~rotate].any()  # the one-step sub-policy has no second op
    assert torch.allclose(first.arg[rotate].abs(), torch.tensor(15.0))


def test_trivialaugment_magnitudes_are_uniform_bins() -> None:
    augmenter = BatchAugmenter(PRESETS["trivialaugment-wide"])
    params = augmenter.sample_params(30_000, torch.Generator().manual_seed(0), (32, 32))
    slot = params.slots[0]
    rotate = slot.arg[slot.op_index == STANDARD_OPS.index("Rotate")].abs()
    bins = torch.bincount((rotate / 4.5).round().long(), minlength=31).float()
    assert bins.shape == (31,) and (bins / bins.sum() - 1 / 31).abs().max() < 0.012


def test_base_augment_shifts_and_flips_per_sample() -> None:
    policy = Policy(kind="none", base=BaseAugment(crop_padding=2, hflip=True))
    augmenter = BatchAugmenter(policy)
    images = _batch(200)
    params = augmenter.sample_params(200, torch.Generator().manual_seed(2), (32, 32))
    out = augmenter.apply_params(images, params)
    assert set(params.shift.flatten().tolist()) == {-2, -1, 0, 1, 2}
    assert 0.4 < params.flip[:, 0].float().mean() < 0.6 and not params.flip[:, 1].any()
    for i in range(10):
        dy, dx = params.shift[i].tolist()
        ref = torch.zeros_like(images[i])
        src = images[i][:, max(dy, 0) : 32 + min(dy, 0), max(dx, 0) : 32 + min(dx, 0)]
        ref[:, max(-dy, 0) : 32 + min(-dy, 0), max(-dx, 0) : 32 + min(-dx, 0)] = src
        assert torch.equal(out[i], ref.flip(-1) if params.flip[i, 0] else ref)


def test_policy_transform_keeps_the_type() -> None:
    transform = PolicyTransform(PRESETS["autoaugment-imagenet"], seed=0)
    tensor = _batch(1)[0]
    out = transform(tensor)
    assert out.shape == tensor.shape and out.dtype == torch.uint8
    image = PIL.Image.fromarray(tensor.permute(1, 2, 0).numpy())
    assert isinstance(transform(image), PIL.Image.Image) and transform(image).size == (32, 32)
    gray = PIL.Image.fromarray(tensor[0].numpy(), mode="L")
    assert transform(gray).mode == "L"
    with pytest.raises(ValueError, match="uint8"):
        transform(tensor.float())
    with pytest.raises(TypeError, match="PIL image"):
        transform([1, 2])  # type: ignore[call-overload]


def test_policy_transform_is_reproducible_with_a_seed() -> None:
    images = _batch(8)
    run = [PolicyTransform(PRESETS["randaugment-2-9"], seed=4) for _ in range(2)]
    assert all(torch.equal(run[0](img), run[1](img)) for img in images)


def test_bad_batches_raise() -> None:
    augmenter = BatchAugmenter(PRESETS["randaugment-2-9"])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        augmenter(torch.zeros(3, 8, 8, dtype=torch.uint8), torch.Generator())
    params = augmenter.sample_params(4, torch.Generator(), (8, 8))
    with pytest.raises(ValueError, match="4 samples"):
        augmenter.apply_params(torch.zeros(5, 3, 8, 8, dtype=torch.uint8), params)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batch_with_cuda_generator() -> None:
    augmenter = BatchAugmenter(PRESETS["randaugment-2-9"].model_copy(update={"base": BASE}))
    images = _batch().cuda()
    params = augmenter.sample_params(64, torch.Generator("cuda").manual_seed(0), (32, 32))
    out = augmenter.apply_params(images, params)
    assert out.device.type == "cuda"
    cpu = augmenter.apply_params(images.cpu(), params.select(slice(None)))
    assert ((out.cpu().int() - cpu.int()).abs() > 1).float().mean() < 0.02


def test_sampled_arguments_follow_each_ops_magnitude_mapping() -> None:
    policy = Policy(kind="randaugment", n=2, m=0.6, m_std=0.3, ops=list(OPS))
    augmenter = BatchAugmenter(policy)
    params = augmenter.sample_params(2000, torch.Generator().manual_seed(6), (24, 40))
    # Replay the generator to recover each slot's magnitudes and signs.
    gen = torch.Generator().manual_seed(6)
    torch.randint(-0, 1, (2000, 2), generator=gen)
    torch.rand(2000, 2, generator=gen)
    for slot in params.slots:
        torch.randint(len(OPS), (2000,), generator=gen)
        torch.rand(2000, generator=gen)
        magnitude = (0.6 + torch.randn(2000, generator=gen) * 0.3).clamp_(0.0, 1.0)
        negative = torch.rand(2000, generator=gen) < 0.5
        torch.rand(2000, 2, generator=gen)
        for k, op in enumerate(OPS[name] for name in augmenter.ops):
            rows = slot.op_index == k
            if not op.has_magnitude:
                assert not slot.arg[rows].any()
                continue
            size = {"TranslateY": 24, "Cutout": 24}.get(op.name, 40)
            expected = op.magnitude_to_arg(magnitude[rows], size=size)
            if op.signed:
                expected = torch.where(negative[rows], -expected, expected)
            assert torch.equal(slot.arg[rows], expected), op.name


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_blocks_and_memory_layout_do_not_change_the_result(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = Policy(kind="randaugment", n=3, m=0.8, p=0.9, ops=list(OPS), base=BASE)
    augmenter = BatchAugmenter(policy)
    images = _batch(40)
    images = images if dtype == torch.uint8 else images.float() / 255
    params = augmenter.sample_params(40, torch.Generator().manual_seed(8), (32, 32))
    whole = augmenter.apply_params(images, params)
    channels_last = images.contiguous(memory_format=torch.channels_last)
    assert torch.equal(augmenter.apply_params(channels_last, params), whole)
    # Blocks of 3 rows (applier) and 2 rows (warp): the last blocks are partial.
    monkeypatch.setattr("ops.apply.SLOT_BLOCK_PIXELS", 3 * 32 * 32)
    monkeypatch.setattr("ops.functional.WARP_BLOCK_PIXELS", 2 * 32 * 32)
    assert torch.equal(augmenter.apply_params(images, params), whole)
