"""albumentations exports: a pipeline of plain albumentations classes (no augsearch needed).

albumentations has its own op implementations, so these exports approximate; docs/ops.md lists
how each op maps.
"""

from __future__ import annotations

import math
from typing import Any

from ops.catalogue import OPS
from ops.policy import Policy

# cv2.INTER_NEAREST and cv2.BORDER_CONSTANT, named here so cv2 is not imported for two integers.
_NEAREST, _CONSTANT = 0, 0


def _affine(A: Any, p: float, **kw: Any) -> Any:
    return A.Affine(interpolation=_NEAREST, border_mode=_CONSTANT, fill=0, p=p, **kw)


def _geometric(A: Any, name: str, v: float, p: float) -> Any:
    if name == "Rotate":
        return _affine(A, p, rotate=(v, v))
    if name in ("ShearX", "ShearY"):
        deg = math.degrees(math.atan(v))
        shear = {"x": (deg, deg), "y": (0.0, 0.0)} if name == "ShearX" else {
            "x": (0.0, 0.0), "y": (deg, deg)}  # fmt: skip
        return _affine(A, p, shear=shear)
    axis = "x" if name == "TranslateX" else "y"
    other = "y" if axis == "x" else "x"
    return _affine(A, p, translate_px={axis: (int(v), int(v)), other: (0, 0)})


def _relative_translate(A: Any, name: str, fraction: float, p: float) -> Any:
    axis = "x" if name == "TranslateX" else "y"
    other = "y" if axis == "x" else "x"
    return _affine(A, p, translate_percent={axis: (fraction, fraction), other: (0.0, 0.0)})


def _colour(A: Any, name: str, v: float, p: float) -> Any:
    f = 1.0 + v
    if name in ("Brightness", "Contrast", "Color"):
        key = {"Brightness": "brightness", "Contrast": "contrast", "Color": "saturation"}[name]
        kw = {"brightness": (1.0, 1.0), "contrast": (1.0, 1.0), "saturation": (1.0, 1.0)}
        return A.ColorJitter(**{**kw, key: (f, f)}, hue=(0.0, 0.0), p=p)
    if name == "Sharpness":
        if v >= 0:
            return A.Sharpen(alpha=(min(v, 1.0), min(v, 1.0)), lightness=(1.0, 1.0), p=p)
        return A.Blur(blur_limit=(3, 3), p=p * min(-v, 1.0))
    if name == "Posterize":
        # albumentations refuses 8 bits, which keeps every bit anyway.
        return A.NoOp(p=p) if int(v) >= 8 else A.Posterize(num_bits=int(v), p=p)
    if name == "Solarize":
        return A.Solarize(threshold_range=(v, v), p=p)
    raise ValueError(f"op {name!r} has no albumentations equivalent")


def _album_op(A: Any, name: str, magnitude: float, p: float, wide: bool) -> Any:
    """One op at a fixed magnitude; signed ops become a OneOf over both signs."""
    op = OPS[name]
    fixed = {
        "Identity": lambda: A.NoOp(p=p),
        "AutoContrast": lambda: A.AutoContrast(method="pil", p=p),
        "Equalize": lambda: A.Equalize(mode="pil", by_channels=True, p=p),
        "Invert": lambda: A.InvertImg(p=p),
        "FlipLR": lambda: A.HorizontalFlip(p=p),
        "FlipUD": lambda: A.VerticalFlip(p=p),
    }
    if name in fixed:
        return fixed[name]()
    if name == "Cutout":
        side = max(op.magnitude_to_arg(magnitude, wide, size=1), 1e-3)
        return A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(side, side),
                               hole_width_range=(side, side), fill=0, p=p)  # fmt: skip
    low, high, relative = op.range(wide)
    if relative:  # translate as a fraction of the size: albumentations knows the size, we don't
        fraction = low + magnitude * (high - low)
        make = lambda s: _relative_translate(A, name, s * fraction, 1.0)  # noqa: E731
    else:
        value = op.magnitude_to_arg(magnitude, wide, size=1)
        maker = _geometric if op.kind == "geometric" else _colour
        make = lambda s: maker(A, name, s * value, 1.0)  # noqa: E731
    if not op.signed:
        transform = make(1.0)
        transform.p = p
        return transform
    return A.OneOf([make(1.0), make(-1.0)], p=p)


def _album_ops(A: Any, policy: Policy) -> list[Any]:
    if policy.kind == "subpolicies":
        subs = [
            A.Sequential([_album_op(A, s.op, s.magnitude, s.p, policy.wide) for s in sub], p=1.0)
            for sub in policy.sub_policies
        ]
        return [A.OneOf(subs, p=1.0)]
    if policy.kind == "randaugment":
        if policy.m_std:
            raise ValueError("albumentations cannot draw a noisy magnitude (m_std > 0)")
        ops = [_album_op(A, name, policy.m, policy.p, policy.wide) for name in policy.op_set]
        return [A.SomeOf(ops, n=policy.n, replace=True, p=1.0)]
    if policy.kind == "trivialaugment":
        # Exact: every op is a OneOf over TrivialAugment's 31 equally likely magnitude bins.
        ops = [
            A.OneOf([_album_op(A, name, b / 30, 1.0, policy.wide) for b in range(31)], p=1.0)
            if OPS[name].has_magnitude else _album_op(A, name, 0.0, 1.0, policy.wide)
            for name in policy.op_set
        ]  # fmt: skip
        return [A.OneOf(ops, p=policy.p)]
    return []


def to_albumentations(policy: Policy) -> Any:
    """Return the policy's per-image part as an ``albumentations.Compose`` of plain classes."""
    policy.require_image("the albumentations export")
    import albumentations as A

    transforms: list[Any] = []
    pad = policy.base.crop_padding
    if pad:
        transforms.append(_affine(A, 1.0, translate_px={"x": (-pad, pad), "y": (-pad, pad)}))
    if policy.base.hflip:
        transforms.append(A.HorizontalFlip(p=0.5))
    if policy.base.vflip:
        transforms.append(A.VerticalFlip(p=0.5))
    transforms += _album_ops(A, policy)
    return A.Compose(transforms)


def to_albumentations_dict(policy: Policy) -> dict[str, Any]:
    """Return :func:`to_albumentations` serialised by ``A.to_dict`` (JSON-ready)."""
    import albumentations as A

    return dict(A.to_dict(to_albumentations(policy)))
