"""Magnitudes to op arguments for one image size: the table both appliers draw from.

:meth:`ArgumentTable.args` is the float32 form of :meth:`ops.catalogue.OpDef.magnitude_to_arg`
gathered per sample, and :attr:`ArgumentTable.bins` holds torchvision's TrivialAugment tables,
so the batched and the per-image appliers turn a magnitude into the same argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ops.catalogue import OpDef

#: TrivialAugment draws its magnitude from this many evenly spaced bins (torchvision's default).
TRIVIAL_BINS = 31


@dataclass(frozen=True)
class ArgumentTable:
    """Per-op constants turning magnitudes into arguments for one image size and device.

    Rows with no magnitude (``has_magnitude`` false) have zero low, span and bins.
    """

    low: Tensor
    span: Tensor
    scale: Tensor
    rounding: Tensor  # 0 none, 1 round, 2 trunc
    signed: Tensor
    bins: Tensor  # (ops, TRIVIAL_BINS) TrivialAugment arguments

    @staticmethod
    def build(
        defs: tuple[OpDef, ...], wide: bool, image_size: tuple[int, int], device: torch.device
    ) -> ArgumentTable:
        """Build the table of ``defs`` for images of ``image_size`` (height, width)."""
        height, width = image_size
        rows: list[tuple[float, float, float, int]] = []
        bins = torch.zeros(len(defs), TRIVIAL_BINS)
        for k, op in enumerate(defs):
            if not op.has_magnitude:
                rows.append((0.0, 0.0, 1.0, 0))
                continue
            size = {"TranslateY": height, "Cutout": min(height, width)}.get(op.name, width)
            low, high, relative = op.range(wide)
            mode = {"none": 0, "round": 1, "trunc": 2}[op.rounding]
            rows.append((low, high - low, float(size) if relative else 1.0, mode))
            bins[k] = op.bin_to_arg(torch.arange(TRIVIAL_BINS), TRIVIAL_BINS, wide, size)
        columns = list(zip(*rows, strict=True))
        signed = [op.signed and op.has_magnitude for op in defs]
        return ArgumentTable(
            low=torch.tensor(columns[0], device=device),
            span=torch.tensor(columns[1], device=device),
            scale=torch.tensor(columns[2], device=device),
            rounding=torch.tensor(columns[3], device=device),
            signed=torch.tensor(signed, device=device),
            bins=bins.to(device),
        )

    def args(self, op_index: Tensor, magnitude: Tensor) -> Tensor:
        """Unsigned arguments of ops ``op_index`` at ``magnitude``s in [0, 1] (float32).

        low + m * (high - low), times the side for relative ranges: the float32 steps of
        :meth:`OpDef.magnitude_to_arg`, gathered per sample instead of looped over ops.
        """
        arg = self.low[op_index] + magnitude * self.span[op_index]
        arg = arg * self.scale[op_index]
        mode = self.rounding[op_index]
        return torch.where(mode == 1, arg.round(), torch.where(mode == 2, arg.trunc(), arg))
