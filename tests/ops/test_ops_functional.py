"""Every op through the same checks: shape/dtype/device, identity at 0, determinism, torchvision."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as tvf

from ops.catalogue import OPS, OpDef
from ops.functional import warp_affine

#: Geometric ops may differ from torchvision on this fraction of pixels (float rounding ties).
GEOMETRIC_TOLERANCE = 0.02

Ref = Callable[[Tensor, float], Tensor]
_AFFINE = {"angle": 0.0, "translate": [0, 0], "scale": 1.0, "shear": [0.0, 0.0]}
REFERENCE: dict[str, Ref] = {
    "Identity": lambda x, a: x,
    "ShearX": lambda x, a: tvf.affine(
        x, **{**_AFFINE, "shear": [math.degrees(math.atan(a)), 0.0]}, center=[0, 0]
    ),
    "ShearY": lambda x, a: tvf.affine(
        x, **{**_AFFINE, "shear": [0.0, math.degrees(math.atan(a))]}, center=[0, 0]
    ),
    "TranslateX": lambda x, a: tvf.affine(x, **{**_AFFINE, "translate": [int(a), 0]}),
    "TranslateY": lambda x, a: tvf.affine(x, **{**_AFFINE, "translate": [0, int(a)]}),
    "Rotate": lambda x, a: tvf.rotate(x, a),
    "Brightness": lambda x, a: tvf.adjust_brightness(x, 1 + a),
    "Color": lambda x, a: tvf.adjust_saturation(x, 1 + a),
    "Contrast": lambda x, a: tvf.adjust_contrast(x, 1 + a),
    "Sharpness": lambda x, a: tvf.adjust_sharpness(x, 1 + a),
    "Posterize": lambda x, a: tvf.posterize(x, int(a)),
    "Solarize": lambda x, a: tvf.solarize(x, (1.0 if x.is_floating_point() else 255.0) * a),
    "AutoContrast": lambda x, a: tvf.autocontrast(x),
    "Equalize": lambda x, a: tvf.equalize(x),
    "Invert": lambda x, a: tvf.invert(x),
    "FlipLR": lambda x, a: tvf.horizontal_flip(x),
    "FlipUD": lambda x, a: tvf.vertical_flip(x),
}
SHAPES = [(3, 32, 32), (1, 28, 28), (3, 24, 40)]


def _images(shape: tuple[int, int, int], n: int = 4, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8)
    images[1] = images[1] // 3 + 60  # a low-contrast image exercises AutoContrast/Equalize
    return images


def _run(op: OpDef, images: Tensor, arg: Tensor, seed: int = 0) -> Tensor:
    gen = torch.Generator(device=images.device).manual_seed(seed)
    extra = {}
    if op.needs_centre:
        extra["centre"] = torch.rand(images.shape[0], 2, generator=gen, device=images.device)
    return op.fn(images, arg, **extra)


def _arg(op: OpDef, m: float, shape: tuple[int, ...], wide: bool = False) -> float:
    size = {"TranslateY": shape[-2], "Cutout": min(shape[-2:])}.get(op.name, shape[-1])
    return op.magnitude_to_arg(m, wide=wide, size=size)


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_op_keeps_shape_dtype_device_and_is_deterministic(name: str, dtype: torch.dtype) -> None:
    op = OPS[name]
    for shape in SHAPES:
        images = _images(shape)
        images = images if dtype == torch.uint8 else images.float() / 255
        arg = torch.tensor([_arg(op, m, shape) for m in (0.0, 0.3, 0.7, 1.0)])
        if op.signed:
            arg = arg * torch.tensor([1.0, -1.0, 1.0, -1.0])
        first = _run(op, images, arg)
        assert first.shape == images.shape and first.dtype == dtype
        assert first.device == images.device
        assert torch.equal(first, _run(op, images, arg))
        if op.needs_centre:  # a different draw moves the cut-out square
            assert not torch.equal(first, _run(op, images, arg, seed=1))


@pytest.mark.parametrize("name", [n for n, op in OPS.items() if op.identity_at_zero])
def test_magnitude_zero_is_identity(name: str) -> None:
    op = OPS[name]
    images = _images((3, 32, 32))
    for wide in (False, True):
        arg = torch.full((4,), _arg(op, 0.0, images.shape, wide))
        assert torch.equal(_run(op, images, arg), images)
        if name != "Posterize":  # float posterize quantises to 256 levels, like torchvision
            assert torch.equal(_run(op, images.float() / 255, arg), images.float() / 255)


@pytest.mark.parametrize("name", list(REFERENCE))
def test_op_matches_torchvision(name: str) -> None:
    op = OPS[name]
    for shape in SHAPES:
        images = _images(shape)
        for m in (0.1, 0.5, 0.9, 1.0):
            for wide in (False, True):
                for sign in (1.0, -1.0) if op.signed else (1.0,):
                    a = sign * _arg(op, m, shape, wide)
                    ours = _run(op, images, torch.full((4,), a))
                    ref = torch.stack([REFERENCE[name](img, a) for img in images])
                    diff = (ours.int() - ref.int()).abs()
                    if op.kind == "geometric":
                        frac = (diff > 0).float().mean().item()
                        assert frac <= GEOMETRIC_TOLERANCE, (name, m, wide, sign, frac)
                    else:
                        assert int(diff.max()) <= 1, (name, m, wide, sign)


@pytest.mark.parametrize("name", ["Brightness", "Contrast", "Solarize", "Posterize", "Rotate"])
def test_float_ops_match_torchvision(name: str) -> None:
    op = OPS[name]
    images = _images((3, 32, 32)).float() / 255
    a = _arg(op, 0.6, images.shape)
    ours = _run(op, images, torch.full((4,), a))
    ref = torch.stack([REFERENCE[name](img, a) for img in images])
    close = (ours - ref).abs() <= 1e-5
    assert close.float().mean() >= 1 - GEOMETRIC_TOLERANCE


def test_cutout_matches_torchvision_erase() -> None:
    images = _images((3, 32, 32))
    centre = torch.tensor([[0.5, 0.5], [0.0, 0.0], [0.99, 0.2], [0.3, 0.7]])
    out = OPS["Cutout"].fn(images, torch.full((4,), 10.0), centre=centre)
    for img, res, (cy, cx) in zip(images, out, (centre * 32).long().tolist(), strict=True):
        top, left = max(cy - 5, 0), max(cx - 5, 0)
        h, w = min(cy + 5, 32) - top, min(cx + 5, 32) - left
        assert torch.equal(res, tvf.erase(img, top, left, h, w, torch.tensor(0)))


def test_solarize_add_matches_its_formula() -> None:
    images = _images((3, 8, 8))
    out = OPS["SolarizeAdd"].fn(images, torch.full((4,), 110.0))
    expected = torch.where(images < 128, (images.int() + 110).clamp(max=255), images.int())
    assert torch.equal(out.int(), expected)


def test_color_is_identity_on_grayscale() -> None:
    images = _images((1, 16, 16))
    assert torch.equal(OPS["Color"].fn(images, torch.full((4,), 0.9)), images)


def test_per_sample_arguments_are_independent() -> None:
    images = _images((3, 32, 32))
    arg = torch.tensor([0.0, 10.0, -10.0, 30.0])
    batched = OPS["Rotate"].fn(images, arg)
    for i in range(4):
        assert torch.equal(batched[i : i + 1], OPS["Rotate"].fn(images[i : i + 1], arg[i : i + 1]))


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="arg must have shape"):
        OPS["Rotate"].fn(_images((3, 8, 8)), torch.zeros(3))
    with pytest.raises(TypeError, match="uint8 or floating"):
        warp_affine(torch.zeros(1, 3, 4, 4, dtype=torch.int32), torch.eye(2, 3)[None])
    with pytest.raises(ValueError, match="magnitude"):
        OPS["Rotate"].magnitude_to_arg(1.5)
    with pytest.raises(ValueError, match="relative"):
        OPS["TranslateX"].magnitude_to_arg(0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(OPS))
def test_op_on_cuda_equals_cpu(name: str) -> None:
    op = OPS[name]
    images = _images((3, 32, 32))
    arg = torch.full((4,), _arg(op, 0.7, images.shape))
    extra = {"centre": torch.rand(4, 2)} if op.needs_centre else {}
    cpu = op.fn(images, arg, **extra)
    cuda = op.fn(images.cuda(), arg.cuda(), **{k: v.cuda() for k, v in extra.items()})
    assert cuda.device.type == "cuda"
    assert (cuda.cpu().int() - cpu.int()).abs().max() <= 1
