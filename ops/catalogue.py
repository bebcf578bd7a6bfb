"""The op catalogue: the single table of augmentation ops and their magnitude ranges.

A policy stores a normalised ``magnitude`` in [0, 1] per op. :meth:`OpDef.magnitude_to_arg`
maps it linearly onto the op's range, ``arg = low + magnitude * (high - low)``, which is exactly
torchvision's table: torchvision's bin ``b`` of ``num_bins`` is ``magnitude = b / (num_bins - 1)``
(RandAugment/TrivialAugmentWide use 31 bins, AutoAugment 10). Signed ops get a random sign from
the applier, as torchvision does. The table drives the appliers, the exporters, the API listing
and docs/ops.md (:func:`ops_markdown`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import Tensor

from ops import functional as F

Kind = Literal["geometric", "colour", "other"]
Rounding = Literal["none", "round", "trunc"]
MatrixFn = Callable[[Tensor, int, int], Tensor]

#: Translate range of the standard table, as a fraction of the image side (torchvision's value).
TRANSLATE_FRACTION = 150.0 / 331.0


@dataclass(frozen=True)
class OpDef:
    """One augmentation op.

    Attributes:
        name: Op name used in policies (AutoAugment spelling).
        fn: Batched pure function ``fn(images, arg)`` from :mod:`ops.functional`.
        low: Argument at magnitude 0 (standard table).
        high: Argument at magnitude 1 (standard table).
        signed: Whether the applier draws a random sign for the argument.
        kind: "geometric" (an affine warp), "colour" (pixel-wise) or "other".
        description: The mapping from magnitude to argument, in words.
        relative: The range is a fraction of the image side (converted to pixels).
        rounding: How the argument is made integral ("round" half-to-even, "trunc" toward 0).
        matrix: For geometric ops, ``matrix(arg, height, width)`` -> (N, 2, 3) inverse affine
            matrices in torchvision's centred convention, so several ops share one warp.
        identity_at_zero: Whether magnitude 0 leaves every image unchanged.
        needs_centre: The op also takes ``centre`` (N, 2) uniform draws (Cutout's position).
        pointwise: Each intensity maps to a new one independently of every other pixel, so
            the op is a 256-entry lookup table per argument (how PIL images apply it).
    """

    name: str
    fn: Callable[..., Tensor]
    low: float
    high: float
    signed: bool
    kind: Kind
    description: str
    relative: bool = False
    rounding: Rounding = "none"
    matrix: MatrixFn | None = None
    identity_at_zero: bool = True
    needs_centre: bool = False
    pointwise: bool = False

    @property
    def has_magnitude(self) -> bool:
        """Whether the magnitude changes the op at all."""
        return self.low != self.high or self.name in WIDE_RANGES

    def range(self, wide: bool = False) -> tuple[float, float, bool]:
        """Return ``(low, high, relative)`` of the standard or the wide table."""
        if wide and self.name in WIDE_RANGES:
            return WIDE_RANGES[self.name]
        return self.low, self.high, self.relative

    @overload
    def magnitude_to_arg(self, m: float, wide: bool = ..., size: int | None = ...) -> float: ...
    @overload
    def magnitude_to_arg(self, m: Tensor, wide: bool = ..., size: int | None = ...) -> Tensor: ...
    def magnitude_to_arg(
        self, m: float | Tensor, wide: bool = False, size: int | None = None
    ) -> float | Tensor:
        """Map a normalised magnitude onto the op's (unsigned) argument.

        Args:
            m: Magnitude in [0, 1], a float or a tensor of them.
            wide: Use TrivialAugmentWide's ranges.
            size: Image side in pixels (width for X ops, height for Y ops, the shorter side for
                Cutout); required when the range is relative to the image size.

        Returns:
            The argument for :attr:`fn` (before the random sign), of the same type as ``m``.

        Raises:
            ValueError: If the magnitude is outside [0, 1] or a needed ``size`` is missing.
        """
        low, high, relative = self.range(wide)
        if isinstance(m, Tensor):
            if bool(((m < 0) | (m > 1)).any()):
                raise ValueError(f"{self.name}: magnitudes must lie in [0, 1]")
        elif not 0.0 <= m <= 1.0:
            raise ValueError(f"{self.name}: magnitude {m} is outside [0, 1]")
        arg = low + m * (high - low)
        if relative:
            if size is None:
                raise ValueError(f"{self.name}: the range is relative, pass the image size")
            arg = arg * size
        if self.rounding == "round":
            return torch.round(arg) if isinstance(arg, Tensor) else float(round(arg))
        if self.rounding == "trunc":
            return torch.trunc(arg) if isinstance(arg, Tensor) else float(math.trunc(arg))
        return arg

    def bin_to_arg(self, bins: Tensor, num_bins: int, wide: bool = False, size: int = 1) -> Tensor:
        """Map magnitude bins to arguments exactly as torchvision's float32 ``linspace`` tables.

        ``bin_to_arg(b, k)`` equals ``magnitude_to_arg(b / (k - 1))`` up to float32 rounding,
        which matters where torchvision truncates (e.g. its TrivialAugmentWide translate bin 15
        is 15.999999 px, hence 15 px).
        """
        low, high, relative = self.range(wide)
        scale = float(size) if relative else 1.0
        if self.name == "Posterize":  # torchvision's own integer formula
            step = (num_bins - 1) / (low - high)
            table = (low - torch.arange(num_bins) / step).round()
        else:
            table = torch.linspace(low * scale, high * scale, num_bins)
        arg = table.to(bins.device)[bins]
        if self.rounding == "round":
            return torch.round(arg)
        return torch.trunc(arg) if self.rounding == "trunc" else arg


#: TrivialAugmentWide's ranges: name -> (low, high, relative). Other ops keep their standard range.
WIDE_RANGES: dict[str, tuple[float, float, bool]] = {
    "ShearX": (0.0, 0.99, False),
    "ShearY": (0.0, 0.99, False),
    "TranslateX": (0.0, 32.0, False),
    "TranslateY": (0.0, 32.0, False),
    "Rotate": (0.0, 135.0, False),
    "Brightness": (0.0, 0.99, False),
    "Color": (0.0, 0.99, False),
    "Contrast": (0.0, 0.99, False),
    "Sharpness": (0.0, 0.99, False),
    "Posterize": (8.0, 2.0, False),
}

_ENHANCE = "factor 1 + arg, arg = {h} * magnitude with a random sign (wide: 0.99)"


def _op(name: str, fn: Callable[..., Tensor], low: float, high: float, **kw: object) -> OpDef:
    return OpDef(name=name, fn=fn, low=low, high=high, **kw)  # type: ignore[arg-type]


def _build() -> dict[str, OpDef]:
    geo = {"kind": "geometric", "signed": True}
    col = {"kind": "colour", "signed": False}
    lut = {**col, "pointwise": True}
    table = [
        _op("Identity", F.identity, 0, 0, kind="other", signed=False,
            description="no change"),
        _op("ShearX", F.shear_x, 0, 0.3, matrix=F.shear_x_matrix, **geo,
            description="x += arg * y about the top-left corner, arg = 0.3 * magnitude "
            "(wide: 0.99), random sign"),
        _op("ShearY", F.shear_y, 0, 0.3, matrix=F.shear_y_matrix, **geo,
            description="y += arg * x about the top-left corner, arg = 0.3 * magnitude "
            "(wide: 0.99), random sign"),
        _op("TranslateX", F.translate_x, 0, TRANSLATE_FRACTION, relative=True, rounding="trunc",
            matrix=F.translate_x_matrix, **geo,
            description="shift right by int(150/331 * width * magnitude) px "
            "(wide: int(32 * magnitude) px), random sign"),
        _op("TranslateY", F.translate_y, 0, TRANSLATE_FRACTION, relative=True, rounding="trunc",
            matrix=F.translate_y_matrix, **geo,
            description="shift down by int(150/331 * height * magnitude) px "
            "(wide: int(32 * magnitude) px), random sign"),
        _op("Rotate", F.rotate, 0, 30, matrix=F.rotate_matrix, **geo,
            description="rotate counter-clockwise by 30 * magnitude degrees (wide: 135), "
            "random sign"),
        _op("Brightness", F.brightness, 0, 0.9, kind="colour", signed=True, pointwise=True,
            description="brightness " + _ENHANCE.format(h=0.9)),
        _op("Color", F.color, 0, 0.9, kind="colour", signed=True,
            description="saturation " + _ENHANCE.format(h=0.9) + "; identity on grayscale"),
        _op("Contrast", F.contrast, 0, 0.9, kind="colour", signed=True,
            description="contrast " + _ENHANCE.format(h=0.9)),
        _op("Sharpness", F.sharpness, 0, 0.9, kind="colour", signed=True,
            description="sharpness " + _ENHANCE.format(h=0.9)),
        _op("Posterize", F.posterize, 8, 4, rounding="round", **lut,
            description="keep round(8 - 4 * magnitude) bits (wide: round(8 - 6 * magnitude))"),
        _op("Solarize", F.solarize, 1, 0, identity_at_zero=False, **lut,
            description="invert pixels >= (1 - magnitude) * max; at magnitude 0 the "
            "maximum value itself is inverted, as in torchvision"),
        _op("SolarizeAdd", F.solarize_add, 0, 110, rounding="round", **lut,
            description="add round(110 * magnitude) levels (of 255) to pixels below 128"),
        _op("AutoContrast", F.autocontrast, 0, 0, identity_at_zero=False, **col,
            description="stretch each channel to the full range; magnitude unused"),
        _op("Equalize", F.equalize, 0, 0, identity_at_zero=False, **col,
            description="histogram-equalise each channel (PIL's LUT); magnitude unused"),
        _op("Invert", F.invert, 0, 0, identity_at_zero=False, **lut,
            description="max - pixel; magnitude unused"),
        _op("Cutout", F.cutout, 0, 0.5, relative=True, rounding="round", kind="other",
            signed=False, needs_centre=True,
            description="zero a square of side round(0.5 * magnitude * shorter side) px at a "
            "uniformly drawn centre (clipped at the border)"),
        _op("FlipLR", F.flip_lr, 0, 0, matrix=F.flip_lr_matrix, kind="geometric", signed=False,
            identity_at_zero=False, description="mirror left-right; magnitude unused"),
        _op("FlipUD", F.flip_ud, 0, 0, matrix=F.flip_ud_matrix, kind="geometric", signed=False,
            identity_at_zero=False, description="mirror top-bottom; magnitude unused"),
    ]  # fmt: skip
    return {op.name: op for op in table}


#: Every op, keyed by name.
OPS: dict[str, OpDef] = _build()

#: torchvision's RandAugment / TrivialAugmentWide op set (the 14 standard ops), in its order.
STANDARD_OPS: tuple[str, ...] = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
    "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
)  # fmt: skip


def op_names() -> list[str]:
    """Return every op name in catalogue order."""
    return list(OPS)


def get_op(name: str) -> OpDef:
    """Return the op called ``name``.

    Raises:
        KeyError: With the list of known ops, if ``name`` is unknown.
    """
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; known ops: {', '.join(OPS)}") from None


def ops_markdown() -> str:
    """Render the catalogue as the Markdown table kept in docs/ops.md."""

    def fmt(low: float, high: float, rel: bool) -> str:
        unit = " x size" if rel else ""
        return f"{low:g} .. {high:g}{unit}"

    lines = [
        "| op | kind | signed | standard range | wide range | magnitude -> argument |",
        "|---|---|---|---|---|---|",
    ]
    for op in OPS.values():
        std = fmt(*op.range(False)) if op.has_magnitude else "-"
        wide = fmt(*WIDE_RANGES[op.name]) if op.name in WIDE_RANGES else "(standard)"
        if not op.has_magnitude:
            wide = "-"
        signed = "yes" if op.signed else "no"
        lines.append(f"| {op.name} | {op.kind} | {signed} | {std} | {wide} | {op.description} |")
    return "\n".join(lines) + "\n"
