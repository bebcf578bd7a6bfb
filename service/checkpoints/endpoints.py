"""HTTP routes of the checkpoints API: the final checkpoint and its compressed variants."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from service.checkpoints import service, variants
from service.checkpoints.schemas import (
    MAX_SPARSITY,
    MIN_SPARSITY,
    CheckpointRead,
    VariantCreate,
    VariantRead,
)
from service.db.models import CheckpointRecord, CheckpointVariant
from service.deps import CurrentUser, RuntimeDep, SessionDep, SettingsDep
from service.errors import Conflict, InvalidInput
from service.ids import SearchId
from service.searches import service as searches
from service.settings import Settings

router = APIRouter(prefix="/searches/{search_id}/checkpoint", tags=["checkpoints"])
#: Seconds a client is told to wait before it asks again for a variant being made.
RETRY_AFTER_S = 5
SUFFIXES = {"onnx": ".onnx", "int8": "-int8.onnx", "pruned": "-{name}.safetensors"}


def _serve(
    record: CheckpointRecord | CheckpointVariant,
    filename: str,
    settings: Settings,
    if_none_match: str | None,
) -> Response:
    """Stream a file with the sha256 recorded when it was written (304 when unchanged).

    The bytes are hashed before they are served; a file that no longer matches its recorded
    sha256 is refused with 409.
    """
    etag = f'"{record.sha256}"'
    headers = {"X-Checksum-SHA256": str(record.sha256), "ETag": etag}
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    handle, size = service.open_verified(record, settings)
    headers["Content-Length"] = str(size)
    headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return StreamingResponse(
        service.iter_and_close(handle), media_type="application/octet-stream", headers=headers
    )


@router.get(
    "",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        202: {"model": VariantRead, "description": "the variant is being made: ask again later"},
        304: {"description": "unchanged"},
        409: {
            "description": "the search has not completed, the variant's job failed, or the "
            "file no longer matches its recorded sha256"
        },
    },
)
def download_checkpoint(
    search_id: SearchId,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    runtime: RuntimeDep,
    format: Literal["safetensors", "onnx", "int8", "pruned"] = "safetensors",
    sparsity: Annotated[float | None, Query(ge=MIN_SPARSITY, le=MAX_SPARSITY)] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Stream the final checkpoint, or one of its compressed variants, sha256 verified.

    ``format=safetensors`` (default) is the float checkpoint. ``onnx``, ``int8`` and
    ``pruned`` (with ``sparsity``, default 0.5) are made once by a worker, on first request:
    until the file is ready the answer is 202 with the variant's state and ``Retry-After``;
    a failed job answers 409 with its error (``POST .../checkpoint/variants`` retries it).
    """
    if format == "safetensors":
        if sparsity is not None:
            raise InvalidInput("sparsity applies to the pruned format only, not safetensors")
        record = service.get(session, search_id, user)
        return _serve(record, f"search-{search_id}.safetensors", settings, if_none_match)
    create = VariantCreate(format=format, sparsity=sparsity)
    row = variants.request(session, runtime.storage, settings, search_id, user, create)
    if row.state == variants.FAILED:
        raise Conflict(
            f"the {row.name} variant of search {search_id} failed: {row.error}; "
            f"POST /api/v1/searches/{search_id}/checkpoint/variants to try again"
        )
    if row.state != variants.READY:
        body = variants.read(row).model_dump(mode="json")
        return JSONResponse(body, status_code=202, headers={"Retry-After": str(RETRY_AFTER_S)})
    filename = f"search-{search_id}" + SUFFIXES[row.format].format(name=row.name)
    return _serve(row, filename, settings, if_none_match)


@router.get("/card")
def checkpoint_card(search_id: SearchId, session: SessionDep, user: CurrentUser) -> CheckpointRead:
    """The checkpoint's model card (architecture, classes, policy, metrics) and checksum."""
    return CheckpointRead.model_validate(service.get(session, search_id, user))


@router.get("/variants")
def list_variants(search_id: SearchId, session: SessionDep, user: CurrentUser) -> list[VariantRead]:
    """The compressed variants requested so far: state, checksum, card (size, accuracy,
    latency beside the float model's), download URL."""
    return [variants.read(row) for row in variants.listing(session, search_id, user)]


@router.post(
    "/variants",
    status_code=202,
    responses={200: {"model": VariantRead, "description": "the variant is ready"}},
)
def request_variant(
    search_id: SearchId,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    runtime: RuntimeDep,
    body: Annotated[VariantCreate | None, Body()] = None,
) -> Response:
    """Ask a worker for a compressed variant (again, if its last job failed).

    202 while it is queued or made, 200 once it is ready; 409 for a search that has not
    completed. (A missing body is refused after the search is found, so another user's search
    answers 404 whatever is sent.)
    """
    if body is None:
        searches.get(session, search_id, user)
        raise InvalidInput("a JSON body with 'format' (onnx, int8 or pruned) is required")
    row = variants.request(session, runtime.storage, settings, search_id, user, body, retry=True)
    status = 200 if row.state == variants.READY else 202
    return JSONResponse(variants.read(row).model_dump(mode="json"), status_code=status)
