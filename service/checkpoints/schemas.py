"""Response models of the checkpoints API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class CheckpointRead(BaseModel):
    """A search's final checkpoint: its checksum and model card."""

    model_config = ConfigDict(from_attributes=True)
    search_id: int
    artifact_id: str
    sha256: str
    card: dict[str, Any]
    created_at: datetime
