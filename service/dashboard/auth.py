"""Who is looking at the dashboard.

Single-user mode: the local user. Otherwise the API token travels in the ``augsearch_token``
cookie (set by the sign-in page, HttpOnly, SameSite=Strict) or, for scripts, the usual
``Authorization: Bearer`` header; both resolve through the same checks as the API
(``service.users.auth``), CSRF rules included.
"""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session

from service.db.models import User
from service.runtime import Runtime
from service.users.auth import TOKEN_COOKIE, resolve_user

__all__ = ["TOKEN_COOKIE", "viewer"]


def viewer(request: Request, session: Session, runtime: Runtime) -> User:
    """The user a dashboard request acts for.

    Raises:
        Unauthorized: outside single-user mode, when neither a token cookie nor a bearer
            header carries a valid token.
        Forbidden: a cross-site or CSRF-header-less state change.
    """
    return resolve_user(request, session, runtime)
