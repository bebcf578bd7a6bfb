"""Human-readable descriptions of policies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ops.catalogue import OPS

if TYPE_CHECKING:
    from ops.policy import OpStep, Policy


def _step(step: OpStep) -> str:
    op = OPS[step.op]
    if not op.has_magnitude:
        return f"{step.op} (p={step.p:g})"
    return f"{step.op} (p={step.p:g}, magnitude={step.magnitude:.3g})"


def describe_policy(policy: Policy) -> list[str]:
    """Return one line per sub-policy or setting, in words."""
    lines: list[str] = []
    if policy.kind == "none":
        lines.append("No policy ops.")
    elif policy.kind == "subpolicies":
        count = len(policy.sub_policies)
        lines.append(f"One of {count} sub-policies drawn uniformly per image:")
        for index, sub in enumerate(policy.sub_policies, start=1):
            lines.append(f"  {index}. " + ", then ".join(_step(step) for step in sub))
    else:
        ops = ", ".join(policy.op_set)
        ranges = "wide" if policy.wide else "standard"
        if policy.kind == "randaugment":
            noise = f" +- N(0, {policy.m_std:g})" if policy.m_std else ""
            lines.append(
                f"RandAugment: {policy.n} ops per image drawn uniformly, each applied with "
                f"probability {policy.p:g} at magnitude {policy.m:g}{noise} ({ranges} ranges)."
            )
        else:
            lines.append(
                f"TrivialAugment: one op per image at a uniform magnitude ({ranges} ranges)."
            )
        lines.append(f"  Ops: {ops}.")
    base = policy.base
    if base.crop_padding or base.hflip or base.vflip:
        parts = (
            [f"random crop with {base.crop_padding} px zero padding"] if base.crop_padding else []
        )
        parts += [
            name
            for name, on in (("horizontal flip", base.hflip), ("vertical flip", base.vflip))
            if on
        ]
        lines.append("Base: " + ", ".join(parts) + ".")
    mix = policy.mix
    if mix.active:
        lines.append(
            f"Mix: MixUp alpha {mix.mixup_alpha:g}, CutMix alpha {mix.cutmix_alpha:g} "
            f"(p={mix.cutmix_prob:g}), Cutout {mix.cutout:g}, label smoothing {mix.label_smoothing:g}."
        )
    return lines
