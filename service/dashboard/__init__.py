"""The browser dashboard: server-rendered pages, inline SVG charts, local static assets."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.dashboard.optuna_ui import mount_optuna_dashboard
from service.dashboard.routes import STATIC, Pages, build_router
from service.dashboard.signin import build_signin_router

__all__ = ["install_dashboard", "mount_optuna_dashboard"]


def install_dashboard(app: FastAPI) -> None:
    """Add the dashboard's pages and its static files (``/static``) to ``app``."""
    pages = Pages()
    app.include_router(build_router(pages))
    app.include_router(build_signin_router(pages.templates))
    app.mount("/static", StaticFiles(directory=STATIC), name="dashboard-static")
