"""torchvision code: a policy as Python that needs torchvision only.

Presets become torchvision's own classes (:func:`ops.tv_export.torchvision_class`). Any other
policy becomes a ``Compose`` / ``RandomChoice`` / ``RandomApply`` tree of v2 transforms at the
policy's magnitudes, each signed op a ``RandomChoice`` of both signs. Each op with a magnitude
is a one-line def in the snippet (``rotate(a)`` -> ``v2.RandomRotation((a, a))``); ops
torchvision has no class for (pixel shifts, SolarizeAdd, Cutout) are small defs over
``torchvision.transforms.v2.functional``. The code draws from torch's global generator, so it
equals the applier in distribution rather than draw for draw.
"""

from __future__ import annotations

from collections.abc import Callable

from torchvision.transforms import v2

from ops.catalogue import OPS
from ops.policy import OpStep, Policy
from ops.snippet import (
    FUNCTIONAL,
    TORCH,
    V2,
    Snippet,
    base_parts,
    compose,
    num,
    trivial_args,
    unsigned_arg,
)
from ops.tv_export import torchvision_class

MATH, PIL_IMAGE = "import math", "import PIL.Image"

#: Ops whose magnitude does not matter, as torchvision classes.
_FIXED = {
    "Identity": "v2.Identity()",
    "AutoContrast": "v2.RandomAutocontrast(p=1.0)",
    "Equalize": "v2.RandomEqualize(p=1.0)",
    "Invert": "v2.RandomInvert(p=1.0)",
    "FlipLR": "v2.RandomHorizontalFlip(p=1.0)",
    "FlipUD": "v2.RandomVerticalFlip(p=1.0)",
}

#: Ops with a torchvision class at a fixed argument ``a``: name -> (def name, doc, transform).
_CLASSES = {
    "Rotate": ("rotate", "Rotate counter-clockwise by a degrees.", "v2.RandomRotation((a, a))"),
    "Brightness": ("brightness", "Brightness factor 1 + a.", "v2.ColorJitter(brightness=(1 + a, 1 + a))"),
    "Color": ("color", "Saturation factor 1 + a.", "v2.ColorJitter(saturation=(1 + a, 1 + a))"),
    "Contrast": ("contrast", "Contrast factor 1 + a.", "v2.ColorJitter(contrast=(1 + a, 1 + a))"),
    "Sharpness": ("sharpness", "Sharpness factor 1 + a.", "v2.RandomAdjustSharpness(1 + a, p=1.0)"),
    "Posterize": ("posterize", "Keep int(a) bits.", "v2.RandomPosterize(int(a), p=1.0)"),
    "Solarize": ("solarize", "Invert pixels >= a * 255 (uint8 tensors or PIL images).",
                 "v2.RandomSolarize(255 * a, p=1.0)"),
}  # fmt: skip

_SHEAR = '''def shear_{axis}(a):
    """{axis} += a * {other} about the top-left corner."""
    angle = math.degrees(math.atan(a))
    return v2.RandomAffine(0, shear={shear}, center=[0, 0])
'''

_TRANSLATE = '''def translate_{axis}(a):
    """Shift {direction} by {amount}, zero fill."""

    def shift(img):
        h, w = F.get_size(img)
        return F.affine(img, angle=0.0, translate={shift}, scale=1.0, shear=[0.0, 0.0])

    return v2.Lambda(shift)
'''

_SOLARIZE_ADD = '''def solarize_add(a):
    """Add int(a) levels (of 255) to pixels below 128 (uint8 tensors or PIL images)."""

    def add(img):
        pil = isinstance(img, PIL.Image.Image)
        x = F.pil_to_tensor(img) if pil else img
        x = torch.where(x < 128, (x.to(torch.int16) + int(a)).clamp(0, 255).to(torch.uint8), x)
        return F.to_pil_image(x, mode=img.mode) if pil else x

    return v2.Lambda(add)
'''

_CUTOUT = '''def cutout(a):
    """Zero a square of side round(a * shorter side) at a uniform centre, clipped."""

    def erase(img):
        h, w = F.get_size(img)
        side = round(a * min(h, w))
        cy, cx = (torch.rand(2) * torch.tensor([h, w])).long().tolist()
        top = max(min(cy, h - 1) - side // 2, 0)
        left = max(min(cx, w - 1) - side // 2, 0)
        bottom = min(min(cy, h - 1) - side // 2 + side, h)
        right = min(min(cx, w - 1) - side // 2 + side, w)
        if bottom <= top or right <= left:
            return img
        return F.erase(img, top, left, bottom - top, right - left, torch.tensor(0))

    return v2.Lambda(erase)
'''

_RANDOM_MAGNITUDE = '''def random_magnitude(make, to_arg, signed):
    """make(to_arg(m)) with m = clip(M + M_STD * N(0, 1), 0, 1) drawn per image, random sign."""

    def apply(img):
        arg = to_arg(min(max(M + M_STD * float(torch.randn(())), 0.0), 1.0))
        return make(-arg if signed and bool(torch.rand(()) < 0.5) else arg)(img)

    return v2.Lambda(apply)
'''


def _op_def(name: str, relative: bool) -> tuple[str, str, tuple[str, ...]]:
    """(def name, def source, imports) of an op taking its signed argument ``a``."""
    if name in _CLASSES:
        fn, doc, body = _CLASSES[name]
        return fn, f'def {fn}(a):\n    """{doc}"""\n    return {body}\n', (V2,)
    if name in ("ShearX", "ShearY"):
        axis, other, shear = ("x", "y", "(angle, angle, 0, 0)") if name == "ShearX" else (
            "y", "x", "(0, 0, angle, angle)")  # fmt: skip
        return f"shear_{axis}", _SHEAR.format(axis=axis, other=other, shear=shear), (MATH, V2)
    if name in ("TranslateX", "TranslateY"):
        x = name == "TranslateX"
        axis, direction, side = ("x", "right", "w") if x else ("y", "down", "h")
        pixels = f"int(a * {side})" if relative else "int(a)"
        amount = f"int(a * {'width' if x else 'height'}) pixels" if relative else "int(a) pixels"
        shift = f"[{pixels}, 0]" if x else f"[0, {pixels}]"
        source = _TRANSLATE.format(axis=axis, direction=direction, amount=amount, shift=shift)
        return f"translate_{axis}", source, (V2, FUNCTIONAL)
    if name == "SolarizeAdd":
        return "solarize_add", _SOLARIZE_ADD, (PIL_IMAGE, TORCH, V2, FUNCTIONAL)
    if name == "Cutout":
        return "cutout", _CUTOUT, (TORCH, V2, FUNCTIONAL)
    raise ValueError(f"op {name!r} has no torchvision code")


class _Writer:
    """Writes one policy's ops as torchvision code into a snippet."""

    def __init__(self, policy: Policy, snippet: Snippet) -> None:
        self.policy = policy
        self.snippet = snippet

    def _fn(self, name: str) -> str:
        relative = OPS[name].range(self.policy.wide)[2]
        return self.snippet.use(*_op_def(name, relative))

    def fixed(self, name: str, magnitude: float) -> str:
        """The op at a fixed magnitude; a signed op picks either sign with probability 1/2."""
        if not OPS[name].has_magnitude:
            return _FIXED[name]
        fn, arg = self._fn(name), unsigned_arg(name, magnitude, self.policy.wide)
        if not OPS[name].signed or arg == 0:
            return f"{fn}({num(arg)})"
        return f"v2.RandomChoice([{fn}({num(arg)}), {fn}({num(-arg)})])"

    def trivial(self, name: str) -> str:
        """The op at one of TrivialAugment's 31 bins drawn uniformly, random sign."""
        if not OPS[name].has_magnitude:
            return _FIXED[name]
        args = trivial_args(name, self.policy.wide)
        if OPS[name].signed:
            args = [value for arg in args for value in (arg, -arg)]
        return f"v2.RandomChoice([{self._fn(name)}(a) for a in ({', '.join(map(num, args))})])"

    def noisy(self, name: str) -> str:
        """The op at RandAugment's magnitude plus Gaussian noise, drawn per image."""
        op = OPS[name]
        if not op.has_magnitude:
            return _FIXED[name]
        low, high, relative = op.range(self.policy.wide)
        arg = f"{num(high - low)} * m" if low == 0 else f"{num(low)} - {num(low - high)} * m"
        if not relative and op.rounding != "none":  # relative args are rounded to pixels later
            arg = f"{'round' if op.rounding == 'round' else 'int'}({arg})"
        self.snippet.use("random_magnitude", _RANDOM_MAGNITUDE, (TORCH, V2))
        return f"random_magnitude({self._fn(name)}, lambda m: {arg}, signed={op.signed})"

    def step(self, step: OpStep) -> str:
        code = self.fixed(step.op, step.magnitude)
        return code if step.p == 1 else f"v2.RandomApply([{code}], p={step.p!r})"

    def lines(self) -> list[str]:
        """Lines assigning ``policy``, the ops part."""
        policy = self.policy
        if policy.kind == "subpolicies":
            subs = [
                "    v2.Compose([\n" + "".join(f"        {self.step(s)},\n" for s in sub) + "    ]),"
                for sub in policy.sub_policies
            ]  # fmt: skip
            return ["policy = v2.RandomChoice([", *subs, "])"]
        apply = f"v2.RandomApply([c], p={policy.p!r})" if policy.p < 1 else "c"
        if policy.kind == "randaugment":
            make: Callable[[str], str] = (
                self.noisy if policy.m_std else lambda name: self.fixed(name, policy.m)
            )
            noise = [f"M, M_STD = {policy.m!r}, {policy.m_std!r}"] if policy.m_std else []
            pick = f"v2.RandomChoice([{apply} for c in choices])"
            last = f"policy = v2.Compose([{pick} for _ in range({policy.n})])"
        else:
            make, noise = self.trivial, []
            last = "policy = v2.RandomChoice(choices)"
            if policy.p < 1:
                last = f"policy = v2.RandomApply([v2.RandomChoice(choices)], p={policy.p!r})"
        return [*noise, "choices = [", *(f"    {make(n)}," for n in policy.op_set), "]", last]


def _builtin(policy: Policy) -> str | None:
    transform = torchvision_class(policy)
    if transform is None:
        return None
    if isinstance(transform, v2.RandAugment):
        return (f"v2.RandAugment(num_ops={transform.num_ops}, magnitude={transform.magnitude}, "
                f"num_magnitude_bins={transform.num_magnitude_bins})")  # fmt: skip
    if isinstance(transform, v2.AutoAugment):
        return f"v2.AutoAugment(v2.AutoAugmentPolicy.{transform.policy.name})"
    return f"v2.{type(transform).__name__}()"


def torchvision_code(policy: Policy) -> str:
    """Python that builds ``transform`` (base + ops) with torchvision only.

    The transform takes uint8 (C, H, W) tensors or PIL images (which go through torchvision's
    PIL kernels). Batch mixing (``policy.mix``) is not part of it.
    """
    policy.require_image("the torchvision export")
    snippet = Snippet(imports={V2})
    parts = base_parts(policy, snippet)
    lines: list[str] = []
    builtin = _builtin(policy) if policy.kind != "none" else None
    if builtin is not None:
        parts.append(builtin)
    elif policy.kind != "none":
        lines = _Writer(policy, snippet).lines()
        parts.append("policy")
    return snippet.render("".join(f"{line}\n" for line in lines) + compose(parts))
