"""Appliers: the batched per-sample applier and the per-image transform.

Every sample draws its own op, probability outcome and magnitude. Sampling and applying are
separate (:meth:`BatchAugmenter.sample_params` / :meth:`BatchAugmenter.apply_params`) so the
batched result can be checked image by image against the same parameters. Applying never loops
over samples: in each op slot the rows are grouped by the op they drew (:mod:`ops.groups`), all
rows with a geometric op share one affine warp, and each other op runs once on its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, overload

import PIL.Image
import torch
from torch import Tensor

from ops.arguments import TRIVIAL_BINS, ArgumentTable
from ops.catalogue import OPS, OpDef
from ops.functional import warp_affine
from ops.groups import SLOT_BLOCK_PIXELS, SlotGroups, SlotParams
from ops.image import ImageAugmenter
from ops.policy import Policy


@dataclass(frozen=True)
class AugmentParams:
    """Everything random about one batch, drawn by :meth:`BatchAugmenter.sample_params`.

    Attributes:
        ops: The op names slot indices refer to.
        shift: (N, 2) base random-crop offsets (dy, dx) in pixels.
        flip: (N, 2) base flips (left-right, top-bottom).
        slots: The op slots, applied in order.
    """

    ops: tuple[str, ...]
    shift: Tensor
    flip: Tensor
    slots: tuple[SlotParams, ...]

    def select(self, rows: Tensor | slice | int) -> AugmentParams:
        """Return the parameters of the given samples only."""
        if isinstance(rows, int):
            rows = slice(rows, rows + 1)
        slots = tuple(
            SlotParams(s.op_index[rows], s.apply[rows], s.arg[rows], s.centre[rows])
            for s in self.slots
        )
        return AugmentParams(self.ops, self.shift[rows], self.flip[rows], slots)


class BatchAugmenter:
    """Apply a policy to (N, C, H, W) uint8 or float batches, independently per sample.

    Args:
        policy: The policy; its ``base`` crop/flips run first, then its ops.
    """

    def __init__(self, policy: Policy) -> None:
        policy.require_image(type(self).__name__)
        self.policy = policy
        self.ops: tuple[str, ...] = policy.op_set
        self._defs: tuple[OpDef, ...] = tuple(OPS[name] for name in self.ops)
        self._tables = self._subpolicy_tables() if policy.kind == "subpolicies" else None
        self._arg_tables: dict[tuple[tuple[int, int], str], ArgumentTable] = {}
        self._groups = SlotGroups.build(self._defs)

    def _subpolicy_tables(self) -> tuple[Tensor, Tensor, Tensor]:
        subs = self.policy.sub_policies
        depth = max(len(sub) for sub in subs)
        index = torch.zeros(depth, len(subs), dtype=torch.long)
        prob = torch.zeros(depth, len(subs))  # missing steps of short sub-policies never apply
        mag = torch.zeros(depth, len(subs))
        for k, sub in enumerate(subs):
            for j, step in enumerate(sub):
                index[j, k] = self.ops.index(step.op)
                prob[j, k] = step.p
                mag[j, k] = step.magnitude
        return index, prob, mag

    @property
    def num_slots(self) -> int:
        """How many ops each sample goes through."""
        if self._tables is not None:
            return int(self._tables[0].shape[0])
        return {"randaugment": self.policy.n, "trivialaugment": 1}.get(self.policy.kind, 0)

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """Augment a batch with parameters drawn from ``generator``."""
        _check_batch(images)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        return self.apply_params(images, self.sample_params(images.shape[0], generator, size))

    def sample_params(
        self, n: int, generator: torch.Generator, image_size: tuple[int, int]
    ) -> AugmentParams:
        """Draw the random parameters of ``n`` samples of size ``image_size`` (height, width)."""
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        dev = generator.device
        base = self.policy.base
        pad = base.crop_padding
        shift = torch.randint(-pad, pad + 1, (n, 2), generator=generator, device=dev)
        flip = torch.rand(n, 2, generator=generator, device=dev) < 0.5
        flip &= torch.tensor([base.hflip, base.vflip], device=dev)
        # One sub-policy per sample, shared by all of its slots.
        pick = None
        if self._tables is not None:
            pick = torch.randint(self._tables[0].shape[1], (n,), generator=generator, device=dev)
        slots = tuple(
            self._sample_slot(j, n, generator, image_size, pick) for j in range(self.num_slots)
        )
        return AugmentParams(self.ops, shift, flip, slots)

    def _draw(
        self, j: int, n: int, gen: torch.Generator, pick: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Draw (op_index, apply, magnitude) of slot ``j`` for ``n`` samples."""
        dev, policy = gen.device, self.policy
        if self._tables is not None and pick is not None:
            index, prob, mag = (t[j].to(dev) for t in self._tables)
            apply = torch.rand(n, generator=gen, device=dev) < prob[pick]
            return index[pick], apply, mag[pick]
        op_index = torch.randint(len(self.ops), (n,), generator=gen, device=dev)
        apply = torch.rand(n, generator=gen, device=dev) < policy.p
        if policy.kind == "trivialaugment":
            bins = torch.randint(TRIVIAL_BINS, (n,), generator=gen, device=dev)
            return op_index, apply, bins
        noise = torch.randn(n, generator=gen, device=dev) * policy.m_std
        return op_index, apply, (policy.m + noise).clamp_(0.0, 1.0)

    def _sample_slot(
        self, j: int, n: int, gen: torch.Generator, image_size: tuple[int, int], pick: Tensor | None
    ) -> SlotParams:
        op_index, apply, magnitude = self._draw(j, n, gen, pick)
        dev = gen.device
        negative = torch.rand(n, generator=gen, device=dev) < 0.5
        centre = torch.rand(n, 2, generator=gen, device=dev)
        table = self._arg_table(image_size, dev)
        if magnitude.dtype == torch.long:  # TrivialAugment bins: torchvision's exact tables
            arg = table.bins[op_index, magnitude]
        else:
            arg = table.args(op_index, magnitude)
        arg = torch.where(negative & table.signed[op_index], -arg, arg)
        return SlotParams(op_index, apply, arg, centre)

    def _arg_table(self, image_size: tuple[int, int], device: torch.device) -> ArgumentTable:
        key = (image_size, str(device))
        if key not in self._arg_tables:
            self._arg_tables[key] = ArgumentTable.build(
                self._defs, self.policy.wide, image_size, device
            )
        return self._arg_tables[key]

    def apply_params(self, images: Tensor, params: AugmentParams) -> Tensor:
        """Apply previously drawn parameters; deterministic."""
        _check_batch(images)
        if params.ops != self.ops:
            raise ValueError("params were drawn for another policy's op set")
        n = images.shape[0]
        if params.shift.shape[0] != n:
            raise ValueError(f"params are for {params.shift.shape[0]} samples, not {n}")
        base = self._apply_base(images, params)
        if not params.slots or n == 0:
            return base
        dev = images.device
        height, width = images.shape[-2:]
        slots = [self._groups.prepare(s, dev, height, width) for s in params.slots]
        out = torch.empty(images.shape, dtype=images.dtype, device=dev)
        # On CPU, rows go through all slots block by block: every temporary stays small, in
        # cache and under the allocator's mmap threshold (which page-faults on every call).
        step = n if dev.type != "cpu" else max(1, SLOT_BLOCK_PIXELS // (height * width))
        for start in range(0, n, step):
            rows = slice(start, start + step)
            self._groups.apply(base[rows], [s.select(rows) for s in slots], out[rows])
        return out

    def _apply_base(self, images: Tensor, params: AugmentParams) -> Tensor:
        base = self.policy.base
        if not (base.crop_padding or base.hflip or base.vflip):
            return images
        dev = images.device
        shift, flip = params.shift.to(dev, torch.float32), params.flip.to(dev)
        sign = 1.0 - 2.0 * flip.float()
        zero = torch.zeros_like(sign[:, 0])
        # Output x reads input sign * x + shift: a padded crop followed by a flip.
        row_x = torch.stack((sign[:, 0], zero, shift[:, 1]), dim=-1)
        row_y = torch.stack((zero, sign[:, 1], shift[:, 0]), dim=-1)
        return warp_affine(images, torch.stack((row_x, row_y), dim=1))


def _check_batch(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise ValueError("images must be a (N, C, H, W) tensor")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")


class PolicyTransform:
    """Per-image transform for DataLoader pipelines (PIL images or uint8 CHW tensors).

    Runs :class:`ops.image.ImageAugmenter` (the same ops, rates and magnitudes as the batched
    applier, without its per-batch costs) and returns the input's type. The generator is
    seeded from ``seed`` (or OS entropy) mixed with the DataLoader worker id, so workers draw
    different but reproducible streams.

    Args:
        policy: The policy to apply.
        seed: Seed for reproducible augmentation; None draws one from the OS.
    """

    def __init__(self, policy: Policy, seed: int | None = None) -> None:
        self.augmenter = ImageAugmenter(policy)
        self.seed = seed
        self._generators: dict[int, torch.Generator] = {}

    def _generator(self) -> torch.Generator:
        info = torch.utils.data.get_worker_info()
        worker = -1 if info is None else info.id
        if worker not in self._generators:
            gen = torch.Generator()
            if self.seed is None:
                gen.seed()
            else:
                gen.manual_seed((self.seed * 1_000_003 + worker + 1) % (2**63))
            self._generators[worker] = gen
        return self._generators[worker]

    @overload
    def __call__(self, image: PIL.Image.Image) -> PIL.Image.Image: ...
    @overload
    def __call__(self, image: Tensor) -> Tensor: ...
    def __call__(self, image: Any) -> Any:
        """Augment one image, returning the same type."""
        if isinstance(image, PIL.Image.Image):
            return self.augmenter(image, self._generator())
        if isinstance(image, Tensor):
            if image.ndim != 3 or image.dtype != torch.uint8:
                raise ValueError("tensor images must be uint8 (C, H, W)")
            return self.augmenter(image, self._generator())
        raise TypeError(f"expected a PIL image or a uint8 tensor, got {type(image).__name__}")

    def __repr__(self) -> str:
        return f"PolicyTransform(kind={self.augmenter.policy.kind!r}, seed={self.seed})"
