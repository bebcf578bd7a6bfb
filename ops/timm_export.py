"""timm exports: the RandAugment config string, and code over timm's own AutoAugment ops.

:func:`to_timm` writes timm's short config string (randaugment only), which carries n, m, mstd
and p; timm then applies its own op list and ranges. :func:`timm_code` writes Python over
``timm.data.auto_augment``'s ``AugmentOp``, ``AutoAugment`` and ``RandAugment`` with the
policy's own ops, probabilities and magnitudes converted to timm's levels (0..10,
``_LEVEL_DENOM = 10``), for any kind of policy. timm works on PIL images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ops.catalogue import OPS
from ops.policy import OpStep, Policy
from ops.snippet import Snippet, base_parts, compose, num, trivial_args, unsigned_arg

#: timm's ``_LEVEL_DENOM``: level 10 is the end of each op's range.
LEVEL_DENOM = 10.0

#: Linear ops: our op -> (timm op, timm's argument at level 10). The enhance ops use timm's
#: ``*Increasing`` variants, whose factor is ``1 +- 0.9 * level / 10`` with a random sign.
_LINEAR = {
    "ShearX": ("ShearX", 0.3),
    "ShearY": ("ShearY", 0.3),
    "Rotate": ("Rotate", 30.0),
    "Brightness": ("BrightnessIncreasing", 0.9),
    "Color": ("ColorIncreasing", 0.9),
    "Contrast": ("ContrastIncreasing", 0.9),
    "Sharpness": ("SharpnessIncreasing", 0.9),
}

#: Ops timm has no ``AugmentOp`` for, and why.
_MISSING = {
    "Cutout": "timm does Cutout as RandomErasing on normalised tensors, outside its policies",
    "FlipLR": "timm flips in its base transforms, not in AugmentOp policies",
    "FlipUD": "timm flips in its base transforms, not in AugmentOp policies",
}

_HEADER = """# Nearest sampling and zero fill, as the policy's ops (timm's defaults differ).
HPARAMS = {"interpolation": Image.Resampling.NEAREST, "img_mean": 0}


def op(name, p, level, **hparams):
    return AugmentOp(name, prob=p, magnitude=level, hparams={**HPARAMS, **hparams})
"""


@dataclass(frozen=True)
class TimmOp:
    """One of our ops at a magnitude, in timm's terms.

    Attributes:
        name: timm's op name.
        level: timm's magnitude level.
        hparams: Per-op timm hparams (translate range, ``magnitude_max`` above 10).
        levels_per_unit: timm levels per unit of our magnitude (scales ``m_std``).
    """

    name: str
    level: float
    hparams: dict[str, float] = field(default_factory=dict)
    levels_per_unit: float = LEVEL_DENOM


def timm_op(name: str, magnitude: float, wide: bool, arg: float | None = None) -> TimmOp:
    """Map our op at ``magnitude`` (or at the unsigned argument ``arg``) onto timm's ops.

    Raises:
        ValueError: For an op timm has no ``AugmentOp`` for, and for Identity (no op at all).
    """
    if name in _MISSING:
        raise ValueError(f"op {name!r} has no timm equivalent: {_MISSING[name]}")
    if name == "Identity":
        raise ValueError("Identity has no timm op; leave it out")
    op = OPS[name]
    low, high, relative = op.range(wide)
    arg = unsigned_arg(name, magnitude, wide) if arg is None else arg
    if not op.has_magnitude:
        return TimmOp(name, 0.0)
    if name in ("TranslateX", "TranslateY"):
        # Level 10 is the end of our range: a fraction of the side, or whole pixels (wide).
        key = "translate_pct" if relative else "translate_const"
        return TimmOp(name + ("Rel" if relative else ""), LEVEL_DENOM * arg / high, {key: high})
    if name in _LINEAR:
        timm_name, unit = _LINEAR[name]
        per_unit = LEVEL_DENOM * (high - low) / unit
        extra = {"magnitude_max": per_unit} if per_unit != LEVEL_DENOM else {}
        return TimmOp(timm_name, LEVEL_DENOM * arg / unit, extra, per_unit)
    span = abs(high - low)
    if name == "Posterize":
        # PosterizeOriginal keeps 4 + int(level * 0.4) bits, Posterize int(level * 0.4).
        bits = int(arg)
        timm_name, level = ("PosterizeOriginal", bits - 4) if bits >= 4 else ("Posterize", bits)
        return TimmOp(timm_name, level * 2.5, {}, span * 2.5)
    if name == "Solarize":
        # timm inverts pixels >= int(level * 25.6); the half keeps int() off the boundary.
        threshold = math.ceil(arg * 255.0)
        return TimmOp("Solarize", (threshold + 0.5) / 25.6, {}, span * 255.0 / 25.6)
    if name == "SolarizeAdd":  # timm adds int(level * 11) levels
        return TimmOp("SolarizeAdd", (arg + 0.5) / 11.0, {}, span / 11.0)
    raise ValueError(f"op {name!r} has no timm mapping yet")


def _op_code(timm: TimmOp, p: float, m_std: float = 0.0) -> str:
    hparams: dict[str, Any] = dict(timm.hparams)
    if m_std:
        hparams["magnitude_std"] = m_std * timm.levels_per_unit
    extra = "".join(f", {key}={num(value)}" for key, value in hparams.items())
    return f'op("{timm.name}", {p!r}, {num(timm.level)}{extra})'


def _kept(names: tuple[str, ...], p: float) -> tuple[list[str], float]:
    """The ops other than Identity, and the probability that keeps each op's rate.

    Drawing uniformly among the k kept ops of n and applying with ``p * k / n`` applies each
    op as often as drawing among all n (Identity included) and applying with ``p``.
    """
    kept = [name for name in names if name != "Identity"]
    return kept, p * len(kept) / len(names)


def _folded_note(names: tuple[str, ...]) -> list[str]:
    if "Identity" not in names:
        return []
    return [
        f"# No Identity op in timm: the other ops apply with p * {len(names) - 1} / {len(names)}."
    ]


def _subpolicies(policy: Policy) -> list[str]:
    def sub(steps: list[OpStep]) -> str:
        ops = [
            _op_code(timm_op(s.op, s.magnitude, policy.wide), s.p)
            for s in steps
            if s.op != "Identity"
        ]
        return f"    [{', '.join(ops)}],"

    return ["policy = AutoAugment([", *(sub(steps) for steps in policy.sub_policies), "])"]


def _randaugment(policy: Policy) -> list[str]:
    kept, p = _kept(policy.op_set, policy.p)
    ops = [f"    {_op_code(timm_op(n, policy.m, policy.wide), p, policy.m_std)}," for n in kept]
    lines = ["policy = RandAugment([", *ops, f"], num_layers={policy.n})"]
    return _folded_note(policy.op_set) + lines


def _trivialaugment(policy: Policy) -> list[str]:
    kept, p = _kept(policy.op_set, policy.p)
    lines = []
    for name in kept:
        args = trivial_args(name, policy.wide) if OPS[name].has_magnitude else [0.0]
        counts: dict[str, int] = {}
        for arg in args:
            code = _op_code(timm_op(name, 0.0, policy.wide, arg), p)
            counts[code] = counts.get(code, 0) + 1
        lines += [
            f"    ({code}, {count} / {len(args) * len(kept)})," for code, count in counts.items()
        ]
    return [
        *_folded_note(policy.op_set),
        "# One op uniformly, then one of its magnitude bins uniformly: (op, probability).",
        "entries = [",
        *lines,
        "]",
        "policy = RandAugment([e for e, _ in entries], num_layers=1, "
        "choice_weights=[w for _, w in entries])",
    ]


def timm_code(policy: Policy) -> str:
    """Python that builds ``transform`` (base + ops) from timm's own ops, for PIL images.

    Identity steps are left out (in RandAugment and TrivialAugment the other ops' probability
    absorbs them), so every op keeps its rate. Base crop and flips are torchvision transforms.

    Raises:
        ValueError: When the policy uses an op timm has no ``AugmentOp`` for (Cutout, flips).
    """
    policy.require_image("the timm export")
    kept = _kept(policy.op_set, 1.0)[0] if policy.kind != "none" else []
    cls, lines = "AutoAugment", ["policy = AutoAugment([[]])  # no ops"]
    if policy.kind == "subpolicies":
        lines = _subpolicies(policy)
    elif policy.kind == "randaugment" and kept:
        cls, lines = "RandAugment", _randaugment(policy)
    elif policy.kind == "trivialaugment" and kept:
        cls, lines = "RandAugment", _trivialaugment(policy)
    snippet = Snippet(
        imports={"from PIL import Image", f"from timm.data.auto_augment import AugmentOp, {cls}"}
    )
    parts = base_parts(policy, snippet)
    body = _HEADER + "\n\n" + "".join(f"{line}\n" for line in lines)
    return snippet.render(body + compose([*parts, "policy"]))


def to_timm(policy: Policy) -> str:
    """Write a randaugment policy as timm's config string (see :meth:`Policy.to_timm`)."""
    return policy.to_timm()
