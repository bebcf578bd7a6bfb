"""Shared pieces of the attack suite: the accounts, alice's objects, the upload cap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ops.presets import PRESETS
from service.checkpoints import repository as checkpoints
from service.checkpoints.service import checkpoint_dir, sha256_of
from service.db.models import Search
from service.policies import repository as policies
from service.runtime import Runtime

MAX_UPLOAD = 256 * 1024


@dataclass
class Accounts:
    """Bearer headers of the three accounts."""

    alice: dict[str, str]
    bob: dict[str, str]
    admin: dict[str, str]
    alice_token: str


@dataclass
class Owned:
    """Alice's objects: a dataset and a completed search with its policy and checkpoint."""

    dataset_id: int
    search_id: int
    checkpoint: Path


def complete_search(runtime: Runtime, search_id: int) -> Path:
    """Record a search as completed with a policy and a real safetensors checkpoint, as the
    reconciler does when the final trial finishes."""
    folder = checkpoint_dir(runtime.settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"search-{search_id}.safetensors"
    save_file({"w": torch.arange(16, dtype=torch.float32)}, str(path))
    policy: dict[str, Any] = PRESETS["randaugment-2-9"].model_dump(mode="json")
    with runtime.transaction() as session:
        search = session.get(Search, search_id)
        assert search is not None
        search.state = "completed"
        search.best_value = 0.9
        policies.upsert(session, search_id, search.dataset_id, policy, 0.9)
        checkpoints.upsert(
            session, search_id, "artifact-1", str(path), sha256_of(path), {"arch": "resnet8"}
        )
    return path
