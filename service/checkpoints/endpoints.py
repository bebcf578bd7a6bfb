"""HTTP routes of the checkpoints API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import FileResponse, Response

from service.checkpoints import service
from service.checkpoints.schemas import CheckpointRead
from service.deps import CurrentUser, SessionDep

router = APIRouter(prefix="/searches/{search_id}/checkpoint", tags=["checkpoints"])


@router.get(
    "",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        304: {"description": "unchanged"},
    },
)
def download_checkpoint(
    search_id: int,
    session: SessionDep,
    user: CurrentUser,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Stream the final checkpoint (safetensors) with the sha256 recorded when it was written."""
    record = service.get(session, search_id, user)
    etag = f'"{record.sha256}"'
    headers = {"X-Checksum-SHA256": record.sha256, "ETag": etag}
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return FileResponse(
        record.path,
        media_type="application/octet-stream",
        filename=f"search-{search_id}.safetensors",
        headers=headers,
    )


@router.get("/card")
def checkpoint_card(search_id: int, session: SessionDep, user: CurrentUser) -> CheckpointRead:
    """The checkpoint's model card (architecture, classes, policy, metrics) and checksum."""
    return CheckpointRead.model_validate(service.get(session, search_id, user))
