"""Final checkpoints: locating the safetensors artifact and its model card."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy.orm import Session

from service.checkpoints import repository
from service.db.models import CheckpointRecord, User
from service.errors import NotFound
from service.searches import service as searches


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def get(session: Session, search_id: int, user: User) -> CheckpointRecord:
    """The checkpoint record of a search the caller may see.

    Raises:
        NotFound: unknown search, or no checkpoint recorded yet, or the file is gone.
    """
    search = searches.get(session, search_id, user)
    record = repository.for_search(session, search.id)
    if record is None:
        raise NotFound(f"search {search_id} has no checkpoint yet (it is {search.state})")
    if not Path(record.path).is_file():
        raise NotFound(f"the checkpoint file of search {search_id} is missing from the store")
    return record
