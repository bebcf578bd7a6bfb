"""The ops catalogue and presets, read from ``ops`` (the single source of truth)."""

from __future__ import annotations

from functools import cache

from service.catalogue.schemas import OpRange, OpRead, PresetRead


@cache
def list_ops() -> tuple[OpRead, ...]:
    """Every op with its standard and wide ranges (static data: computed once)."""
    from ops.catalogue import OPS, STANDARD_OPS, WIDE_RANGES

    out = []
    for op in OPS.values():
        low, high, rel = op.range(False)
        wide = WIDE_RANGES.get(op.name)
        out.append(
            OpRead(
                name=op.name,
                kind=op.kind,
                signed=op.signed,
                has_magnitude=op.has_magnitude,
                standard=op.name in STANDARD_OPS,
                range=OpRange(low=low, high=high, relative_to_image_size=rel),
                wide_range=OpRange(low=wide[0], high=wide[1], relative_to_image_size=wide[2])
                if wide
                else None,
                description=op.description,
            )
        )
    return tuple(out)


@cache
def list_presets() -> tuple[PresetRead, ...]:
    """Every preset policy with its description and timm string where one exists."""
    from ops.presets import PRESETS

    out = []
    for name, policy in PRESETS.items():
        try:
            timm: str | None = policy.to_timm()
        except ValueError:
            timm = None
        out.append(
            PresetRead(
                name=name,
                policy=policy.model_dump(mode="json"),
                description=policy.describe(),
                timm=timm,
            )
        )
    return tuple(out)
