"""torchvision exports as objects (exact); :mod:`ops.tv_code` writes them as code.

:func:`to_torchvision` returns torchvision's own classes where a policy is the same transform,
otherwise :class:`ops.tv_transform.TorchvisionPolicy`, which draws exactly as the batched
applier.
"""

from __future__ import annotations

import math

from torchvision.transforms import v2

from ops.catalogue import STANDARD_OPS
from ops.policy import Policy
from ops.presets import AUTOAUGMENT_PRESETS, PRESETS
from ops.tv_transform import RandomShift, TorchvisionPolicy


def _integral(value: float) -> int | None:
    rounded = round(value)
    return int(rounded) if math.isclose(value, rounded, abs_tol=1e-9) else None


def torchvision_class(policy: Policy) -> v2.Transform | None:
    """torchvision's own transform where it is exactly the policy's ops, else None."""
    standard = policy.op_set == STANDARD_OPS
    if policy.kind == "subpolicies":
        for preset, tv_name in AUTOAUGMENT_PRESETS.items():
            if PRESETS[preset].sub_policies == policy.sub_policies:
                return v2.AutoAugment(v2.AutoAugmentPolicy[tv_name])
    elif policy.kind == "randaugment" and standard and not policy.wide:
        if policy.p == 1.0 and policy.m_std == 0.0:
            for bins in (11, 31):
                level = _integral(policy.m * (bins - 1))
                if level is not None:
                    return v2.RandAugment(policy.n, level, num_magnitude_bins=bins)
    elif policy.kind == "trivialaugment" and standard and policy.wide and policy.p == 1:
        return v2.TrivialAugmentWide()
    return None


def to_torchvision(policy: Policy) -> v2.Compose:
    """Return the policy's per-image part (base + ops) as a torchvision v2 ``Compose``."""
    policy.require_image("the torchvision export")
    transforms: list[v2.Transform] = []
    if policy.base.crop_padding:
        transforms.append(RandomShift(policy.base.crop_padding))
    if policy.base.hflip:
        transforms.append(v2.RandomHorizontalFlip(0.5))
    if policy.base.vflip:
        transforms.append(v2.RandomVerticalFlip(0.5))
    if policy.kind != "none":
        builtin = torchvision_class(policy)
        transforms.append(builtin if builtin is not None else TorchvisionPolicy(policy))
    return v2.Compose(transforms or [v2.Identity()])
