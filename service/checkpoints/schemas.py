"""Response models of the checkpoints API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Bounds of the pruned variant's sparsity (``search.compress.variants``: the API imports no torch).
MIN_SPARSITY, MAX_SPARSITY, DEFAULT_SPARSITY = 0.05, 0.95, 0.5


class CheckpointRead(BaseModel):
    """A search's final checkpoint: its checksum and model card."""

    model_config = ConfigDict(from_attributes=True)
    search_id: int
    artifact_id: str
    sha256: str
    card: dict[str, Any]
    created_at: datetime


class VariantCreate(BaseModel):
    """A request for a compressed variant of a search's final checkpoint.

    Attributes:
        format: ``onnx``, ``int8`` (static post-training quantization) or ``pruned``.
        sparsity: ``pruned`` only: the share of convolution and linear weights set to zero
            (default 0.5).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    format: Literal["onnx", "int8", "pruned"]
    sparsity: float | None = Field(default=None, ge=MIN_SPARSITY, le=MAX_SPARSITY)


class VariantRead(BaseModel):
    """A compressed variant: its job's state and, once ready, its checksum and card.

    ``card`` holds size on disk, validation accuracy and CPU latency per image, each beside
    the float model's, plus the ONNX opset, quantization mode or sparsity reached.
    """

    model_config = ConfigDict(from_attributes=True)
    search_id: int
    name: str
    format: str
    sparsity: float | None
    state: str
    sha256: str | None
    card: dict[str, Any]
    error: str | None
    download_url: str
    created_at: datetime
    updated_at: datetime
