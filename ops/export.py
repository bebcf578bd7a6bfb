"""Exporters: torchvision v2 objects, albumentations pipelines, timm strings, code snippets.

torchvision exports are exact: presets map to torchvision's own classes where they are the same
transform, everything else to :class:`ops.tv_transform.TorchvisionPolicy`. albumentations and
timm have their own op implementations, so those exports approximate; docs/ops.md lists how.
Batch mixing (``policy.mix``) is not part of a per-image transform and is never exported.
"""

from __future__ import annotations

import json
import math
import pprint
from typing import Any, Literal

from torchvision.transforms import v2

from ops.catalogue import OPS, STANDARD_OPS
from ops.policy import TIMM_DEFAULT_P, Policy
from ops.presets import AUTOAUGMENT_PRESETS, PRESETS
from ops.tv_transform import RandomShift, TorchvisionPolicy

Framework = Literal["torchvision", "albumentations", "timm"]


def _standard_ops(policy: Policy) -> bool:
    return policy.op_set == STANDARD_OPS


def _integral(value: float) -> int | None:
    rounded = round(value)
    return int(rounded) if math.isclose(value, rounded, abs_tol=1e-9) else None


def _torchvision_ops(policy: Policy) -> v2.Transform | None:
    if policy.kind == "none":
        return None
    if policy.kind == "subpolicies":
        for preset, tv_name in AUTOAUGMENT_PRESETS.items():
            if PRESETS[preset].sub_policies == policy.sub_policies:
                return v2.AutoAugment(v2.AutoAugmentPolicy[tv_name])
    elif policy.kind == "randaugment" and _standard_ops(policy) and not policy.wide:
        if policy.p == 1.0 and policy.m_std == 0.0:
            for bins in (11, 31):
                level = _integral(policy.m * (bins - 1))
                if level is not None:
                    return v2.RandAugment(policy.n, level, num_magnitude_bins=bins)
    elif (
        policy.kind == "trivialaugment" and _standard_ops(policy) and policy.wide and policy.p == 1
    ):
        return v2.TrivialAugmentWide()
    return TorchvisionPolicy(policy)


def to_torchvision(policy: Policy) -> v2.Compose:
    """Return the policy's per-image part (base + ops) as a torchvision v2 ``Compose``."""
    transforms: list[v2.Transform] = []
    if policy.base.crop_padding:
        transforms.append(RandomShift(policy.base.crop_padding))
    if policy.base.hflip:
        transforms.append(v2.RandomHorizontalFlip(0.5))
    if policy.base.vflip:
        transforms.append(v2.RandomVerticalFlip(0.5))
    ops = _torchvision_ops(policy)
    if ops is not None:
        transforms.append(ops)
    return v2.Compose(transforms or [v2.Identity()])


def to_timm(policy: Policy) -> str:
    """Write a randaugment policy as a timm string (``rand-m9-n2-mstd0.5``).

    Raises:
        ValueError: When the policy is not a standard-op, standard-range randaugment policy or
            its magnitude is not a whole timm level (tenths).
    """
    if policy.kind != "randaugment":
        raise ValueError(f"kind {policy.kind!r} has no timm config string; only randaugment")
    if not _standard_ops(policy) or policy.wide:
        raise ValueError("timm strings carry no op set or wide ranges; use the standard ops")
    level = _integral(policy.m * 10)
    if level is None:
        raise ValueError(f"m={policy.m} is not a whole timm level (a multiple of 0.1)")
    text = f"rand-m{level}-n{policy.n}"
    if policy.m_std:
        text += f"-mstd{policy.m_std * 10:.6g}"
    if policy.p != TIMM_DEFAULT_P:
        text += f"-p{policy.p:.6g}"
    return text


# --- albumentations ---------------------------------------------------------------------------

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


# --- snippets ---------------------------------------------------------------------------------


def _tv_code(transform: Any) -> str | None:
    if isinstance(transform, v2.RandAugment):
        return (f"v2.RandAugment(num_ops={transform.num_ops}, magnitude={transform.magnitude}, "
                f"num_magnitude_bins={transform.num_magnitude_bins})")  # fmt: skip
    if isinstance(transform, v2.Identity):
        return "v2.Identity()"
    if isinstance(transform, v2.TrivialAugmentWide):
        return "v2.TrivialAugmentWide()"
    if isinstance(transform, v2.AutoAugment):
        return f"v2.AutoAugment(v2.AutoAugmentPolicy.{transform.policy.name})"
    if isinstance(transform, v2.RandomHorizontalFlip | v2.RandomVerticalFlip):
        return f"v2.{type(transform).__name__}(p={transform.p})"
    return None


def to_python_snippet(policy: Policy, framework: Framework) -> str:
    """Return paste-able Python that builds ``transform`` for the given framework.

    torchvision code is pure torchvision when the policy maps onto torchvision classes, else it
    loads the policy JSON through augsearch; albumentations code needs albumentations only.
    """
    if framework == "torchvision":
        parts = [_tv_code(t) for t in to_torchvision(policy).transforms]
        if all(code is not None for code in parts):
            body = ",\n    ".join(str(code) for code in parts)
            return f"from torchvision.transforms import v2\n\ntransform = v2.Compose([\n    {body},\n])\n"
        text = json.dumps(policy.model_dump(mode="json"))
        return (
            "from ops.export import to_torchvision\nfrom ops.policy import load_policy\n\n"
            f"transform = to_torchvision(load_policy({text!r}))\n"
        )
    if framework == "albumentations":
        data = pprint.pformat(to_albumentations_dict(policy), width=100, sort_dicts=False)
        return f"import albumentations as A\n\ntransform = A.from_dict({data})\n"
    if framework == "timm":
        return (
            "from timm.data.auto_augment import rand_augment_transform\n\n"
            f"transform = rand_augment_transform({to_timm(policy)!r}, hparams={{}})\n"
        )
    raise ValueError(f"unknown framework {framework!r}; use torchvision, albumentations or timm")
