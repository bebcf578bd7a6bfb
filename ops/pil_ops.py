"""The ops on PIL images (modes L and RGB), for the per-image path on a DataLoader's PIL input.

Converting a PIL image to a (C, H, W) tensor and back costs two layout copies, more than most
ops on it, so PIL images stay PIL. Each op takes its parameters from :mod:`ops.image` and is
built on the catalogue's own definitions where that is exact:

* geometric ops and the base crop/flips are one nearest-neighbour affine transform with the
  op's own inverse matrix (:attr:`OpDef.matrix`) moved to PIL's pixel-corner coordinates;
* pointwise ops (:attr:`OpDef.pointwise`) are a lookup table computed by the op's tensor
  function on the 256 intensities, so they are bit-identical to the tensor path;
* Equalize, Invert, the flips and Cutout are exact as well; Color, Contrast, Sharpness and
  AutoContrast are PIL's (``ImageEnhance``, ``ImageOps``), which torchvision's tensor kernels,
  and therefore ours, reproduce up to one intensity level, as torchvision's two backends do.
"""

from __future__ import annotations

from collections.abc import Callable

import PIL.Image
import torch
from PIL import ImageEnhance, ImageFilter, ImageOps
from torch import Tensor

from ops.catalogue import OpDef

#: Each memo (lookup tables, affine coefficients) is emptied when it holds this many entries.
MEMO_ENTRIES = 4096

Affine = tuple[float, float, float, float, float, float]

_RAMP = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256)


def _contrast(image: PIL.Image.Image, arg: float) -> PIL.Image.Image:
    return ImageEnhance.Contrast(image).enhance(1.0 + arg)


def _color(image: PIL.Image.Image, arg: float) -> PIL.Image.Image:
    return image if image.mode == "L" else ImageEnhance.Color(image).enhance(1.0 + arg)


def _sharpness(image: PIL.Image.Image, arg: float) -> PIL.Image.Image:
    if min(image.size) <= 2:  # no interior pixel: unchanged, as the tensor op
        return image
    blurred = image.filter(ImageFilter.SMOOTH)
    return PIL.Image.blend(blurred, image, 1.0 + arg)


#: Ops that are neither geometric nor pointwise nor placed at a random centre.
_KERNELS: dict[str, Callable[[PIL.Image.Image, float], PIL.Image.Image]] = {
    "Identity": lambda image, arg: image,
    "Color": _color,
    "Contrast": _contrast,
    "Sharpness": _sharpness,
    "AutoContrast": lambda image, arg: ImageOps.autocontrast(image),
    "Equalize": lambda image, arg: ImageOps.equalize(image),
}


class PilOps:
    """Apply a policy's ops to PIL images; memoises lookup tables and affine coefficients.

    Args:
        defs: The policy's ops, in op-index order.
    """

    def __init__(self, defs: tuple[OpDef, ...]) -> None:
        unknown = [op.name for op in defs if not _supported(op)]
        if unknown:
            raise ValueError(f"no PIL implementation for ops {unknown}")
        self._defs = defs
        self._luts: dict[tuple[int, float], list[int]] = {}
        self._affines: dict[tuple[object, ...], Affine] = {}

    def warp(
        self, image: PIL.Image.Image, key: tuple[object, ...], theta: Callable[[], Tensor]
    ) -> PIL.Image.Image:
        """Warp by the (1, 2, 3) inverse affine matrix ``theta()``, memoised under ``key``."""
        w, h = image.size
        affine = self._affines.get((*key, h, w))
        if affine is None:
            if len(self._affines) >= MEMO_ENTRIES:
                self._affines.clear()
            affine = self._affines[(*key, h, w)] = _pil_affine(theta(), h, w)
        return image.transform(
            image.size,
            PIL.Image.Transform.AFFINE,
            affine,
            resample=PIL.Image.Resampling.NEAREST,
            fillcolor=0,
        )

    def apply(
        self, image: PIL.Image.Image, k: int, arg: float, centre: tuple[float, float]
    ) -> PIL.Image.Image:
        """Apply op ``k`` (not geometric) with its final argument; never in place."""
        op = self._defs[k]
        if op.pointwise:
            lut = self._luts.get((k, arg))
            if lut is None:
                if len(self._luts) >= MEMO_ENTRIES:
                    self._luts.clear()
                values = op.fn(_RAMP, torch.tensor([arg], dtype=torch.float32))
                lut = self._luts[(k, arg)] = values.flatten().tolist()
            return image.point(lut * len(image.getbands()))
        if op.needs_centre:
            return _cutout(image, arg, centre)
        return _KERNELS[op.name](image, arg)


def _supported(op: OpDef) -> bool:
    return op.matrix is not None or op.pointwise or op.needs_centre or op.name in _KERNELS


def _pil_affine(theta: Tensor, h: int, w: int) -> Affine:
    """PIL's coefficients for a centred inverse matrix: PIL maps pixel corners, not centres."""
    (a, b, c), (d, e, f) = theta.reshape(2, 3).double().tolist()
    cx, cy = w * 0.5, h * 0.5
    return (a, b, c + cx - a * cx - b * cy, d, e, f + cy - d * cx - e * cy)


def _cutout(image: PIL.Image.Image, arg: float, centre: tuple[float, float]) -> PIL.Image.Image:
    # The square of ops.functional.cutout: the same float32 centre arithmetic, clipped.
    w, h = image.size
    side = round(arg)
    position = (torch.tensor(centre, dtype=torch.float32) * torch.tensor([h, w])).long()
    cy, cx = min(max(int(position[0]), 0), h - 1), min(max(int(position[1]), 0), w - 1)
    top, left = cy - side // 2, cx - side // 2
    box = (max(left, 0), max(top, 0), min(left + side, w), min(top + side, h))
    out = image.copy()
    if box[2] > box[0] and box[3] > box[1]:
        out.paste(0, box)
    return out
