"""torchvision v2 transforms for policies torchvision has no class for.

They draw parameters exactly as :class:`ops.apply.BatchAugmenter` does (same generator calls)
and apply them with ``torchvision.transforms.v2.functional``, so an exported custom policy is a
plain torchvision transform that needs no batched applier.
"""

from __future__ import annotations

import math
from typing import Any

import PIL.Image
import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as tvf

from ops.apply import BatchAugmenter
from ops.groups import SlotParams
from ops.policy import Policy, load_policy


def _apply_one(image: Tensor, name: str, arg: float, centre: tuple[float, float]) -> Tensor:
    """Apply one op to a uint8 (C, H, W) image with torchvision's functional ops."""
    h, w = image.shape[-2:]
    affine = {"angle": 0.0, "translate": [0, 0], "scale": 1.0, "shear": [0.0, 0.0]}
    if name == "ShearX":
        return tvf.affine(image, **{**affine, "shear": [math.degrees(math.atan(arg)), 0.0]},
                          center=[0, 0])  # fmt: skip
    if name == "ShearY":
        return tvf.affine(image, **{**affine, "shear": [0.0, math.degrees(math.atan(arg))]},
                          center=[0, 0])  # fmt: skip
    if name in ("TranslateX", "TranslateY"):
        shift = [int(arg), 0] if name == "TranslateX" else [0, int(arg)]
        return tvf.affine(image, **{**affine, "translate": shift})
    simple: dict[str, Any] = {
        "Identity": lambda: image,
        "Rotate": lambda: tvf.rotate(image, arg),
        "Brightness": lambda: tvf.adjust_brightness(image, 1.0 + arg),
        "Color": lambda: tvf.adjust_saturation(image, 1.0 + arg),
        "Contrast": lambda: tvf.adjust_contrast(image, 1.0 + arg),
        "Sharpness": lambda: tvf.adjust_sharpness(image, 1.0 + arg),
        "Posterize": lambda: tvf.posterize(image, int(arg)),
        "Solarize": lambda: tvf.solarize(image, 255.0 * arg),
        "AutoContrast": lambda: tvf.autocontrast(image),
        "Equalize": lambda: tvf.equalize(image),
        "Invert": lambda: tvf.invert(image),
        "FlipLR": lambda: tvf.horizontal_flip(image),
        "FlipUD": lambda: tvf.vertical_flip(image),
    }
    if name in simple:
        return simple[name]()
    if name == "SolarizeAdd":
        added = (image.to(torch.int16) + round(arg)).clamp(0, 255).to(torch.uint8)
        return torch.where(image < 128, added, image)
    if name == "Cutout":
        side = round(arg)
        cy, cx = min(int(centre[0] * h), h - 1), min(int(centre[1] * w), w - 1)
        top, left = max(cy - side // 2, 0), max(cx - side // 2, 0)
        bottom, right = min(cy - side // 2 + side, h), min(cx - side // 2 + side, w)
        if bottom <= top or right <= left:
            return image
        return tvf.erase(image, top, left, bottom - top, right - left, torch.tensor(0))
    raise ValueError(f"no torchvision implementation for op {name!r}")


class RandomShift(v2.Transform):
    """Zero-pad by ``padding`` pixels and crop back to the input size at a random offset."""

    def __init__(self, padding: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.padding = padding
        self.generator = generator

    def forward(self, image: Any) -> Any:
        """Shift one image (PIL or tensor)."""
        h, w = tvf.get_size(image)
        dy, dx = torch.randint(0, 2 * self.padding + 1, (2,), generator=self.generator).tolist()
        padded = tvf.pad(image, [self.padding] * 4, fill=0)
        return tvf.crop(padded, dy, dx, h, w)


class TorchvisionPolicy(v2.Transform):
    """Any :class:`~ops.policy.Policy`'s ops as a torchvision v2 transform (one image).

    Randomness comes from ``generator`` when given, otherwise from torch's default generator
    like every torchvision transform, so DataLoader worker seeding applies. The policy's
    ``base`` is not applied here (compose :class:`RandomShift` and flips in front).

    Args:
        policy: A Policy or its JSON dict.
        generator: Optional CPU generator.
    """

    def __init__(self, policy: Policy | dict[str, Any], generator: torch.Generator | None = None):
        super().__init__()
        policy = policy if isinstance(policy, Policy) else load_policy(policy)
        policy.require_image("TorchvisionPolicy")
        self.policy = policy.model_copy(update={"base": type(policy.base)()})
        self.generator = generator
        self._augmenter = BatchAugmenter(self.policy)

    def forward(self, image: Any) -> Any:
        """Augment one PIL image or uint8 (C, H, W) tensor, returning the same type."""
        is_pil = isinstance(image, PIL.Image.Image)
        tensor = tvf.pil_to_tensor(image) if is_pil else image
        if not isinstance(tensor, Tensor) or tensor.dtype != torch.uint8 or tensor.ndim != 3:
            raise TypeError("TorchvisionPolicy expects a PIL image or a uint8 (C, H, W) tensor")
        gen = self.generator if self.generator is not None else torch.default_generator
        size = (int(tensor.shape[-2]), int(tensor.shape[-1]))
        params = self._augmenter.sample_params(1, gen, size)
        for slot in params.slots:
            tensor = self._apply_slot(tensor, slot, params.ops)
        return tvf.to_pil_image(tensor, mode=image.mode) if is_pil else tensor

    @staticmethod
    def _apply_slot(image: Tensor, slot: SlotParams, ops: tuple[str, ...]) -> Tensor:
        if not bool(slot.apply[0]):
            return image
        centre = (float(slot.centre[0, 0]), float(slot.centre[0, 1]))
        return _apply_one(image, ops[int(slot.op_index[0])], float(slot.arg[0]), centre)

    def __repr__(self) -> str:
        return f"TorchvisionPolicy({self.policy.model_dump_json()})"
