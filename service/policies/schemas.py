"""Response models of the policies API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

PolicyFormat = Literal["json", "torchvision", "albumentations", "timm", "python"]


class PolicyRead(BaseModel):
    """A searched policy and, for non-JSON formats, its export.

    Attributes:
        search_id: The search that found it.
        dataset_id: The dataset it was searched on.
        accuracy: Validation accuracy of its final training, the winner of the final pick
            (provisional: the best trial's value).
        provisional: True while the search is unfinished: the best final training so far
            once the final pick has one, else the best proxy trial.
        format: The export asked for.
        policy: The versioned policy JSON (always present).
        exported: ``torchvision``: a Python snippet; ``albumentations``: the ``A.to_dict``
            structure; ``timm``: the config string; ``python`` (text policies): a function
            needing numpy only (`ops.text_export`); ``json``: absent.
    """

    search_id: int
    dataset_id: int
    accuracy: float | None
    provisional: bool
    format: PolicyFormat
    policy: dict[str, Any]
    exported: str | dict[str, Any] | None = None
