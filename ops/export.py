"""Exporters: torchvision v2 objects, albumentations pipelines, timm strings, code snippets.

One module per framework: :mod:`ops.tv_export` and :mod:`ops.tv_code` (exact),
:mod:`ops.album_export` and :mod:`ops.timm_export` (those libraries have their own op
implementations, so their exports approximate; docs/ops.md lists how). Every snippet imports only its framework, never augsearch.
Batch mixing (``policy.mix``) is not part of a per-image transform and is never exported.
"""

from __future__ import annotations

import pprint
from typing import Literal

from ops.album_export import to_albumentations, to_albumentations_dict
from ops.policy import Policy
from ops.timm_export import timm_code, to_timm
from ops.tv_code import torchvision_code
from ops.tv_export import to_torchvision

__all__ = [
    "Framework",
    "to_albumentations",
    "to_albumentations_dict",
    "to_python_snippet",
    "to_timm",
    "to_torchvision",
]

Framework = Literal["torchvision", "albumentations", "timm"]


def to_python_snippet(policy: Policy, framework: Framework) -> str:
    """Return paste-able Python that builds ``transform`` with the given framework only.

    Raises:
        ValueError: For an unknown framework, or an op the framework cannot express.
    """
    if framework == "torchvision":
        return torchvision_code(policy)
    if framework == "albumentations":
        data = pprint.pformat(to_albumentations_dict(policy), width=100, sort_dicts=False)
        return f"import albumentations as A\n\ntransform = A.from_dict({data})\n"
    if framework == "timm":
        return timm_code(policy)
    raise ValueError(f"unknown framework {framework!r}; use torchvision, albumentations or timm")
