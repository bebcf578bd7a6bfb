"""The dashboard's HTML pages, its policy preview PNG and the launch form's endpoint."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.dashboard import launch as launching
from service.dashboard import views
from service.dashboard.analysis import ImportanceCache
from service.dashboard.auth import TOKEN_COOKIE, viewer
from service.dashboard.images import PreviewCache
from service.dashboard.search_view import build_search_page
from service.datasets import service as datasets
from service.db.models import User
from service.deps import CurrentUser, RuntimeDep, SessionDep
from service.errors import DomainError, InvalidInput, Unauthorized
from service.ids import DatasetId, SearchId
from service.policies import service as policies
from service.runtime import Runtime
from service.searches import service as searches
from service.searches.states import SearchState
from service.workers import service as workers

TEMPLATES = FilePath(__file__).parent / "templates"
STATIC = FilePath(__file__).parent / "static"


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _when(moment: datetime | str | None) -> str:
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _signed_in_by_cookie(request: Request) -> bool:
    """Whether the navigation offers "Sign out": a token cookie outside single-user mode."""
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    single_user = runtime is not None and runtime.settings.single_user
    return not single_user and TOKEN_COOKIE in request.cookies


def make_templates() -> Jinja2Templates:
    """The page templates with the dashboard's formatting filters."""
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters.update(accuracy=_accuracy, duration=_duration, when=_when)
    return templates


class Pages:
    """Renders pages; holds the templates and the caches of importances and previews."""

    def __init__(self) -> None:
        self.templates = make_templates()
        self.importances = ImportanceCache()
        self.previews = PreviewCache()

    def render(
        self, request: Request, name: str, context: dict[str, Any], status_code: int = 200
    ) -> HTMLResponse:
        """Render a template with the shared context (navigation, optuna-dashboard link)."""
        shared = {
            "optuna_dashboard_url": getattr(request.app.state, "optuna_dashboard_url", None),
            "signed_in": _signed_in_by_cookie(request),
        }
        return self.templates.TemplateResponse(
            request, name, {**shared, **context}, status_code=status_code
        )

    def preview(
        self, dataset_spec: dict[str, Any], policy: dict[str, Any], seed: int, runtime: Runtime
    ) -> Response:
        """The PNG of ``policy`` applied to images of the dataset (cached; stable per seed)."""
        png = self.previews.get_or_render(dataset_spec, policy, seed, runtime.settings)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=300"})

    def page(
        self,
        request: Request,
        session: Session,
        runtime: Runtime,
        name: str,
        build: Callable[[User], dict[str, Any]],
    ) -> HTMLResponse:
        """Resolve the viewer, build the context, render; domain errors become an error page."""
        try:
            user = viewer(request, session, runtime)
            context = build(user)
        except DomainError as exc:
            signin = isinstance(exc, Unauthorized)
            context = {"status": exc.status_code, "message": exc.message, "signin": signin}
            return self.render(request, "error.html", context, status_code=exc.status_code)
        return self.render(request, name, context)

    def view_page(
        self,
        request: Request,
        session: Session,
        runtime: Runtime,
        name: str,
        view: Callable[..., Any],
        *args: Any,
    ) -> HTMLResponse:
        """`page` whose context is ``{"page": view(session, user, *args)}``."""
        return self.page(
            request, session, runtime, name, lambda user: {"page": view(session, user, *args)}
        )


def build_router(pages: Pages) -> APIRouter:
    """The dashboard routes (HTML, not part of the OpenAPI schema)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    def searches_list(
        request: Request,
        session: SessionDep,
        runtime: RuntimeDep,
        state: Annotated[str, Query(max_length=32)] = "",
        dataset_id: Annotated[str, Query(max_length=12)] = "",
    ) -> HTMLResponse:
        def build(user: User) -> dict[str, Any]:
            chosen, dataset = views.parse_filters(state, dataset_id)
            rows, total = views.search_rows(session, user, chosen, dataset)
            return {"rows": rows, "total": total, "states": [s.value for s in SearchState],
                    "state": state, "dataset_id": dataset,
                    "datasets": views.datasets_list(session, user)}  # fmt: skip

        return pages.page(request, session, runtime, "searches.html", build)

    @router.get("/searches/{search_id}", response_class=HTMLResponse)
    def search_detail(
        search_id: SearchId, request: Request, session: SessionDep, runtime: RuntimeDep
    ) -> HTMLResponse:
        def build(user: User) -> dict[str, Any]:
            page = build_search_page(session, user, search_id, runtime.storage, pages.importances)
            return {"page": page, "search": page.search}

        return pages.page(request, session, runtime, "search.html", build)

    @router.get("/searches/{search_id}/policy", response_class=HTMLResponse)
    def policy_detail(
        search_id: SearchId, request: Request, session: SessionDep, runtime: RuntimeDep
    ) -> HTMLResponse:
        return pages.view_page(
            request, session, runtime, "policy.html", views.build_policy_page, search_id
        )

    @router.get("/searches/{search_id}/policy/preview.png")
    def policy_preview(
        search_id: SearchId,
        request: Request,
        session: SessionDep,
        runtime: RuntimeDep,
        seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    ) -> Response:
        user = viewer(request, session, runtime)
        payload = policies.search_payload(session, search_id, user)
        spec = searches.get(session, search_id, user).spec
        dataset_spec = spec.get("dataset")
        if not isinstance(dataset_spec, dict):
            raise InvalidInput(f"search {search_id} has no dataset in its spec")
        return pages.preview(dataset_spec, payload["policy"], seed, runtime)

    _add_other_pages(router, pages)
    _add_preset_pages(router, pages)
    return router


def _add_preset_pages(router: APIRouter, pages: Pages) -> None:
    @router.get("/presets", response_class=HTMLResponse)
    def presets_list(
        request: Request,
        session: SessionDep,
        runtime: RuntimeDep,
        dataset: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    ) -> HTMLResponse:
        def build(user: User) -> dict[str, Any]:
            return {"names": views.preset_names(), "dataset": dataset,
                    "datasets": views.datasets_list(session, user)}  # fmt: skip

        return pages.page(request, session, runtime, "presets.html", build)

    @router.get("/presets/{name}", response_class=HTMLResponse)
    def preset_detail(
        name: Annotated[str, Path(max_length=64)],
        request: Request,
        session: SessionDep,
        runtime: RuntimeDep,
        dataset: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    ) -> HTMLResponse:
        return pages.view_page(
            request, session, runtime, "preset.html", views.build_preset_page, name, dataset
        )

    @router.get("/presets/{name}/preview.png")
    def preset_preview(
        name: Annotated[str, Path(max_length=64)],
        request: Request,
        session: SessionDep,
        runtime: RuntimeDep,
        dataset: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
        seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    ) -> Response:
        # `dataset` is checked after sign-in so that a stranger learns nothing but 401.
        user = viewer(request, session, runtime)
        if dataset is None:
            raise InvalidInput("query parameter 'dataset' (a dataset id) is required")
        policy = views.preset_policy(name)
        owned = datasets.get(session, dataset, user)
        return pages.preview(owned.spec, policy, seed, runtime)


def _add_other_pages(router: APIRouter, pages: Pages) -> None:
    @router.get("/datasets", response_class=HTMLResponse)
    def datasets_list(request: Request, session: SessionDep, runtime: RuntimeDep) -> HTMLResponse:
        def build(user: User) -> dict[str, Any]:
            return {"datasets": views.datasets_list(session, user)}

        return pages.page(request, session, runtime, "datasets.html", build)

    @router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
    def dataset_detail(
        dataset_id: DatasetId, request: Request, session: SessionDep, runtime: RuntimeDep
    ) -> HTMLResponse:
        return pages.view_page(
            request, session, runtime, "dataset.html", views.build_dataset_page, dataset_id
        )

    @router.get("/workers", response_class=HTMLResponse)
    def workers_page(request: Request, session: SessionDep, runtime: RuntimeDep) -> HTMLResponse:
        def build(user: User) -> dict[str, Any]:
            return {
                "workers": workers.visible(session, runtime.storage, user),
                "admin": user.is_admin,
            }

        return pages.page(request, session, runtime, "workers.html", build)

    @router.get("/launch", response_class=HTMLResponse)
    def launch_form(
        request: Request,
        session: SessionDep,
        runtime: RuntimeDep,
        dataset_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    ) -> HTMLResponse:
        def build(user: User) -> dict[str, Any]:
            return {"datasets": views.datasets_list(session, user), "selected": dataset_id,
                    "options": views.launch_options()}  # fmt: skip

        return pages.page(request, session, runtime, "launch.html", build)

    @router.post("/launch")
    def launch_submit(
        session: SessionDep,
        runtime: RuntimeDep,
        user: CurrentUser,
        body: Annotated[dict[str, Any], Body()],
    ) -> JSONResponse:
        # The body must be JSON (FastAPI refuses other content types with 422) and a cookie
        # sign-in must send X-Requested-With (service.users.auth): no cross-site form can.
        try:
            search = launching.launch(session, user, runtime.settings, body)
        except ValidationError as exc:
            return JSONResponse({"errors": launching.validation_errors(exc)}, status_code=422)
        except DomainError as exc:
            errors = launching.domain_errors(exc)
            return JSONResponse({"errors": errors}, status_code=exc.status_code)
        return JSONResponse({"id": search.id, "url": f"/searches/{search.id}"}, status_code=201)
