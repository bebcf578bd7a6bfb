"""Response models of the ops catalogue and presets."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class OpRange(BaseModel):
    """The argument range an op's magnitude in [0, 1] maps onto (linearly)."""

    low: float
    high: float
    relative_to_image_size: bool


class OpRead(BaseModel):
    """One augmentation op and its magnitude semantics."""

    name: str
    kind: str
    signed: bool
    has_magnitude: bool
    standard: bool
    range: OpRange
    wide_range: OpRange | None
    description: str


class PresetRead(BaseModel):
    """A preset policy (published AutoAugment tables, RandAugment, TrivialAugmentWide)."""

    name: str
    policy: dict[str, Any]
    description: list[str]
    timm: str | None
