"""HTTP routes of unlabelled image sets and self-training jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from starlette.datastructures import UploadFile

from service.checkpoints import service as checkpoints
from service.datasets import service as datasets
from service.db.models import User
from service.deps import Caller, CurrentUser, RuntimeDep, SessionDep, SettingsDep
from service.errors import InvalidInput
from service.ids import MAX_ID, SearchId
from service.pagination import Page, PageDep
from service.runtime import Runtime
from service.self_training import service
from service.self_training.schemas import (
    SelfTrainingCheckpointRead,
    SelfTrainingCreate,
    SelfTrainingRead,
    UnlabelledCreate,
    UnlabelledRead,
)

SetId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="An unlabelled set's id.")]
JobId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="A self-training's id.")]

unlabelled_router = APIRouter(prefix="/unlabelled", tags=["self-training"])
router = APIRouter(tags=["self-training"])

#: Path of the multipart upload (it gets the upload size cap, see ``service.app``).
UPLOAD_SUFFIX = "/unlabelled/upload"
_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "dataset_id"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "dataset_id": {"type": "integer", "minimum": 1},
                        "name": {"type": "string"},
                    },
                }
            }
        },
    }
}


@unlabelled_router.post("", status_code=201)
def register_unlabelled(
    body: UnlabelledCreate, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> UnlabelledRead:
    """Attach a server folder of unlabelled images to a dataset (admins; allowed roots)."""
    row = service.register_folder(session, body.dataset_id, body.path, body.name, user, settings)
    return UnlabelledRead.model_validate(row)


@unlabelled_router.post("/upload", status_code=201, openapi_extra=_UPLOAD_SCHEMA)
async def upload_unlabelled(request: Request, runtime: RuntimeDep, user: Caller) -> UnlabelledRead:
    """Attach an uploaded zip/tar of unlabelled images (any layout) to a dataset.

    The archive is checked member by member and decoded within the same limits as a
    labelled upload; the images are decoded to the dataset's channels and size.
    """
    settings = runtime.settings
    async with request.form(max_files=1, max_fields=4) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise InvalidInput("multipart field 'file' with a file name is required")
        dataset_id = _dataset_id_field(form.get("dataset_id"))
        name = str(form.get("name") or Path(upload.filename).name)[:200]
        archive = await run_in_threadpool(
            datasets.store_upload, upload.file, upload.filename, settings
        )
    return await run_in_threadpool(_register_archive, runtime, user, dataset_id, archive, name)


def _dataset_id_field(raw: object) -> int:
    ok = isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 10
    if not (ok and 1 <= int(str(raw)) <= MAX_ID):
        raise InvalidInput("multipart field 'dataset_id' must be a dataset id")
    return int(str(raw))


def _register_archive(
    runtime: Runtime, user: User, dataset_id: int, archive: Path, name: str
) -> UnlabelledRead:
    # The upload route parses its own body, so it opens its own unit of work.
    with runtime.transaction() as session:
        row = service.register_archive(session, dataset_id, archive, name, user, runtime.settings)
        return UnlabelledRead.model_validate(row)


@unlabelled_router.get("")
def list_unlabelled(
    session: SessionDep,
    user: CurrentUser,
    page: PageDep,
    dataset_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Page[UnlabelledRead]:
    """The unlabelled sets the caller may see (of one dataset if given), newest first."""
    rows, total = service.list_unlabelled(session, user, dataset_id, page.offset, page.limit)
    items = [UnlabelledRead.model_validate(r) for r in rows]
    return Page[UnlabelledRead](items=items, total=total, offset=page.offset, limit=page.limit)


@unlabelled_router.get("/{unlabelled_id}")
def show_unlabelled(unlabelled_id: SetId, session: SessionDep, user: CurrentUser) -> UnlabelledRead:
    """One unlabelled set."""
    return UnlabelledRead.model_validate(service.get_unlabelled(session, unlabelled_id, user))


@unlabelled_router.delete("/{unlabelled_id}", status_code=204)
def delete_unlabelled(unlabelled_id: SetId, session: SessionDep, user: CurrentUser) -> None:
    """Delete an unlabelled set; refused (409) while a self-training refers to it."""
    service.delete_unlabelled(session, unlabelled_id, user)


@router.post("/searches/{search_id}/self-train", status_code=201)
def self_train(
    search_id: SearchId, session: SessionDep, user: CurrentUser, runtime: RuntimeDep,
    body: Annotated[SelfTrainingCreate | None, Body()] = None,
) -> SelfTrainingRead:  # fmt: skip
    """Launch self-training (Noisy Student) on a completed search; 409 if it is not.

    The job is queued; the reconciler opens its study and workers run its steps. (The body is
    checked after the search is found, so another user's search answers 404 whatever is sent.)
    """
    row = service.launch(session, search_id, body, user, runtime.settings)
    return SelfTrainingRead.model_validate(row)


@router.get("/searches/{search_id}/self-trainings")
def list_self_trainings(
    search_id: SearchId, session: SessionDep, user: CurrentUser, page: PageDep
) -> Page[SelfTrainingRead]:
    """A search's self-training jobs, newest first."""
    rows, total = service.of_search(session, search_id, user, page.offset, page.limit)
    items = [SelfTrainingRead.model_validate(r) for r in rows]
    return Page[SelfTrainingRead](items=items, total=total, offset=page.offset, limit=page.limit)


@router.get("/self-trainings/{job_id}")
def show_self_training(job_id: JobId, session: SessionDep, user: CurrentUser) -> SelfTrainingRead:
    """One job: state, each step's validation (and test) accuracy, the best student."""
    return SelfTrainingRead.model_validate(service.get(session, job_id, user))


@router.post("/self-trainings/{job_id}/cancel")
def cancel_self_training(
    job_id: JobId, session: SessionDep, user: CurrentUser, runtime: RuntimeDep
) -> SelfTrainingRead:
    """Cancel a running job."""
    return SelfTrainingRead.model_validate(service.cancel(session, job_id, user, runtime.storage))


@router.get(
    "/self-trainings/{job_id}/checkpoint",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        304: {"description": "unchanged"},
        409: {"description": "the file no longer matches its recorded sha256"},
    },
)
def download_checkpoint(
    job_id: JobId,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Stream the best student's checkpoint (safetensors), verified against its sha256."""
    record = service.checkpoint_record(session, job_id, user)
    etag = f'"{record.sha256}"'
    headers = {"X-Checksum-SHA256": record.sha256, "ETag": etag}
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    handle, size = checkpoints.open_verified(record, settings)
    headers["Content-Length"] = str(size)
    headers["Content-Disposition"] = f'attachment; filename="self-training-{job_id}.safetensors"'
    return StreamingResponse(
        checkpoints.iter_and_close(handle), media_type="application/octet-stream", headers=headers
    )


@router.get("/self-trainings/{job_id}/checkpoint/card")
def checkpoint_card(
    job_id: JobId, session: SessionDep, user: CurrentUser
) -> SelfTrainingCheckpointRead:
    """The best student's model card and checksum."""
    service.checkpoint_record(session, job_id, user)  # 404 until it exists
    return SelfTrainingCheckpointRead.model_validate(service.get(session, job_id, user))
