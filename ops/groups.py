"""Applying one op slot to a batch: rows are grouped by what they drew, one call per group.

In a slot every sample drew one op. Sorting the rows by op makes each op's rows a contiguous
block, so every op runs once on exactly the rows that drew it (its cost follows its share of the
batch), and rows that drew no change are never touched. All geometric ops of a slot form one
group: a single affine warp with a per-row matrix. Consecutive slots compose their row orders,
so the rows are put back in place only once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ops.catalogue import OpDef
from ops.functional import warp_affine

#: On CPU the applier processes blocks of rows holding about this many pixels at a time.
SLOT_BLOCK_PIXELS = 2**20


@dataclass(frozen=True)
class SlotParams:
    """One op slot of every sample.

    Attributes:
        op_index: (N,) index into :attr:`ops.apply.AugmentParams.ops` of the op each sample drew.
        apply: (N,) whether the op is applied (the probability outcome).
        arg: (N,) the op's final argument (signed, in pixels where the range is relative).
        centre: (N, 2) uniform draws placing ops such as Cutout.
    """

    op_index: Tensor
    apply: Tensor
    arg: Tensor
    centre: Tensor


@dataclass(frozen=True)
class PreparedSlot:
    """One slot's parameters on the images' device, ready for grouping.

    Attributes:
        key: (N,) group of each row; the last group means "unchanged".
        arg: (N,) op arguments.
        centre: (N, 2) uniform draws for ops placed at random positions.
        theta: (N, 2, 3) inverse affine matrices (used by rows of the geometric group).
    """

    key: Tensor
    arg: Tensor
    centre: Tensor
    theta: Tensor

    def select(self, rows: Tensor | slice) -> PreparedSlot:
        """Return the slot restricted to (and ordered as) ``rows``."""
        return PreparedSlot(self.key[rows], self.arg[rows], self.centre[rows], self.theta[rows])


@dataclass(frozen=True)
class SlotGroups:
    """How a policy's ops are grouped within a slot.

    Attributes:
        defs: The policy's ops, in op-index order.
        key_of_op: (ops,) group of each op index.
        group_ops: The op run by each non-geometric group (None for the geometric group 0).
    """

    defs: tuple[OpDef, ...]
    key_of_op: Tensor
    group_ops: tuple[OpDef | None, ...]

    @staticmethod
    def build(defs: tuple[OpDef, ...]) -> SlotGroups:
        """Group 0 holds every geometric op, then one group per other op, then "unchanged"."""
        group_ops: list[OpDef | None] = [None]
        keys: list[int] = []
        for op in defs:
            if op.matrix is not None:
                keys.append(0)
            elif op.name == "Identity":
                keys.append(-1)
            else:
                keys.append(len(group_ops))
                group_ops.append(op)
        unchanged = len(group_ops)
        key_of_op = torch.tensor([unchanged if k < 0 else k for k in keys], dtype=torch.long)
        return SlotGroups(defs, key_of_op, tuple(group_ops))

    @property
    def num_groups(self) -> int:
        """Number of groups, the "unchanged" group included."""
        return len(self.group_ops) + 1

    def prepare(
        self, slot: SlotParams, device: torch.device, height: int, width: int
    ) -> PreparedSlot:
        """Move a slot's parameters to ``device`` and compute row groups and matrices."""
        op_index, apply = slot.op_index.to(device), slot.apply.to(device)
        arg, centre = slot.arg.to(device), slot.centre.to(device)
        unchanged = torch.full_like(op_index, self.num_groups - 1)
        key = torch.where(apply, self.key_of_op.to(device)[op_index], unchanged)
        theta = torch.eye(2, 3, device=device).expand(len(arg), 2, 3)
        for k, op in enumerate(self.defs):
            if op.matrix is not None:
                matrix = op.matrix(arg.to(torch.float32), height, width)
                theta = torch.where((op_index == k).view(-1, 1, 1), matrix, theta)
        return PreparedSlot(key, arg, centre, theta)

    def apply(self, images: Tensor, slots: list[PreparedSlot], out: Tensor) -> None:
        """Apply ``slots`` in order to ``images`` and write the result into ``out``."""
        buffer, perm = images, None
        for slot in slots:
            key = slot.key if perm is None else slot.key[perm]
            counts = torch.bincount(key, minlength=self.num_groups).tolist()
            if counts[-1] == len(key):
                continue  # no row changes in this slot
            order = torch.argsort(key, stable=True)
            perm = order if perm is None else perm[order]
            buffer = buffer.index_select(0, order)  # a private copy, changed in place below
            self._run_groups(buffer, counts, slot.select(perm))
        if perm is None:
            out.copy_(images)
        else:
            torch.index_select(buffer, 0, torch.argsort(perm), out=out)

    def _run_groups(self, buffer: Tensor, counts: list[int], slot: PreparedSlot) -> None:
        start = 0
        for group, count in enumerate(counts[:-1]):
            rows = slice(start, start + count)
            start += count
            if not count:
                continue
            op = self.group_ops[group]
            if op is None:
                buffer[rows] = warp_affine(buffer[rows], slot.theta[rows])
            elif op.needs_centre:
                buffer[rows] = op.fn(buffer[rows], slot.arg[rows], centre=slot.centre[rows])
            else:
                buffer[rows] = op.fn(buffer[rows], slot.arg[rows])
