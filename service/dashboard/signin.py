"""The dashboard's sign-in and sign-out: an API token exchanged for an HttpOnly cookie.

The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page makes the
browser send it) and Secure on HTTPS or in production. The token is checked exactly as a
bearer header would be; a sign-in form posted from another origin is refused, so no site can
sign a visitor in under its own account.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from service.deps import SessionDep, SettingsDep
from service.errors import DomainError
from service.users.auth import TOKEN_COOKIE, check_same_origin
from service.users.service import authenticate

COOKIE_MAX_AGE_S = 7 * 24 * 3600


def build_signin_router(templates: Jinja2Templates) -> APIRouter:
    """``GET /signin`` (the form), ``POST /signin`` (sets the cookie), ``POST /signout``."""
    router = APIRouter(include_in_schema=False)

    def form(request: Request, message: str = "", status_code: int = 200) -> HTMLResponse:
        context = {"message": message, "optuna_dashboard_url": None}
        return templates.TemplateResponse(request, "signin.html", context, status_code=status_code)

    @router.get("/signin", response_class=HTMLResponse)
    def signin_form(request: Request) -> HTMLResponse:
        return form(request)

    @router.post("/signin", response_model=None)
    def signin(
        request: Request,
        session: SessionDep,
        settings: SettingsDep,
        token: Annotated[str, Form(max_length=200)],
    ) -> Response:
        try:
            check_same_origin(request)
            authenticate(session, f"Bearer {token.strip()}")
        except DomainError as exc:
            return form(request, exc.message, status_code=exc.status_code)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            TOKEN_COOKIE,
            token.strip(),
            max_age=COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https" or settings.environment == "production",
            path="/",
        )
        return response

    @router.post("/signout")
    def signout(request: Request) -> Response:
        try:
            check_same_origin(request)
        except DomainError as exc:
            return Response(exc.message, status_code=exc.status_code)
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return router
