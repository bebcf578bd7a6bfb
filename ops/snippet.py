"""Writing paste-able Python: the parts torchvision and timm code share.

Snippets import only their framework (torchvision, timm, PIL, torch), never augsearch. Their
arguments are computed as the batched applier computes them (float32), and written as the
shortest literals that read back to the same float32 value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ops.catalogue import OPS
from ops.policy import Policy

#: TrivialAugment's number of magnitude bins (``magnitude = bin / 30``).
TRIVIAL_BINS = 31

V2 = "from torchvision.transforms import v2"
FUNCTIONAL = "from torchvision.transforms.v2 import functional as F"
TORCH = "import torch"

_RANDOM_SHIFT = '''def random_shift(padding):
    """Zero-pad by `padding` pixels and crop back to the input size at a uniform offset."""

    def crop(img):
        h, w = F.get_size(img)
        dy, dx = torch.randint(0, 2 * padding + 1, (2,)).tolist()
        return F.crop(F.pad(img, [padding] * 4, fill=0), dy, dx, h, w)

    return v2.Lambda(crop)
'''


def unsigned_arg(name: str, magnitude: float, wide: bool) -> float:
    """The op's argument at ``magnitude`` in the applier's float32 arithmetic, before the sign.

    For ranges relative to the image side this is the fraction of the side (the code rounds
    it to pixels once it knows the size).
    """
    low, high, relative = OPS[name].range(wide)
    m = torch.tensor(magnitude, dtype=torch.float32)
    if relative:
        return float(low + m * (high - low))
    return float(OPS[name].magnitude_to_arg(m, wide))


def trivial_args(name: str, wide: bool) -> list[float]:
    """The op's argument in each TrivialAugment bin, from torchvision's float32 tables."""
    low, high, relative = OPS[name].range(wide)
    if relative:
        return [float(v) for v in torch.linspace(low, high, TRIVIAL_BINS)]
    bins = torch.arange(TRIVIAL_BINS)
    return [float(v) for v in OPS[name].bin_to_arg(bins, TRIVIAL_BINS, wide)]


def num(value: float) -> str:
    """A float32 value as the shortest literal that reads back to it (never ``-0.0``)."""
    return str(np.float32(value) + np.float32(0.0))


@dataclass
class Snippet:
    """Code under construction: the import lines and defs its body uses."""

    imports: set[str] = field(default_factory=set)
    defs: dict[str, str] = field(default_factory=dict)

    def use(self, name: str, source: str, imports: tuple[str, ...]) -> str:
        """Include the def ``name`` (once) with the imports it needs; return its name."""
        self.defs.setdefault(name, source)
        self.imports.update(imports)
        return name

    def render(self, body: str) -> str:
        """The imports (standard library first, then by module), the defs, then ``body``."""

        def key(line: str) -> tuple[bool, str]:
            module = line.split()[1]
            return module != "math", module.lower()

        defs = "".join(f"\n\n{source}" for source in self.defs.values())
        return "\n".join(sorted(self.imports, key=key)) + "\n" + defs + "\n\n" + body


def base_parts(policy: Policy, snippet: Snippet) -> list[str]:
    """The base crop and flips as items of a torchvision ``Compose``."""
    parts = []
    if policy.base.crop_padding:
        snippet.use("random_shift", _RANDOM_SHIFT, (TORCH, V2, FUNCTIONAL))
        parts.append(f"random_shift({policy.base.crop_padding})")
    if policy.base.hflip:
        parts.append("v2.RandomHorizontalFlip(p=0.5)")
    if policy.base.vflip:
        parts.append("v2.RandomVerticalFlip(p=0.5)")
    if parts:
        snippet.imports.add(V2)
    return parts


def compose(parts: list[str]) -> str:
    """The line(s) assigning ``transform``: ``parts`` in a ``v2.Compose``, one per line."""
    if parts == ["policy"]:
        return "transform = policy\n"
    items = "".join(f"    {part},\n" for part in parts or ["v2.Identity()"])
    return f"transform = v2.Compose([\n{items}])\n"
