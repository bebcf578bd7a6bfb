"""Who is looking at the dashboard.

Single-user mode: the local user. Otherwise the API token travels in the ``augsearch_token``
cookie (set by a sign-in page, HttpOnly, SameSite=Strict) or, for scripts, the usual
``Authorization: Bearer`` header; both resolve through the same token check as the API.
"""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session

from service.db.models import User
from service.runtime import Runtime
from service.users.service import authenticate, ensure_local_user

TOKEN_COOKIE = "augsearch_token"


def viewer(request: Request, session: Session, runtime: Runtime) -> User:
    """The user a dashboard request acts for.

    Raises:
        Unauthorized: outside single-user mode, when neither a token cookie nor a bearer
            header carries a valid token.
    """
    if runtime.settings.single_user:
        return runtime.local_user or ensure_local_user(session)
    cookie = request.cookies.get(TOKEN_COOKIE)
    header = f"Bearer {cookie}" if cookie else request.headers.get("authorization")
    return authenticate(session, header)
