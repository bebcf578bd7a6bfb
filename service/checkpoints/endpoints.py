"""HTTP routes of the checkpoints API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response, StreamingResponse

from service.checkpoints import service
from service.checkpoints.schemas import CheckpointRead
from service.deps import CurrentUser, SessionDep, SettingsDep
from service.ids import SearchId

router = APIRouter(prefix="/searches/{search_id}/checkpoint", tags=["checkpoints"])


@router.get(
    "",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        304: {"description": "unchanged"},
        409: {"description": "the file no longer matches its recorded sha256"},
    },
)
def download_checkpoint(
    search_id: SearchId,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Stream the final checkpoint (safetensors) with the sha256 recorded when it was written.

    The bytes are hashed before they are served; a file that no longer matches its recorded
    sha256 is refused with 409.
    """
    record = service.get(session, search_id, user)
    etag = f'"{record.sha256}"'
    headers = {"X-Checksum-SHA256": record.sha256, "ETag": etag}
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    handle, size = service.open_verified(record, settings)
    headers["Content-Length"] = str(size)
    headers["Content-Disposition"] = f'attachment; filename="search-{search_id}.safetensors"'
    return StreamingResponse(
        service.iter_and_close(handle), media_type="application/octet-stream", headers=headers
    )


@router.get("/card")
def checkpoint_card(search_id: SearchId, session: SessionDep, user: CurrentUser) -> CheckpointRead:
    """The checkpoint's model card (architecture, classes, policy, metrics) and checksum."""
    return CheckpointRead.model_validate(service.get(session, search_id, user))
