"""The FastAPI application: REST API under /api/v1, health probes, the reconciler task."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.catalogue.endpoints import router as catalogue_router
from service.checkpoints.endpoints import router as checkpoints_router
from service.dashboard import install_dashboard
from service.datasets.endpoints import router as datasets_router
from service.deps import RuntimeDep
from service.errors import ERROR_RESPONSES, install_error_handlers
from service.limits import BodySizeLimit
from service.policies.endpoints import dataset_policy
from service.policies.endpoints import router as policies_router
from service.policies.schemas import PolicyRead
from service.reconciler import Reconciler
from service.runtime import Runtime
from service.searches.endpoints import router as searches_router
from service.self_training.endpoints import UPLOAD_SUFFIX as UNLABELLED_UPLOAD
from service.self_training.endpoints import router as self_training_router
from service.self_training.endpoints import unlabelled_router
from service.settings import Settings
from service.users.endpoints import router as tokens_router
from service.users.service import ensure_local_user
from service.workers.endpoints import router as workers_router

API_PREFIX = "/api/v1"
UPLOAD_PATH = f"{API_PREFIX}/datasets/upload"


def _api_router() -> APIRouter:
    api = APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES)
    for router in (
        datasets_router,
        policies_router,
        searches_router,
        checkpoints_router,
        workers_router,
        catalogue_router,
        tokens_router,
        unlabelled_router,
        self_training_router,
    ):
        api.include_router(router)
    return api


def _health_router() -> APIRouter:
    health = APIRouter(tags=["health"])

    @health.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @health.get("/readyz", responses={503: {"description": "a dependency is unreachable"}})
    def readyz(runtime: RuntimeDep) -> JSONResponse:
        """Readiness: the database, the Optuna storage and the artifact store are reachable."""
        checks: dict[str, str] = {}
        try:
            with runtime.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {exc.__class__.__name__}"
        try:
            runtime.storage.get_all_studies()
            checks["optuna_storage"] = "ok"
        except Exception as exc:
            checks["optuna_storage"] = f"error: {exc.__class__.__name__}"
        artifacts = runtime.settings.artifact_store_location
        ok = "://" in artifacts or runtime.settings.artifact_path.is_dir()
        checks["artifact_store"] = "ok" if ok else "error: missing directory"
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if healthy else "unavailable", "checks": checks},
            status_code=200 if healthy else 503,
        )

    return health


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    """Body caps, and the CORS allow-list and trusted hosts when configured (off by default)."""
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,  # bearer tokens only; the dashboard cookie stays same-site
        )
    if settings.trusted_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts)
    # Added last, so it is the outermost of these: oversized bodies are refused first.
    app.add_middleware(
        BodySizeLimit,
        default_limit=settings.max_body_bytes,
        limits={
            UPLOAD_PATH: settings.max_upload_bytes,
            API_PREFIX + UNLABELLED_UPLOAD: settings.max_upload_bytes,
        },
    )


def create_app(
    settings: Settings | None = None, *, reconcile: bool = True, dashboard: bool = True
) -> FastAPI:
    """Build the application; resources are created in its lifespan, not here.

    Args:
        settings: Configuration (read from the environment if omitted).
        reconcile: Run the reconciler as a background task (tests drive it by hand).
        dashboard: Serve the browser dashboard at ``/`` (``service.dashboard``).

    Returns:
        The FastAPI app.
    """
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await run_in_threadpool(Runtime.start, settings)
        if settings.single_user:
            with runtime.transaction() as session:
                runtime.local_user = ensure_local_user(session)
        app.state.runtime = runtime
        # Everything built so far (modules, engines, the Optuna storage) lives as long as the
        # process: move it out of the collector's reach, so that a full collection scans only
        # what requests allocate. Without this a full collection walks the whole heap and
        # stalls the event loop for tens of milliseconds, the tail of every latency figure.
        gc.collect()
        gc.freeze()
        task = None
        if reconcile:
            reconciler = Reconciler(runtime)
            app.state.reconciler = reconciler
            task = asyncio.create_task(reconciler.run_forever(settings.reconcile_interval_s))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            runtime.close()

    app = FastAPI(
        title="augsearch",
        version="0.1.0",
        summary="Augmentation-policy search service",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    _install_middleware(app, settings)
    # The hottest read, on the application's own router and first: every router included
    # below is another nested walk (to match, then to dispatch) on each request before it.
    app.add_api_route(
        f"{API_PREFIX}/datasets/{{dataset_id}}/policy",
        dataset_policy,
        methods=["GET"],
        response_model=PolicyRead,
        responses=ERROR_RESPONSES,
        tags=["datasets", "policies"],
    )
    app.include_router(_api_router())
    app.include_router(_health_router())
    if dashboard:
        install_dashboard(app)
    return app
