"""HTTP routes of the policies API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from service.deps import Caller, CurrentUser, RuntimeDep, SessionDep
from service.errors import NotFound
from service.ids import DatasetId, SearchId
from service.policies import service
from service.policies.schemas import PolicyFormat, PolicyRead

router = APIRouter(tags=["policies"])


@router.get("/searches/{search_id}/policy")
def search_policy(
    search_id: SearchId, session: SessionDep, user: CurrentUser, format: PolicyFormat = "json"
) -> PolicyRead:
    """A search's best policy (provisional while it runs) as JSON or an export."""
    return service.export(service.search_payload(session, search_id, user), format)


@router.get("/datasets/{dataset_id}/policy", response_model=PolicyRead)
async def dataset_policy(
    dataset_id: DatasetId, user: Caller, runtime: RuntimeDep, format: PolicyFormat = "json"
) -> Response:
    """The best completed policy for a dataset; served from memory, refreshed on writes."""
    cached = runtime.policy_cache.get(dataset_id)
    if cached is None:

        def _load() -> tuple[int, dict[str, Any]]:
            with runtime.transaction() as session:
                return service.dataset_payload(session, dataset_id, user)

        owner_id, payload = await run_in_threadpool(_load)
        runtime.policy_cache.put(dataset_id, owner_id, payload)
    else:
        owner_id, payload = cached
    if owner_id != user.id and not user.is_admin:
        raise NotFound(f"dataset {dataset_id} not found")
    # The hot path: the rendered JSON is cached with the entry, so a hit costs no validation.
    body = runtime.policy_cache.rendered(dataset_id, format)
    if body is None:
        read = await run_in_threadpool(service.export, payload, format)
        body = read.model_dump_json().encode()
        runtime.policy_cache.remember(dataset_id, format, body)
    return Response(body, media_type="application/json")
