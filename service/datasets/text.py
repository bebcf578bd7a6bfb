"""Text datasets: the built-in ``wordnet-topics`` and ``text-table`` files (server path or upload).

Reading and checking is ``search.text``'s (caps of `search.text.dataset.TextLimits`, a bad row
refused by its number); a failure is InvalidInput (422) with the server's folders redacted. The
dataset row's image fields read 0 (``image_size``, ``channels``); ``num_images`` counts texts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from service.datasets import repository
from service.datasets.redaction import public_message
from service.datasets.schemas import DatasetCreate
from service.db.models import Dataset, User
from service.errors import Forbidden, InvalidInput
from service.settings import Settings

if TYPE_CHECKING:
    from search.text.dataset import TextDataset

TEXT_SOURCES = ("wordnet-topics", "text-table")
TEXT_TABLE_SUFFIXES = (".csv", ".jsonl", ".parquet")


def is_text_upload(filename: str) -> bool:
    """Whether an uploaded file's name is a text table's."""
    return filename.lower().endswith(TEXT_TABLE_SUFFIXES)


def text_spec(body: DatasetCreate, user: User, settings: Settings) -> dict[str, Any]:
    """The dataset spec of a text registration (a server path: admins, under a root)."""
    if body.source == "wordnet-topics":
        spec: dict[str, Any] = {"source": "wordnet-topics"}
        if body.topics is not None:
            spec["topics"] = body.topics
        if body.per_class is not None:
            spec["per_class"] = body.per_class
        return spec
    if not user.is_admin:
        raise Forbidden("only admins may register server paths")
    from service.datasets.service import resolve_file_under_root

    raw = body.path or ""
    return {"source": "text-table", "path": str(resolve_file_under_root(raw, settings,
                                                                         TEXT_TABLE_SUFFIXES))}  # fmt: skip


def decode_text(spec: dict[str, Any], settings: Settings, shown_as: str | None) -> TextDataset:
    """Read and check a text dataset; a failure is InvalidInput naming the user's file."""
    from pydantic import TypeAdapter

    from ops.lexicon import LexiconMissingError
    from search.datasets import DatasetError
    from search.datasets.spec import TextDatasetSpec
    from search.text.loader import load_text_dataset

    try:
        parsed = TypeAdapter(TextDatasetSpec).validate_python(spec)
        return load_text_dataset(parsed)
    except (DatasetError, LexiconMissingError, ValueError, OSError) as exc:
        names = {}
        if shown_as is not None and "path" in spec:
            names = {spec["path"]: shown_as, Path(spec["path"]).name: shown_as}
        shown = public_message(str(exc), names, settings, archive=shown_as or "the table")
        raise InvalidInput(f"cannot load dataset: {shown}") from exc


def register_text(
    session: Session, spec: dict[str, Any], name: str, user: User, settings: Settings,
    shown_as: str | None = None,
) -> Dataset:  # fmt: skip
    """Read a text dataset (slow: callers run this in a worker thread) and store it."""
    data = decode_text(spec, settings, shown_as)
    dataset = Dataset(owner_id=user.id, name=name, source=spec["source"], spec=spec)
    dataset.classes = list(data.classes)
    counts = [int((data.labels == k).sum()) for k in range(data.num_classes)]
    dataset.counts_per_class = dict(zip(data.classes, counts, strict=True))
    dataset.num_images = len(data)
    dataset.channels = 0
    dataset.image_size = 0
    dataset.content_hash = str(data.content_hash)
    dataset.state = "ready"
    return repository.add(session, dataset)


def register_text_upload(
    session: Session, table: Path, name: str, user: User, settings: Settings
) -> Dataset:
    """Register an uploaded text table; the stored file is removed if it is refused."""
    try:
        return register_text(session, {"source": "text-table", "path": str(table)}, name, user,
                             settings, shown_as=name)  # fmt: skip
    except InvalidInput:
        table.unlink(missing_ok=True)
        raise


def is_uploaded(dataset: Dataset, settings: Settings) -> bool:
    """Whether a text table's file is an upload (deleted with its dataset)."""
    path = dataset.spec.get("path")
    uploads = settings.data_dir / "uploads"
    return dataset.source == "text-table" and path is not None and Path(path).parent == uploads
