"""HTTP routes of the policies API.

``dataset_policy`` (GET /api/v1/datasets/{id}/policy) is registered on the application's own
router, ahead of every included router (``service.app.create_app``): it is the hottest read of
the service, and FastAPI tries routes in order, walking each included router (to match, then
again to dispatch), so every route and router tried before it costs each request.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.deps import CurrentUser, SessionDep, get_caller, get_runtime
from service.errors import NotFound
from service.ids import DatasetId, SearchId
from service.policies import service
from service.policies.cache import Entry
from service.policies.schemas import PolicyFormat, PolicyRead

router = APIRouter(tags=["policies"])


@router.get("/searches/{search_id}/policy")
def search_policy(
    search_id: SearchId, session: SessionDep, user: CurrentUser, format: PolicyFormat = "json"
) -> PolicyRead:
    """A search's best policy (provisional while it runs) as JSON or an export."""
    return service.export(service.search_payload(session, search_id, user), format)


async def dataset_policy(
    dataset_id: DatasetId, request: Request, format: PolicyFormat = "json"
) -> Response:
    """The best completed policy for a dataset; served from memory, refreshed on writes."""
    # The runtime and the caller are resolved here rather than declared as dependencies:
    # each dependency is another pass of FastAPI's resolver on every request.
    runtime = await get_runtime(request)
    user = await get_caller(request, runtime)

    async def load() -> Entry:
        def query() -> Entry:
            with runtime.transaction() as session:
                return service.dataset_payload(session, dataset_id, user)

        return await run_in_threadpool(query)

    owner_id, payload = await runtime.policy_cache.fetch(dataset_id, user.id, load)
    if owner_id != user.id and not user.is_admin:
        raise NotFound(f"dataset {dataset_id} not found")
    # The hot path: the rendered JSON is cached with the entry, so a hit costs no validation.
    body = runtime.policy_cache.rendered(dataset_id, format)
    if body is None:
        read = await run_in_threadpool(service.export, payload, format)
        body = read.model_dump_json().encode()
        runtime.policy_cache.remember(dataset_id, format, body, source=payload)
    return Response(body, media_type="application/json")
