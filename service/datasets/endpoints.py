"""HTTP routes of the datasets API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from service.datasets import service, text
from service.datasets.schemas import DatasetCreate, DatasetRead
from service.db.models import User
from service.deps import Caller, CurrentUser, RuntimeDep, SessionDep, SettingsDep
from service.errors import InvalidInput
from service.ids import DatasetId
from service.pagination import Page, PageDep
from service.runtime import Runtime

router = APIRouter(prefix="/datasets", tags=["datasets"])
# GET /datasets/{id}/policy, the hot read path, is registered on the application itself,
# ahead of every router (``service.app``; see ``service.policies.endpoints``).

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "name": {"type": "string"},
                        "image_size": {"type": "integer", "minimum": 8, "maximum": 512},
                    },
                }
            }
        },
    }
}


@router.post("", status_code=201)
def register_dataset(
    body: DatasetCreate, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> DatasetRead:
    """Register ``digits``, a torchvision dataset, a server ImageFolder path or a manifest,
    or a text set: the built-in ``wordnet-topics`` or a server ``text-table`` file.

    The dataset is decoded once. Splits the user fixed (``train/``, ``val/``, ``test/``
    folders, a manifest's ``split`` column) are kept for every search on it.
    """
    return DatasetRead.model_validate(service.register(session, body, user, settings))


@router.post("/upload", status_code=201, openapi_extra=_UPLOAD_SCHEMA)
async def upload_dataset(request: Request, runtime: RuntimeDep, user: Caller) -> DatasetRead:
    """Register an uploaded zip/tar archive or text table (multipart field ``file``).

    A ``.csv``, ``.jsonl`` or ``.parquet`` file is a text table (``text``, ``label``, optional
    ``group`` and ``split``); a row it refuses is named by its number (422).

    The archive holds an ImageFolder tree (class folders, or ``train/``, ``val/`` and optional
    ``test/`` folders of class folders) or a ``manifest.csv``/``manifest.parquet`` with the
    images it lists.

    The caller is authenticated before the body is read; ``service.limits`` refuses a body
    over ``max_upload_bytes`` with 413 while it streams in.
    """
    settings = runtime.settings
    async with request.form(max_files=1, max_fields=4) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise InvalidInput("multipart field 'file' with a file name is required")
        name = str(form.get("name") or Path(upload.filename).name)[:200]
        image_size = _image_size_field(form.get("image_size"))
        archive = await run_in_threadpool(
            service.store_upload, upload.file, upload.filename, settings
        )
    return await run_in_threadpool(_register_archive, runtime, user, archive, name, image_size)


def _image_size_field(raw: object) -> int | None:
    if raw is None:
        return None
    ok = isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 4
    if not (ok and 8 <= int(str(raw)) <= 512):
        raise InvalidInput("image_size must be an integer between 8 and 512")
    return int(str(raw))


def _register_archive(
    runtime: Runtime, user: User, archive: Path, name: str, image_size: int | None
) -> DatasetRead:
    # The upload route parses its own body, so it opens its own unit of work instead of the
    # request-scoped session.
    with runtime.transaction() as session:
        if text.is_text_upload(archive.name):
            dataset = text.register_text_upload(session, archive, name, user, runtime.settings)
        else:
            dataset = service.register_archive(
                session, archive, name, image_size, user, runtime.settings
            )
        return DatasetRead.model_validate(dataset)


@router.get("")
def list_datasets(session: SessionDep, user: CurrentUser, page: PageDep) -> Page[DatasetRead]:
    """The datasets the caller may see, newest first."""
    rows, total = service.list_page(session, user, page.offset, page.limit)
    items = [DatasetRead.model_validate(r) for r in rows]
    return Page[DatasetRead](items=items, total=total, offset=page.offset, limit=page.limit)


@router.get("/{dataset_id}")
def show_dataset(dataset_id: DatasetId, session: SessionDep, user: CurrentUser) -> DatasetRead:
    """One dataset with its counts per class, image size and channels."""
    return DatasetRead.model_validate(service.get(session, dataset_id, user))


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(
    dataset_id: DatasetId, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> None:
    """Delete a dataset; refused (409) while a search refers to it."""
    service.delete(session, dataset_id, user, settings)


@router.get(
    "/{dataset_id}/samples.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def dataset_samples(
    dataset_id: DatasetId, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    """A PNG grid of sample images, one row per class."""
    dataset = service.get(session, dataset_id, user)
    return Response(service.samples_png(dataset, settings), media_type="image/png")
