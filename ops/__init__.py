"""Augmentation ops, the policy format, appliers and exporters.

The names below are imported lazily so that ``import ops.policy`` or a light consumer does not
pay for modules it does not use (torchvision's v2 transforms are only needed for exports).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ops.apply import BatchAugmenter, PolicyTransform  # noqa: F401
    from ops.catalogue import OPS, STANDARD_OPS, OpDef, op_names  # noqa: F401
    from ops.export import (
        to_albumentations,  # noqa: F401
        to_albumentations_dict,  # noqa: F401
        to_python_snippet,  # noqa: F401
        to_timm,  # noqa: F401
        to_torchvision,  # noqa: F401
    )
    from ops.mix import mix_batch  # noqa: F401
    from ops.policy import BaseAugment, MixConfig, OpStep, Policy, load_policy  # noqa: F401
    from ops.presets import PRESETS  # noqa: F401

_EXPORTS = {
    "BatchAugmenter": "ops.apply",
    "PolicyTransform": "ops.apply",
    "OPS": "ops.catalogue",
    "STANDARD_OPS": "ops.catalogue",
    "OpDef": "ops.catalogue",
    "op_names": "ops.catalogue",
    "to_albumentations": "ops.export",
    "to_albumentations_dict": "ops.export",
    "to_python_snippet": "ops.export",
    "to_timm": "ops.export",
    "to_torchvision": "ops.export",
    "mix_batch": "ops.mix",
    "BaseAugment": "ops.policy",
    "MixConfig": "ops.policy",
    "OpStep": "ops.policy",
    "Policy": "ops.policy",
    "load_policy": "ops.policy",
    "PRESETS": "ops.presets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ops' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
