"""The per-image applier: one image's parameters drawn in Python, its ops run on it alone.

A DataLoader calls its transform once per image. There the batched applier's fixed costs
(a tensor per random draw, per-sample table gathers, grouping and sorting rows) outweigh the
ops themselves on small images, so this path draws every uniform number an image needs in one
generator call, looks its arguments up in tables built once per image size, and runs each op's
function from :mod:`ops.functional` directly. A warp's costly part that does not depend on the
pixels, its gather index, comes from a bounded cache keyed by op and argument: policies with
fixed magnitudes (presets, sub-policies, TrivialAugment's bins) nearly always hit it. PIL
images stay PIL and go through :mod:`ops.pil_ops` with the same parameters.

Ops are drawn at the same rates and with the same magnitudes as by
:class:`ops.apply.BatchAugmenter` (the same :class:`~ops.arguments.ArgumentTable`), and given the
same parameters both appliers produce the same pixels on tensors; the random streams differ.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import overload

import PIL.Image
import torch
from torch import Tensor

from ops.arguments import TRIVIAL_BINS, ArgumentTable
from ops.catalogue import OPS, MatrixFn, OpDef
from ops.functional import warp_gather, warp_index
from ops.pil_ops import PilOps
from ops.policy import Policy

#: The warp index cache of one transform holds at most this many bytes (an int64 per pixel:
#: 2,048 entries at 32x32, 41 at 224x224).
WARP_CACHE_BYTES = 16 * 2**20

#: Uniform draws per image: 2 shift, 2 flip, 1 sub-policy, then :data:`_SLOT_DRAWS` per slot.
_BASE_DRAWS = 5
#: Per slot: op, probability, 2 magnitude (one bin, or a Box-Muller pair), sign, 2 centre.
_SLOT_DRAWS = 7


@dataclass(frozen=True)
class ImageStep:
    """One op slot of one image.

    Attributes:
        op: Index into the policy's op set of the op drawn.
        apply: Whether the op is applied (the probability outcome).
        arg: The op's final argument (signed, in pixels where the range is relative).
        centre: Uniform (row, column) draws in [0, 1) placing ops such as Cutout.
    """

    op: int
    apply: bool
    arg: float
    centre: tuple[float, float]


@dataclass(frozen=True)
class ImageParams:
    """Everything random about one image, drawn by :meth:`ImageAugmenter.sample_params`.

    Attributes:
        shift: Base random-crop offset (dy, dx) in pixels.
        flip: Base flips (left-right, top-bottom).
        steps: The op slots, applied in order.
    """

    shift: tuple[int, int]
    flip: tuple[bool, bool]
    steps: tuple[ImageStep, ...]


class _WarpCache:
    """Least recently used warp gather indices, bounded in bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._entries: OrderedDict[tuple[object, ...], Tensor] = OrderedDict()
        self._bytes = 0

    @property
    def cached_bytes(self) -> int:
        """Bytes the cached indices take."""
        return self._bytes

    def index(self, key: tuple[object, ...], theta: Callable[[], Tensor], h: int, w: int) -> Tensor:
        """Return the (1, 1, h * w) index of ``key``, computing it from ``theta()`` on a miss."""
        index = self._entries.get(key)
        if index is not None:
            self._entries.move_to_end(key)
            return index
        index = warp_index(theta(), h, w)
        size = index.numel() * index.element_size()
        while self._entries and self._bytes + size > self.budget:
            evicted = self._entries.popitem(last=False)[1]
            self._bytes -= evicted.numel() * evicted.element_size()
        if size <= self.budget:
            self._entries[key] = index
            self._bytes += size
        return index


class ImageAugmenter:
    """Apply a policy to one image at a time: a (C, H, W) uint8/float tensor or an L/RGB PIL image.

    Args:
        policy: The policy; its ``base`` crop/flips run first, then its ops.
    """

    def __init__(self, policy: Policy) -> None:
        policy.require_image(type(self).__name__)
        self.policy = policy
        self.ops: tuple[str, ...] = policy.op_set
        self._defs: tuple[OpDef, ...] = tuple(OPS[name] for name in self.ops)
        self._signed = [op.signed and op.has_magnitude for op in self._defs]
        # Sub-policy steps as (op index, probability, magnitude) per slot and sub-policy; a
        # missing step of a short sub-policy never applies.
        subs = policy.sub_policies
        depth = max((len(sub) for sub in subs), default=0)
        self._steps = [
            [
                (self.ops.index(sub[j].op), sub[j].p, sub[j].magnitude)
                if j < len(sub)
                else (0, 0.0, 0.0)
                for sub in subs
            ]
            for j in range(depth)
        ]
        slots = {"subpolicies": depth, "randaugment": policy.n, "trivialaugment": 1}
        self.num_slots: int = slots.get(policy.kind, 0)
        self._draws = _BASE_DRAWS + _SLOT_DRAWS * self.num_slots
        self._tables: dict[tuple[int, int], tuple[ArgumentTable, list[list[float]]]] = {}
        self._warps = _WarpCache(WARP_CACHE_BYTES)
        self._arg_tensors: dict[float, Tensor] = {}
        self._pil = PilOps(self._defs)

    @property
    def warp_cache_bytes(self) -> int:
        """Bytes held by the cache of warp indices (at most :data:`WARP_CACHE_BYTES`)."""
        return self._warps.cached_bytes

    def sample_params(self, generator: torch.Generator, image_size: tuple[int, int]) -> ImageParams:
        """Draw the random parameters of one image of ``image_size`` (height, width)."""
        u = torch.rand(self._draws, generator=generator, dtype=torch.float64).tolist()
        base = self.policy.base
        pad = base.crop_padding
        shift = (int(u[0] * (2 * pad + 1)) - pad, int(u[1] * (2 * pad + 1)) - pad)
        flip = (base.hflip and u[2] < 0.5, base.vflip and u[3] < 0.5)
        if not self.num_slots:
            return ImageParams(shift, flip, ())
        pick = int(u[4] * len(self.policy.sub_policies))
        table = self._table(image_size)
        steps = []
        for j in range(self.num_slots):
            draws = u[_BASE_DRAWS + _SLOT_DRAWS * j : _BASE_DRAWS + _SLOT_DRAWS * (j + 1)]
            op, apply, arg = self._draw(j, pick, draws, table)
            if self._signed[op] and draws[4] < 0.5:
                arg = -arg
            steps.append(ImageStep(op, apply, arg, (draws[5], draws[6])))
        return ImageParams(shift, flip, tuple(steps))

    def _draw(
        self,
        j: int,
        pick: int,
        draws: list[float],
        table: tuple[ArgumentTable, list[list[float]]],
    ) -> tuple[int, bool, float]:
        """(op index, applied, unsigned argument) of slot ``j`` from its uniform ``draws``."""
        policy, (arguments, fixed) = self.policy, table
        if self._steps:
            op, p, _ = self._steps[j][pick]
            return op, draws[1] < p, fixed[j][pick]
        op = int(draws[0] * len(self.ops))
        apply = draws[1] < policy.p
        if policy.kind == "trivialaugment":
            return op, apply, fixed[op][int(draws[2] * TRIVIAL_BINS)]
        if not policy.m_std:
            return op, apply, fixed[0][op]
        radius = math.sqrt(-2.0 * math.log(1.0 - draws[2]))  # Box-Muller: one normal draw
        noise = radius * math.cos(2.0 * math.pi * draws[3])
        magnitude = min(max(policy.m + noise * policy.m_std, 0.0), 1.0)
        arg = arguments.args(torch.tensor([op]), torch.tensor([magnitude]))
        return op, apply, float(arg[0])

    def _table(self, image_size: tuple[int, int]) -> tuple[ArgumentTable, list[list[float]]]:
        """The argument table of ``image_size`` and the fixed arguments it gives the policy.

        Fixed arguments: per slot and sub-policy (subpolicies), per op and bin
        (trivialaugment), or one row per op at magnitude ``m`` (randaugment).
        """
        if image_size not in self._tables:
            policy = self.policy
            table = ArgumentTable.build(self._defs, policy.wide, image_size, torch.device("cpu"))
            if self._steps:
                fixed = [
                    table.args(
                        torch.tensor([s[0] for s in slot]), torch.tensor([s[2] for s in slot])
                    ).tolist()
                    for slot in self._steps
                ]
            elif policy.kind == "trivialaugment":
                fixed = table.bins.tolist()
            else:
                ops = torch.arange(len(self.ops))
                fixed = [table.args(ops, torch.full((len(self.ops),), policy.m)).tolist()]
            self._tables[image_size] = (table, fixed)
        return self._tables[image_size]

    @overload
    def __call__(self, image: Tensor, generator: torch.Generator) -> Tensor: ...
    @overload
    def __call__(self, image: PIL.Image.Image, generator: torch.Generator) -> PIL.Image.Image: ...
    def __call__(self, image: Tensor | PIL.Image.Image, generator: torch.Generator) -> object:
        """Augment one image with parameters drawn from ``generator``."""
        size = _check_image(image)
        return self.apply_params(image, self.sample_params(generator, size))

    @overload
    def apply_params(self, image: Tensor, params: ImageParams) -> Tensor: ...
    @overload
    def apply_params(self, image: PIL.Image.Image, params: ImageParams) -> PIL.Image.Image: ...
    def apply_params(self, image: Tensor | PIL.Image.Image, params: ImageParams) -> object:
        """Apply previously drawn parameters to one image; deterministic, never in place.

        Tensors go through :mod:`ops.functional`, PIL images through :mod:`ops.pil_ops`.
        """
        _check_image(image)
        if len(params.steps) != self.num_slots:
            raise ValueError(f"params have {len(params.steps)} slots, the policy {self.num_slots}")
        if isinstance(image, PIL.Image.Image):
            return self._apply_pil(image, params)
        batch = image.unsqueeze(0)
        if any(params.shift) or any(params.flip):
            batch = self._warp(batch, ("base", params.shift, params.flip), _base_theta(params))
        for step in params.steps:
            if step.apply:
                batch = self._apply_step(batch, step)
        out = batch[0]
        # Callers may change the result in place: never hand back (a view of) the input.
        shares = out.untyped_storage().data_ptr() == image.untyped_storage().data_ptr()
        return out.clone() if shares else out

    def _apply_step(self, batch: Tensor, step: ImageStep) -> Tensor:
        op = self._defs[step.op]
        if op.matrix is not None:
            theta = _op_theta(op.matrix, step.arg, int(batch.shape[-2]), int(batch.shape[-1]))
            return self._warp(batch, (step.op, step.arg), theta)
        if op.name == "Identity":
            return batch
        arg = self._arg_tensors.get(step.arg)
        if arg is None:
            if len(self._arg_tensors) > 4096:  # continuous magnitudes: keep the memo bounded
                self._arg_tensors.clear()
            arg = self._arg_tensors[step.arg] = _scalar(step.arg)
        if op.needs_centre:
            return op.fn(batch, arg, centre=torch.tensor([step.centre]))
        return op.fn(batch, arg)

    def _warp(self, batch: Tensor, key: tuple[object, ...], theta: Callable[[], Tensor]) -> Tensor:
        h, w, dev = int(batch.shape[-2]), int(batch.shape[-1]), batch.device
        index = self._warps.index((*key, h, w, str(dev)), lambda: theta().to(dev), h, w)
        return warp_gather(batch, index)

    def _apply_pil(self, image: PIL.Image.Image, params: ImageParams) -> PIL.Image.Image:
        out = image
        if any(params.shift) or any(params.flip):
            out = self._pil.warp(out, ("base", params.shift, params.flip), _base_theta(params))
        for step in params.steps:
            if not step.apply:
                continue
            op = self._defs[step.op]
            if op.matrix is not None:
                theta = _op_theta(op.matrix, step.arg, out.height, out.width)
                out = self._pil.warp(out, (step.op, step.arg), theta)
            else:
                out = self._pil.apply(out, step.op, step.arg, step.centre)
        return out.copy() if out is image else out


def _op_theta(matrix: MatrixFn, arg: float, h: int, w: int) -> Callable[[], Tensor]:
    """The (1, 2, 3) inverse matrix of a geometric op, computed only when called."""
    return lambda: matrix(_scalar(arg), h, w)


def _base_theta(params: ImageParams) -> Callable[[], Tensor]:
    # Output x reads input sign * x + shift: a padded crop followed by a flip (as batched).
    (dy, dx), (flip_x, flip_y) = params.shift, params.flip
    sx, sy = (-1.0 if flip_x else 1.0), (-1.0 if flip_y else 1.0)
    return lambda: torch.tensor([[[sx, 0.0, float(dx)], [0.0, sy, float(dy)]]])


def _scalar(value: float) -> Tensor:
    return torch.tensor([value], dtype=torch.float32)


def _check_image(image: Tensor | PIL.Image.Image) -> tuple[int, int]:
    """Return the (height, width) of a (C, H, W) uint8/float tensor or an L/RGB PIL image."""
    if isinstance(image, PIL.Image.Image):
        if image.mode not in ("L", "RGB"):
            raise ValueError(f"PIL images must be mode L or RGB, got {image.mode}")
        return image.height, image.width
    if not isinstance(image, Tensor) or image.ndim != 3:
        raise ValueError("image must be a (C, H, W) tensor or a PIL image")
    if image.dtype != torch.uint8 and not image.is_floating_point():
        raise TypeError(f"image must be uint8 or floating point, got {image.dtype}")
    return int(image.shape[-2]), int(image.shape[-1])
