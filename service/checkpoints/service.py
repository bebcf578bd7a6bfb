"""Final checkpoints: locating the safetensors artifact, its model card, verified downloads."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from service.checkpoints import repository
from service.db.models import CheckpointRecord, CheckpointVariant, User
from service.errors import Conflict, NotFound
from service.searches import service as searches
from service.settings import Settings

logger = logging.getLogger(__name__)
CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    with path.open("rb") as handle:
        return _sha256_of_handle(handle)


def _sha256_of_handle(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def checkpoint_dir(settings: Settings) -> Path:
    """Where the reconciler copies final checkpoints (the only place downloads come from)."""
    return settings.data_dir / "checkpoints"


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


def _refuse(record: CheckpointRecord | CheckpointVariant, why: str) -> Conflict:
    logger.error("checkpoint of search %s refused: %s (%s)", record.search_id, why, record.path)
    return Conflict(f"the checkpoint of search {record.search_id} is refused: {why}")


def open_verified(
    record: CheckpointRecord | CheckpointVariant, settings: Settings
) -> tuple[BinaryIO, int]:
    """Open a checkpoint (or a variant) whose bytes hash to the sha256 recorded when written.

    The file is hashed through the handle that is then streamed, so what is served is what
    was checked (files are replaced atomically, never rewritten in place).

    Returns:
        The open handle, at offset 0, and the file size.

    Raises:
        Conflict: the file lies outside the checkpoint folder or its bytes changed since they
            were recorded (the event is logged).
    """
    if record.path is None or record.sha256 is None:
        raise NotFound(f"search {record.search_id} has no file of this checkpoint yet")
    real = Path(os.path.realpath(record.path))
    if not real.is_relative_to(Path(os.path.realpath(checkpoint_dir(settings)))):
        raise _refuse(record, "its file lies outside the checkpoint folder")
    handle = real.open("rb")
    try:
        actual = _sha256_of_handle(handle)
        if not hmac.compare_digest(actual, str(record.sha256)):
            raise _refuse(record, f"its bytes hash to {actual}, not the recorded {record.sha256}")
        size = handle.tell()
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle, size


def iter_and_close(handle: BinaryIO) -> Iterator[bytes]:
    """Stream an open file in chunks and close it at the end (or when the client leaves)."""
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk
